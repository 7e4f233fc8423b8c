"""Where a stream's partitions start: a configured start, else its first data (from the Delta
logs, read when the code location loads), else the partition in progress."""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from freshlake.assets.partitions import partitions_def
from freshlake.delta.schemas import quarantine_schema, raw_schema
from freshlake.delta.tables import append_offsets
from freshlake.partitions import (
    UNRESOLVED_START,
    first_data_key,
    first_data_start,
    resolve_starts,
)
from freshlake.streams import Partitioning
from tests.demo_streams import DEMO_STREAMS, demo_stream

NOW = datetime(2026, 12, 2, 16, 40, tzinfo=UTC)
SPEC = demo_stream("flights")


def write(uri: str, *rows: tuple[str, datetime | None], quarantine: bool = False) -> None:
    """One commit per row: (kafka_date, kafka_timestamp), so each lands in its own file."""
    schema = quarantine_schema() if quarantine else raw_schema(SPEC)
    for offset, (day, when) in enumerate(rows):
        row = {
            "kafka_topic": SPEC.topic,
            "kafka_partition": 0,
            "kafka_offset": offset,
            "kafka_timestamp": when,
            "key": f"UA{offset}",
            "is_delete": False,
            "ingested_at": NOW,
            "kafka_date": day,
        }
        if quarantine:
            row |= {"error_class": "invalid_json", "error_message": "bad"}
        append_offsets(
            uri, pa.Table.from_pylist([row], schema=schema), topic=SPEC.topic, last_offsets={0: offset}
        )


def test_no_table_has_no_first_data(tmp_path: Path) -> None:
    assert first_data_key([str(tmp_path / "raw"), str(tmp_path / "quarantine")]) is None


def test_daily_first_data_is_the_earliest_day_of_raw_and_quarantine(tmp_path: Path) -> None:
    raw, bad = str(tmp_path / "raw"), str(tmp_path / "quarantine")
    write(raw, ("2026-11-21", datetime(2026, 11, 21, 5, 30, tzinfo=UTC)), ("2026-11-25", None))
    assert first_data_key([raw, bad]) == "2026-11-21"
    write(bad, ("2026-11-19", datetime(2026, 11, 19, 23, 59, tzinfo=UTC)), quarantine=True)
    assert first_data_key([raw, bad]) == "2026-11-19"


def test_hourly_first_data_is_the_hour_of_the_earliest_kafka_time(tmp_path: Path) -> None:
    raw = str(tmp_path / "raw")
    # A row without a Kafka time has a day (its ingest day) but no hourly partition: not counted.
    write(raw, ("2026-11-20", None), ("2026-11-21", datetime(2026, 11, 21, 5, 30, tzinfo=UTC)))
    assert first_data_key([raw], cadence="hourly") == "2026-11-21-05:00"
    assert first_data_key([raw], cadence="daily") == "2026-11-20"


def test_start_is_configured_else_first_data_else_today() -> None:
    daily, hourly = Partitioning(), Partitioning(cadence="hourly")
    assert (
        first_data_start(Partitioning(start="2025-06-01"), first_data="2026-11-21", now=NOW) == "2025-06-01"
    )
    assert first_data_start(daily, first_data="2026-11-21", now=NOW) == "2026-11-21"
    assert first_data_start(daily, first_data=None, now=NOW) == "2026-12-02"  # one partition, not 300
    assert first_data_start(hourly, first_data=None, now=NOW) == "2026-12-02-16:00"
    # A producer's clock ahead must not leave the partition in progress out.
    assert first_data_start(daily, first_data="2026-12-05", now=NOW) == "2026-12-02"
    assert first_data_start(hourly, first_data="2026-12-01-23:00", now=NOW) == "2026-12-01-23:00"


def test_resolve_reads_each_unset_stream_and_keeps_configured_starts(tmp_path: Path) -> None:
    write(str(tmp_path / "flights" / "raw"), ("2026-11-21", datetime(2026, 11, 21, 8, tzinfo=UTC)))
    pinned = dataclasses.replace(demo_stream("bookings"), partitioning=Partitioning(start="2026-01-05"))
    specs = [SPEC, pinned, demo_stream("policies")]

    resolved = resolve_starts(
        specs,
        table_uris=lambda s: [str(tmp_path / s.name / "raw"), str(tmp_path / s.name / "quarantine")],
        now=NOW,
    )

    assert [s.partitioning.start for s in resolved] == ["2026-11-21", "2026-01-05", "2026-12-02"]
    assert [s.name for s in resolved] == [s.name for s in specs]
    assert resolved[0].fields == SPEC.fields  # only the start changed


def test_an_unreadable_store_loads_with_today(caplog: pytest.LogCaptureFixture) -> None:
    def broken(spec):
        msg = "store unreachable"
        raise OSError(msg)

    with caplog.at_level(logging.WARNING, logger="freshlake.partitions"):
        (resolved,) = resolve_starts([SPEC], table_uris=broken, now=NOW)
    assert resolved.partitioning.start == "2026-12-02"
    assert any(getattr(r, "stream", None) == "flights" for r in caplog.records)


def test_a_store_that_does_not_answer_does_not_hold_the_load(caplog: pytest.LogCaptureFixture) -> None:
    def slow(spec):
        time.sleep(5)
        return []

    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="freshlake.partitions"):
        (resolved,) = resolve_starts([SPEC], table_uris=slow, now=NOW, timeout_s=0.2)
    assert time.monotonic() - began < 2
    assert resolved.partitioning.start == "2026-12-02"
    assert "did not answer" in caplog.text


def test_assets_built_from_an_unresolved_spec_keep_the_library_start() -> None:
    assert SPEC.partitioning.start is None  # the demo config leaves it out
    assert partitions_def(SPEC).start.strftime("%Y-%m-%d") == UNRESOLVED_START
    hourly = dataclasses.replace(SPEC, partitioning=Partitioning(cadence="hourly"))
    assert partitions_def(hourly).start.strftime("%Y-%m-%d-%H:%M") == f"{UNRESOLVED_START}-00:00"


def test_the_code_location_starts_each_stream_at_its_first_data(tmp_path: Path, monkeypatch) -> None:
    from freshlake.components.definitions import build_definitions

    monkeypatch.setenv("FRESHLAKE_DELTA_URI", str(tmp_path))
    monkeypatch.delenv("FRESHLAKE_STORAGE_OPTIONS", raising=False)
    write(str(tmp_path / "flights" / "raw"), ("2026-11-21", datetime(2026, 11, 21, 8, tzinfo=UTC)))

    defs = build_definitions(streams=DEMO_STREAMS, model_code="hash@test")

    today = datetime.now(UTC).strftime("%Y-%m-%d")
    starts = {
        key.to_user_string(): defs.get_assets_def(key).partitions_def.start.strftime("%Y-%m-%d")
        for key in (dg.AssetKey(["flights", "raw"]), dg.AssetKey(["flights", "embeddings"]))
    }
    assert starts == {"flights/raw": "2026-11-21", "flights/embeddings": "2026-11-21"}
    bookings = defs.get_assets_def(dg.AssetKey(["bookings", "raw"])).partitions_def
    assert bookings.start.strftime("%Y-%m-%d") == today
    assert bookings.get_partition_keys() == [today]  # a new stream: one partition, 100 % reachable


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ("", Partitioning()),
        ("    partitioning: {cadence: hourly}\n", Partitioning(cadence="hourly")),
        ("    partitioning: {start: 2026-03-01}\n", Partitioning(start="2026-03-01")),
        (
            "    partitioning: {cadence: hourly, start: '2026-03-01-06:00'}\n",
            Partitioning(cadence="hourly", start="2026-03-01-06:00"),
        ),
    ],
)
def test_config_start_is_optional(tmp_path: Path, block: str, expected: Partitioning) -> None:
    from freshlake.config import load_streams

    path = tmp_path / "streams.yaml"
    path.write_text(
        "streams:\n  - name: orders\n    topic: orders\n    key_field: order_id\n"
        "    fields: {order_id: int, updated_at: timestamp}\n    event_time_field: updated_at\n" + block
    )
    (spec,) = load_streams(path).streams
    assert spec.partitioning == expected
