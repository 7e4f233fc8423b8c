"""The fine-tuning dataset: feedback joined as of its time with the raw documents it cites."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from freshlake.delta.schemas import raw_schema
from freshlake.embed.chunking import ChunkerSettings
from freshlake.feedback import (
    DATASET_SCHEMA,
    build_dataset,
    build_finetuning,
    candidates,
    document_ids,
    to_jsonl,
    window_predicate,
)
from freshlake.ingest.parse import split_messages
from freshlake.kafka.messages import KafkaMessage
from freshlake.partitions import window
from tests.demo_streams import DEMO_STREAMS, demo_stream

T0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
SPECS = {name: demo_stream(name) for name in ("flights", "bookings", "policies", "feedback")}


class Chunker:
    """Splits on blank lines: enough to see which text was chunked, no tokenizer needed."""

    version = "test-chunker"

    def chunk(self, text: str) -> list[str]:
        return [part for part in text.split("\n\n") if part]


class Log:
    """Messages of one stream with increasing offsets, as raw rows."""

    def __init__(self, stream: str) -> None:
        self.spec = SPECS[stream]
        self.messages: list[KafkaMessage] = []

    def send(self, key: str, value: dict | None, *, at: datetime, partition: int = 0) -> None:
        if value is not None and "event_time" in self.spec.fields:
            value = {"event_time": at.isoformat(), **value}
        self.messages.append(
            KafkaMessage(
                topic=self.spec.topic,
                partition=partition,
                offset=len(self.messages),
                key=key.encode(),
                value=None if value is None else json.dumps(value).encode(),
                timestamp_ms=int(at.timestamp() * 1000),
            )
        )

    def raw(self) -> pa.Table:
        raw, bad = split_messages(self.spec, self.messages, ingested_at=T0 + timedelta(days=30))
        assert bad.num_rows == 0, bad.column("error_message").to_pylist()
        return raw


def policy(log: Log, key: str, revision: int, body: str, *, at: datetime) -> None:
    value = {"policy_id": key, "title": f"{key} r{revision}", "body": body, "revision": revision}
    log.send(key, value, at=at)


def feedback(log: Log, fid: str, ids: Sequence[str], *, at: datetime, rating: str = "up", **extra) -> None:
    value = {"feedback_id": fid, "query": "q?", "answer": "a.", "rating": rating, "document_ids": list(ids)}
    log.send(fid, {**value, **extra}, at=at)


def loader(*logs: Log):
    tables = {log.spec.name: log.raw() for log in logs}
    calls: list[tuple[str, tuple[str, ...]]] = []

    def load(stream: str, keys: Sequence[str], until: datetime) -> pa.Table | None:
        calls.append((stream, tuple(keys)))
        return tables.get(stream)

    load.calls = calls  # type: ignore[attr-defined]
    return load


def build(fb: Log, *logs: Log):
    return build_dataset(fb.raw(), load=loader(*logs), streams=DEMO_STREAMS, chunker=Chunker())


def by_id(rows: pa.Table) -> dict[str, dict]:
    return {r["feedback_id"]: r for r in rows.to_pylist()}


def test_each_feedback_sees_the_revision_current_at_its_time() -> None:
    policies, fb = Log("policies"), Log("feedback")
    policy(policies, "policy-refunds", 1, "Refunds in 7 days.", at=T0)
    feedback(fb, "FB1", ["policy-refunds"], at=T0 + timedelta(hours=1))
    policy(policies, "policy-refunds", 2, "Refunds in 3 days.\n\nVouchers too.", at=T0 + timedelta(hours=2))
    feedback(fb, "FB2", ["policy-refunds"], at=T0 + timedelta(hours=3), rating="down")

    rows = by_id(build(fb, policies).rows)

    assert rows["FB1"]["chunk_texts"] == ["policy-refunds r1", "Refunds in 7 days."]
    assert rows["FB2"]["chunk_texts"] == ["policy-refunds r2", "Refunds in 3 days.", "Vouchers too."]
    assert (rows["FB1"]["label"], rows["FB2"]["label"]) == (1, 0)
    doc = rows["FB1"]["documents"][0]
    assert (doc["stream"], doc["key"], doc["status"]) == ("policies", "policy-refunds", "found")
    assert (doc["source_topic"], doc["source_partition"], doc["source_offset"]) == ("policies", 0, 0)
    assert doc["source_kafka_date"] == "2026-03-01"
    assert rows["FB2"]["documents"][0]["source_offset"] == 1
    assert rows["FB1"]["missing_documents"] == []


def test_version_at_exactly_the_feedback_time_counts_and_the_newest_offset_wins() -> None:
    policies, fb = Log("policies"), Log("feedback")
    policy(policies, "p", 1, "one", at=T0)
    policy(policies, "p", 2, "two", at=T0)  # same millisecond: the later offset is newer
    policy(policies, "p", 3, "three", at=T0 + timedelta(microseconds=1000))
    feedback(fb, "FB1", ["p"], at=T0)

    row = by_id(build(fb, policies).rows)["FB1"]

    assert row["chunk_texts"] == ["p r2", "two"]
    assert row["documents"][0]["source_offset"] == 1


def test_deleted_and_unknown_documents_are_missing_not_errors() -> None:
    policies, flights, fb = Log("policies"), Log("flights"), Log("feedback")
    policy(policies, "policy-pets", 1, "Pets fly in the cabin.", at=T0)
    policies.send("policy-pets", None, at=T0 + timedelta(minutes=1))  # withdrawn: tombstone
    feedback(fb, "FB1", ["policy-pets", "FL404", "policies:policy-nope"], at=T0 + timedelta(minutes=2))
    policy(policies, "policy-pets", 2, "Pets are back.", at=T0 + timedelta(minutes=3))  # later: ignored

    result = build(fb, policies, flights)
    row = by_id(result.rows)["FB1"]

    assert row["missing_documents"] == ["policy-pets", "FL404", "policies:policy-nope"]
    assert row["chunk_texts"] == []
    statuses = [(d["document_id"], d["stream"], d["key"], d["status"]) for d in row["documents"]]
    assert statuses == [
        ("policy-pets", "policies", "policy-pets", "deleted"),
        ("FL404", None, "FL404", "unknown"),
        ("policies:policy-nope", "policies", "policy-nope", "unknown"),
    ]
    assert row["documents"][0]["source_offset"] == 1  # the delete's coordinates
    assert (result.documents_referenced, result.documents_missing) == (3, 3)


def test_a_document_published_after_the_feedback_is_unknown_to_it() -> None:
    flights, fb = Log("flights"), Log("feedback")
    feedback(fb, "FB1", ["FL0001"], at=T0)
    value = {"flight_id": "FL0001", "flight_number": "FL1", "status": "boarding", "version": 1}
    flights.send("FL0001", value, at=T0 + timedelta(seconds=1))

    row = by_id(build(fb, flights).rows)["FB1"]

    assert row["missing_documents"] == ["FL0001"]
    assert row["documents"][0]["status"] == "unknown"


def test_bare_keys_resolve_in_any_document_stream_and_bookings_join_their_flight_as_of() -> None:
    flights, bookings, fb = Log("flights"), Log("bookings"), Log("feedback")
    flight = {"flight_id": "FL7", "flight_number": "FL7", "origin": "JFK", "destination": "SFO"}
    flights.send("FL7", {**flight, "status": "scheduled", "version": 1}, at=T0)
    booking = {"booking_id": "BK1", "passenger_name": "Ana", "flight_id": "FL7", "status": "confirmed"}
    bookings.send("BK1", {"op": "c", "after": booking, "ts_ms": int(T0.timestamp() * 1000)}, at=T0)
    feedback(fb, "FB1", ["BK1", "FL7"], at=T0 + timedelta(minutes=1))
    flights.send("FL7", {**flight, "status": "cancelled", "version": 2}, at=T0 + timedelta(minutes=2))

    row = by_id(build(fb, flights, bookings).rows)["FB1"]

    booked, flight_doc = row["documents"]
    assert booked["stream"] == "bookings" and "is scheduled" in booked["text"]
    assert (booked["joined_stream"], booked["joined_key"], booked["joined_offset"]) == ("flights", "FL7", 0)
    assert flight_doc["stream"] == "flights" and "is scheduled" in flight_doc["text"]
    assert row["missing_documents"] == []


def test_as_of_is_the_earlier_of_event_time_and_message_time() -> None:
    policies, fb = Log("policies"), Log("feedback")
    policy(policies, "p", 1, "old", at=T0)
    policy(policies, "p", 2, "new", at=T0 + timedelta(minutes=10))
    # Reacted at T0+5m, produced at T0+20m (client batching): the answer predates revision 2.
    reacted = (T0 + timedelta(minutes=5)).isoformat()
    feedback(fb, "FB1", ["p"], at=T0 + timedelta(minutes=20), event_time=reacted)
    # A clock in the future never reaches past the feedback's own message time.
    future = (T0 + timedelta(days=9)).isoformat()
    feedback(fb, "FB2", ["p"], at=T0 + timedelta(minutes=9), event_time=future)

    rows = by_id(build(fb, policies).rows)

    assert rows["FB1"]["chunk_texts"] == ["p r1", "old"]
    assert rows["FB1"]["as_of"] == T0 + timedelta(minutes=5)
    assert rows["FB2"]["chunk_texts"] == ["p r1", "old"]
    assert rows["FB2"]["as_of"] == T0 + timedelta(minutes=9)


def test_duplicates_keep_the_newest_offset_and_tombstones_are_not_feedback() -> None:
    fb = Log("feedback")
    feedback(fb, "FB1", [], at=T0, rating="down")
    feedback(fb, "FB1", [], at=T0, rating="up")  # a producer retry with a correction
    feedback(fb, "FB2", [], at=T0, rating="meh")
    fb.send("FB3", None, at=T0)

    result = build(fb)
    rows = by_id(result.rows)

    assert sorted(rows) == ["FB1", "FB2"]
    assert rows["FB1"]["rating"] == "up" and rows["FB1"]["label"] == 1
    assert rows["FB2"]["label"] is None
    assert result.duplicates_dropped == 1
    assert (result.count(1), result.count(0), result.count(None)) == (1, 0, 1)


def test_only_cited_keys_are_loaded_per_stream() -> None:
    policies, fb = Log("policies"), Log("feedback")
    feedback(fb, "FB1", ["policies:a", "b"], at=T0)
    load = loader(policies)

    build_dataset(fb.raw(), load=load, streams=DEMO_STREAMS, chunker=Chunker())

    assert ("policies", ("a", "b")) in load.calls
    assert ("flights", ("b",)) in load.calls


def test_empty_window_gives_an_empty_table_with_the_schema() -> None:
    result = build_dataset(
        raw_schema(SPECS["feedback"]).empty_table(), load=loader(), streams=DEMO_STREAMS, chunker=Chunker()
    )
    assert result.rows.num_rows == 0 and result.rows.schema == DATASET_SCHEMA


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('["policy-refunds", "FL0012"]', ["policy-refunds", "FL0012"]),
        ('["a", "a", 7]', ["a", "7"]),
        ("FL1", ["FL1"]),
        (None, []),
        ("[]", []),
    ],
)
def test_document_ids(value, expected) -> None:
    assert document_ids(value) == expected


def test_candidates() -> None:
    streams = ["flights", "policies"]
    assert candidates("policies:p-1", streams) == [("policies", "p-1")]
    assert candidates("p-1", streams) == [("flights", "p-1"), ("policies", "p-1")]
    assert candidates("nope:x", streams) == [("flights", "nope:x"), ("policies", "nope:x")]


def test_window_predicate_replaces_whole_days_or_the_hour() -> None:
    daily = window_predicate(window(["2026-03-01", "2026-03-02"]))
    assert daily == "kafka_date IN ('2026-03-01', '2026-03-02')"
    hourly = window_predicate(window(["2026-03-01-09:00"], cadence="hourly"))
    assert hourly.startswith("kafka_date IN ('2026-03-01') AND message_time >= '2026-03-01T09:00:00+00:00'")


def test_real_chunker_and_delta_round_trip(tmp_path) -> None:
    """The real tokenizer chunker, real Delta: a re-run replaces the window's rows, no more."""
    from deltalake import DeltaTable, write_deltalake

    policies, fb = Log("policies"), Log("feedback")
    policy(policies, "p", 1, "Refunds are processed within seven business days.", at=T0)
    feedback(fb, "FB1", ["p"], at=T0 + timedelta(hours=1))
    feedback(fb, "FB2", ["p"], at=T0 + timedelta(days=1))
    uris = {name: str(tmp_path / name / "raw") for name in ("policies", "feedback")}
    for log in (policies, fb):
        write_deltalake(uris[log.spec.name], log.raw(), mode="append", partition_by=["kafka_date"])
    out = str(tmp_path / "feedback" / "finetuning")

    def run(day: str):
        return build_finetuning(
            feedback_uri=uris["feedback"],
            raw_uris=uris,
            out_uri=out,
            streams=DEMO_STREAMS,
            feedback=SPECS["feedback"],
            window=window([day]),
            chunker=ChunkerSettings(),
        )

    first = run("2026-03-01")
    assert first.dataset.rows.column("chunk_texts").to_pylist() == [
        ["p r1\n\nRefunds are processed within seven business days."]
    ]
    run("2026-03-02")
    again = run("2026-03-01")
    table = DeltaTable(out).to_pyarrow_table().sort_by("feedback_id")
    assert table.column("feedback_id").to_pylist() == ["FB1", "FB2"]
    assert again.delta_version == first.delta_version + 2
    assert json.loads(to_jsonl(again.dataset.rows).decode())["chunker"] == ChunkerSettings().version
