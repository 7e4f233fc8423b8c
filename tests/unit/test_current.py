"""`current` folded from raw: newest per key, deletes applied, never regressed (real Delta)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import polars as pl

from freshlake.delta.current import current_changes, fold_into_current, merge_into_current
from freshlake.delta.tables import append_offsets
from freshlake.ingest.parse import split_messages
from freshlake.kafka.messages import KafkaMessage
from tests.demo_streams import demo_stream

NOW = datetime(2026, 11, 21, 12, tzinfo=UTC)
FLIGHTS = demo_stream("flights")
BOOKINGS = demo_stream("bookings")


def flight(offset: int, key: str, status: str, partition: int = 0) -> KafkaMessage:
    value = {
        "flight_id": key,
        "status": status,
        "event_time": f"2026-11-21T12:00:{offset:02d}+00:00",
        "flight_number": key[:5],
        "origin": "JFK",
        "destination": "SFO",
        "version": offset,
    }
    return KafkaMessage(
        topic="flights",
        partition=partition,
        offset=offset,
        key=key.encode(),
        value=json.dumps(value).encode(),
        timestamp_ms=1_763_726_400_000 + offset,
    )


def booking(offset: int, key: str, op: str, seat: str | None = None) -> KafkaMessage:
    row = {"booking_id": key, "flight_id": "UA1", "seat": seat, "status": "confirmed"}
    envelope = {
        "op": op,
        "before": row if op == "d" else None,
        "after": None if op == "d" else row,
        "source": {"ts_ms": 1_763_726_400_000 + offset, "table": "bookings", "lsn": offset},
        "ts_ms": 1_763_726_400_000 + offset,
    }
    return KafkaMessage(
        topic="bookings",
        partition=0,
        offset=offset,
        key=json.dumps({"booking_id": key}).encode(),
        value=json.dumps(envelope).encode(),
        timestamp_ms=1_763_726_400_000 + offset,
    )


def tombstone(offset: int, key: str) -> KafkaMessage:
    return KafkaMessage(
        topic="bookings",
        partition=0,
        offset=offset,
        key=json.dumps({"booking_id": key}).encode(),
        value=None,
        timestamp_ms=1_763_726_400_000 + offset,
    )


def land(uri: str, spec, messages: list[KafkaMessage]) -> None:
    raw, bad = split_messages(spec, messages, ingested_at=NOW)
    assert bad.num_rows == 0
    last: dict[int, int] = {}
    for m in messages:
        last[m.partition] = max(last.get(m.partition, -1), m.offset)
    append_offsets(uri, raw, topic=spec.topic, last_offsets=last)


def rows(spec, messages: list[KafkaMessage]):
    import pyarrow as pa

    raw, _ = split_messages(spec, messages, ingested_at=NOW)
    return raw.append_column("_commit_version", pa.array([0] * raw.num_rows, pa.int64()))


def current(uri: str) -> pl.DataFrame:
    return pl.read_delta(uri).filter(~pl.col("is_deleted")).sort("key")


def test_newest_status_wins_and_fold_is_incremental(tmp_path) -> None:
    raw, cur = str(tmp_path / "raw"), str(tmp_path / "current")
    land(
        raw,
        FLIGHTS,
        [flight(0, "UA1", "scheduled"), flight(1, "UA1", "delayed"), flight(2, "DL2", "boarding")],
    )
    first = fold_into_current(spec=FLIGHTS, raw_uri=raw, current_uri=cur)
    assert first.raw_rows == 3 and first.keys_upserted == 2
    land(raw, FLIGHTS, [flight(3, "UA1", "cancelled")])
    second = fold_into_current(spec=FLIGHTS, raw_uri=raw, current_uri=cur)
    assert second.raw_rows == 1  # only the new commit was read
    rows = current(cur)
    assert rows["status"].to_list() == ["boarding", "cancelled"]
    assert rows.filter(pl.col("key") == "UA1")["source_offset"].item() == 3
    assert fold_into_current(spec=FLIGHTS, raw_uri=raw, current_uri=cur).raw_versions is None


def test_debezium_delete_and_tombstone_remove_the_key_and_stay_removed(tmp_path) -> None:
    raw, cur = str(tmp_path / "raw"), str(tmp_path / "current")
    land(
        raw,
        BOOKINGS,
        [booking(0, "BK1", "r", "1A"), booking(1, "BK2", "c", "2B"), booking(2, "BK1", "u", "3C")],
    )
    fold_into_current(spec=BOOKINGS, raw_uri=raw, current_uri=cur)
    land(raw, BOOKINGS, [booking(3, "BK2", "d", "2B"), tombstone(4, "BK2")])
    result = fold_into_current(spec=BOOKINGS, raw_uri=raw, current_uri=cur)
    assert result.keys_deleted == 1
    assert current(cur)["key"].to_list() == ["BK1"] and current(cur)["seat"].item() == "3C"
    # An older event replayed later (a backfill) cannot bring the deleted booking back.
    land(raw, BOOKINGS, [booking(1, "BK2", "c", "2B")])  # same offset again: skipped as written
    merge_into_current(
        spec=BOOKINGS,
        current_uri=cur,
        raw_rows=rows(BOOKINGS, [booking(1, "BK2", "c", "2B")]),
        raw_version=None,
    )
    assert current(cur)["key"].to_list() == ["BK1"]


def test_shuffled_application_ends_in_the_same_state(tmp_path) -> None:
    events = [
        flight(i, f"K{i % 4}", random.Random(i).choice(["scheduled", "delayed", "boarding"]))
        for i in range(40)
    ]
    in_order = str(tmp_path / "in-order")
    land(in_order + "-raw", FLIGHTS, events)
    fold_into_current(spec=FLIGHTS, raw_uri=in_order + "-raw", current_uri=in_order)

    shuffled = str(tmp_path / "shuffled")
    batches = [events[i : i + 7] for i in range(0, 40, 7)]
    random.Random(3).shuffle(batches)
    for batch in batches:  # arrival order shuffled, newer batches before older ones
        merge_into_current(
            spec=FLIGHTS, current_uri=shuffled, raw_rows=rows(FLIGHTS, batch), raw_version=None
        )
    columns = ["key", "status", "version", "source_offset"]
    assert current(shuffled).select(columns).equals(current(in_order).select(columns))


def test_current_changes_returns_post_images_since_a_version(tmp_path) -> None:
    raw, cur = str(tmp_path / "raw"), str(tmp_path / "current")
    land(raw, FLIGHTS, [flight(0, "UA1", "scheduled"), flight(1, "DL2", "scheduled")])
    v1 = fold_into_current(spec=FLIGHTS, raw_uri=raw, current_uri=cur).current_version
    land(raw, FLIGHTS, [flight(2, "UA1", "delayed")])
    fold_into_current(spec=FLIGHTS, raw_uri=raw, current_uri=cur)
    changed, latest = current_changes(cur, after=v1)
    assert changed.column("key").to_pylist() == ["UA1"]
    assert changed.column("status").to_pylist() == ["delayed"] and latest > v1
    everything, _ = current_changes(cur, after=None)
    assert sorted(everything.column("key").to_pylist()) == ["DL2", "UA1"]
