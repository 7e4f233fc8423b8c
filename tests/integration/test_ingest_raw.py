"""Exactly-once raw ingestion against the real broker and real Delta tables (invariants 1-3)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from datetime import UTC, datetime

import polars as pl
import pytest

from freshlake.delta.tables import committed_offsets
from freshlake.ingest.plan import OffsetRange
from freshlake.ingest.raw import RawTables, ingest_stream
from tests.demo_streams import demo_stream

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def produce(kafka_config, *, prefix: str, stream: str, count: int, bad_ratio: float, seed: int = 7):
    from examples.flight_assistant.producer import produce_demo

    produce_demo(
        config=kafka_config,
        seed=seed,
        count=count,
        streams=(stream,),
        bad_ratio=bad_ratio,
        start=START,
        topic_prefix=prefix,
        partitions=3,
    )
    spec = demo_stream(stream)
    return dataclasses.replace(spec, topic=prefix + spec.topic)


def read(uri: str) -> pl.DataFrame:
    return pl.read_delta(uri)


def expected_split(kafka_config, topic: str) -> tuple[set, set]:
    """(good, bad) (partition, offset) sets, from the demo's own `freshlake-demo-bad` header."""
    from confluent_kafka import KafkaError, TopicPartition

    from freshlake.kafka.consumer import reader, topic_partitions

    consumer = reader(kafka_config)
    parts = topic_partitions(kafka_config, topic=topic)
    consumer.assign([TopicPartition(topic, p, 0) for p in parts])
    good, bad, done = set(), set(), set()
    while len(done) < len(parts):
        for m in consumer.consume(1000, timeout=1):
            if m.error() is not None:
                if m.error().code() == KafkaError._PARTITION_EOF:
                    done.add(m.partition())
                continue
            headers = dict(m.headers() or ())
            (bad if "freshlake-demo-bad" in headers else good).add((m.partition(), m.offset()))
    consumer.close()
    return good, bad


@pytest.fixture
def tables(tmp_path) -> RawTables:
    return RawTables(raw=str(tmp_path / "raw"), quarantine=str(tmp_path / "quarantine"))


def test_ten_thousand_messages_two_percent_bad(kafka_config, unique_topic, tables) -> None:
    spec = produce(kafka_config, prefix=unique_topic + "-", stream="flights", count=10_000, bad_ratio=0.02)
    good, bad = expected_split(kafka_config, spec.topic)
    assert len(good) + len(bad) == 10_000 and 100 < len(bad) < 320

    result = ingest_stream(spec=spec, kafka_config=kafka_config, tables=tables, max_records=100_000)

    raw, quarantine = read(tables.raw), read(tables.quarantine)
    coords = list(zip(raw["kafka_partition"], raw["kafka_offset"], strict=True))
    assert len(coords) == len(set(coords))  # no duplicate
    assert set(coords) == good  # no missing, no bad one
    assert set(zip(quarantine["kafka_partition"], quarantine["kafka_offset"], strict=True)) == bad
    assert quarantine["error_class"].null_count() == 0
    assert quarantine["error_message"].str.len_chars().min() > 0
    assert result.rows_written == len(good) and result.rows_quarantined == len(bad)
    assert result.consumer_lag == 0
    assert raw["kafka_partition"].n_unique() == 3

    # Replay of the finished range writes nothing, into either table.
    again = ingest_stream(
        spec=spec,
        kafka_config=kafka_config,
        tables=tables,
        ranges=[OffsetRange(partition=p, start=0, end=10_000) for p in range(3)],
    )
    assert again.rows_written == 0 and again.rows_quarantined == 0
    assert read(tables.raw).height == len(good) and read(tables.quarantine).height == len(bad)


def test_debezium_envelopes_and_tombstones_land_in_raw_columns(kafka_config, unique_topic, tables) -> None:
    spec = produce(kafka_config, prefix=unique_topic + "-", stream="bookings", count=600, bad_ratio=0.0)
    ingest_stream(spec=spec, kafka_config=kafka_config, tables=tables)
    raw = read(tables.raw)
    assert raw.height == 600
    assert set(raw["op"].drop_nulls().unique()) == {"c", "u", "d", "r"}
    tombstones = raw.filter(pl.col("value").is_null())
    assert (
        tombstones.height > 0
        and tombstones["is_delete"].all()
        and tombstones["op"].null_count() == tombstones.height
    )
    deletes = raw.filter(pl.col("op") == "d")
    assert (
        deletes["is_delete"].all()
        and deletes["before"].null_count() == 0
        and deletes["after"].null_count() == deletes.height
    )
    assert set(tombstones["key"]) <= set(deletes["key"])
    wrapped = raw.filter(
        pl.col("value").bin.starts_with(b'{"schema"') | pl.col("value").bin.starts_with(b'{"payload"')
    )
    assert 0 < wrapped.height < raw.height  # both envelope forms were parsed
    assert raw["source_ts_ms"].null_count() == tombstones.height
    assert raw.filter(pl.col("op").is_not_null())["booking_id"].null_count() == 0


CRASHING_RUN = textwrap.dedent(
    """
    import os, signal, sys
    import freshlake.ingest.raw as raw
    from freshlake.delta import tables as delta_tables
    from freshlake.ingest.raw import RawTables, ingest_stream
    from tests.demo_streams import demo_stream
    import dataclasses

    crash_at, topic, bootstrap, raw_uri, q_uri = sys.argv[1:6]
    real, real_stream = delta_tables.append_offsets, delta_tables.append_stream

    def kill(where):
        print(f"killed in {where}", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    def append(uri, *args, **kwargs):
        if crash_at == "before_raw_commit" and uri == raw_uri:
            kill("append_offsets")
        result = real(uri, *args, **kwargs)
        if crash_at == "after_raw_commit" and uri == raw_uri:
            kill("append_offsets")
        return result

    def stream(uri, batches, **kwargs):
        def then_crash():
            yield from batches  # a run with a bad message ends here (NotCommitted)
            if crash_at == "before_raw_commit":
                kill("append_stream")  # every row written, the commit not made

        result = real_stream(uri, then_crash(), **kwargs)
        if crash_at == "after_raw_commit" and result is not None:
            kill("append_stream")
        return result

    raw.append_offsets, raw.append_stream = append, stream
    spec = dataclasses.replace(demo_stream("flights"), topic=topic)
    ingest_stream(spec=spec, kafka_config={"bootstrap.servers": bootstrap},
                  tables=RawTables(raw=raw_uri, quarantine=q_uri))
    """
)


@pytest.mark.parametrize("crash_at", ["before_raw_commit", "after_raw_commit"])
@pytest.mark.parametrize(
    ("bad_ratio", "path"),
    [(0.03, "append_offsets"), (0.0, "append_stream")],  # quarantine first, then raw / raw streamed
)
def test_sigkill_then_retry_ends_in_exact_counts(
    kafka_config, unique_topic, tables, crash_at, bad_ratio, path
) -> None:
    spec = produce(
        kafka_config, prefix=unique_topic + "-", stream="flights", count=3_000, bad_ratio=bad_ratio
    )
    good, bad = expected_split(kafka_config, spec.topic)
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            CRASHING_RUN,
            crash_at,
            spec.topic,
            kafka_config["bootstrap.servers"],
            tables.raw,
            tables.quarantine,
        ],
        capture_output=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert f"killed in {path}" in killed.stderr.decode()
    # Quarantine was committed before raw in both cases; raw depends on where the kill landed.
    partitions = list(range(3))
    committed = committed_offsets(tables.raw, topic=spec.topic, partitions=partitions)
    if crash_at == "before_raw_commit":
        assert all(v is None for v in committed.values())
    else:
        assert all(v is not None for v in committed.values())

    retry = ingest_stream(spec=spec, kafka_config=kafka_config, tables=tables)

    raw, quarantine = read(tables.raw), read(tables.quarantine)
    coords = list(zip(raw["kafka_partition"], raw["kafka_offset"], strict=True))
    assert len(coords) == len(set(coords)) and set(coords) == good
    q_coords = list(zip(quarantine["kafka_partition"], quarantine["kafka_offset"], strict=True))
    assert len(q_coords) == len(set(q_coords)) and set(q_coords) == bad
    assert retry.consumer_lag == 0


def test_unknown_topic_is_a_config_error_and_creates_nothing(kafka_config, unique_topic, tables) -> None:
    from freshlake.errors import FreshlakeConfigError
    from freshlake.kafka.topics import existing_topics

    spec = dataclasses.replace(demo_stream("flights"), topic=unique_topic)
    with pytest.raises(FreshlakeConfigError, match=f"topic '{unique_topic}' does not exist"):
        ingest_stream(spec=spec, kafka_config=kafka_config, tables=tables)
    assert unique_topic not in existing_topics(kafka_config)
