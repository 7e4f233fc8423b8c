"""Kafka messages -> raw rows and quarantine rows: every message lands exactly once."""

from __future__ import annotations

import itertools
import json
import random
from datetime import UTC, datetime, timedelta, timezone

import pyarrow as pa
import pytest

from freshlake.delta.schemas import PARTITION_COLUMN, quarantine_schema, raw_schema
from freshlake.ingest import parse
from freshlake.ingest.parse import (
    ERROR_CLASSES,
    MAX_ERROR_MESSAGE,
    RejectedMessage,
    arrow_json,
    decode,
    parse_record,
    split_messages,
    timestamps,
)
from freshlake.ingest.parse import splitter as splitter_module
from freshlake.kafka.messages import KafkaMessage, MessageBatch
from freshlake.streams import StreamSpec
from tests.demo_streams import demo_stream

FLIGHTS = demo_stream("flights")
BOOKINGS = demo_stream("bookings")
INGESTED_AT = datetime(2025, 6, 2, 0, 30, tzinfo=UTC)
T0_MS = 1748765700000  # 2025-06-01T08:15:00Z
_offsets = itertools.count()


def message(
    value: object,
    *,
    key: bytes | None = b"UA0452-2025-06-01",
    topic: str = "flights",
    timestamp_ms: int | None = T0_MS,
    headers: tuple[tuple[str, bytes | None], ...] = (),
) -> KafkaMessage:
    """A Kafka message; dicts are sent as JSON, bytes as they are, None as a tombstone."""
    raw = json.dumps(value).encode() if isinstance(value, dict | list) else value
    return KafkaMessage(
        topic=topic,
        partition=1,
        offset=next(_offsets),
        key=key,
        value=raw,
        timestamp_ms=timestamp_ms,
        headers=headers,
    )


def flight(**changes: object) -> dict[str, object]:
    record: dict[str, object] = {
        "flight_id": "UA0452-2025-06-01",
        "flight_number": "UA452",
        "airline": "United Airlines",
        "origin": "SFO",
        "destination": "JFK",
        "status": "delayed",
        "scheduled_departure": "2025-06-01T15:05:00.000000+00:00",
        "estimated_departure": "2025-06-01T15:50:00.000000+00:00",
        "gate": "F12",
        "delay_minutes": 45,
        "reason": "weather",
        "event_time": "2025-06-01T08:15:00.000000+00:00",
        "version": 3,
    }
    record.update(changes)
    return {k: v for k, v in record.items() if v is not _DROP}


_DROP = object()


BOOKING = {
    "booking_id": "BK000042",
    "passenger_name": "Ines Rossi",
    "email": "ines.rossi7@example.com",
    "flight_id": "UA0452-2025-06-01",
    "seat": "14C",
    "fare_class": "economy",
    "status": "confirmed",
    "updated_at": "2025-06-01T08:15:00.000000+00:00",
}
BOOKING_KEY = b'{"booking_id":"BK000042"}'


def change(op: str, *, before: object = None, after: object = None, wrap: bool = False) -> dict:
    source = {"connector": "postgresql", "ts_ms": T0_MS, "table": "bookings", "lsn": 24023328}
    env = {"before": before, "after": after, "source": source, "op": op, "ts_ms": T0_MS + 40}
    return {"schema": {"type": "struct"}, "payload": env} if wrap else env


def booking_message(value: object, *, key: bytes | None = BOOKING_KEY) -> KafkaMessage:
    return message(value, key=key, topic="bookings")


def rejected(spec: StreamSpec, msg: KafkaMessage) -> RejectedMessage:
    with pytest.raises(RejectedMessage) as info:
        parse_record(spec, msg)
    assert info.value.error_class in ERROR_CLASSES
    return info.value


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- good json records -----------------------------------------------------------------------


def test_a_flight_becomes_a_typed_raw_row() -> None:
    msg = message(flight(), headers=(("trace-id", b"abc"), ("empty", None)))
    row = parse_record(FLIGHTS, msg)
    assert set(row) == set(raw_schema(FLIGHTS).names) - {"ingested_at", PARTITION_COLUMN}
    assert row["kafka_topic"] == "flights"
    assert (row["kafka_partition"], row["kafka_offset"]) == (1, msg.offset)
    assert row["kafka_key"] == b"UA0452-2025-06-01"
    assert row["kafka_timestamp"] == utc(2025, 6, 1, 8, 15)
    assert row["kafka_headers"] == [
        {"key": "trace-id", "value": b"abc"},
        {"key": "empty", "value": None},
    ]
    assert row["value"] == msg.value
    assert row["key"] == "UA0452-2025-06-01"
    assert row["is_delete"] is False
    assert row["event_time"] == utc(2025, 6, 1, 8, 15)
    assert row["scheduled_departure"] == utc(2025, 6, 1, 15, 5)
    assert row["delay_minutes"] == 45
    assert row["status"] == "delayed"


def test_optional_fields_may_be_missing_or_null_and_extra_fields_are_kept_in_value() -> None:
    msg = message(flight(gate=None, reason=_DROP, delay_minutes=_DROP, crew="4 pilots"))
    row = parse_record(FLIGHTS, msg)
    assert (row["gate"], row["reason"], row["delay_minutes"]) == (None, None, None)
    assert "crew" not in row
    assert json.loads(row["value"])["crew"] == "4 pilots"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-06-01T08:15:00Z", utc(2025, 6, 1, 8, 15)),
        ("2025-06-01T08:15:00.123456Z", utc(2025, 6, 1, 8, 15, 0, 123456)),
        ("2025-06-01T10:15:00+02:00", utc(2025, 6, 1, 8, 15)),
        ("2025-06-01T03:15:00-05:00", utc(2025, 6, 1, 8, 15)),
        ("2025-06-01T08:15:00", utc(2025, 6, 1, 8, 15)),  # naive means UTC
        ("2025-06-01 08:15:00.5", utc(2025, 6, 1, 8, 15, 0, 500000)),
        (T0_MS, utc(2025, 6, 1, 8, 15)),  # epoch milliseconds
        (T0_MS + 7, utc(2025, 6, 1, 8, 15, 0, 7000)),
        (0, utc(1970, 1, 1)),
    ],
)
def test_timestamps_accept_iso_8601_and_epoch_millis(text: object, expected: datetime) -> None:
    row = parse_record(FLIGHTS, message(flight(event_time=text)))
    assert row["event_time"] == expected
    assert row["event_time"].utcoffset() == timedelta(0)
    raw, quarantine = split_messages(FLIGHTS, [message(flight(event_time=text))], ingested_at=INGESTED_AT)
    assert quarantine.num_rows == 0
    assert raw.column("event_time").to_pylist()[0] == expected


def test_list_and_object_fields_become_compact_sorted_json_text() -> None:
    spec = StreamSpec(
        name="notes",
        topic="notes",
        key_field="note_id",
        fields={
            "note_id": "int",
            "tags": "list",
            "meta": "object",
            "score": "float",
            "pinned": "bool",
        },
        required=("note_id",),
    )
    value = {
        "note_id": 7,
        "tags": ["b", "a"],
        "meta": {"z": 1, "a": [1, 2]},
        "score": 3,
        "pinned": False,
    }
    msg = message(value, key=b"7", topic="notes")
    row = parse_record(spec, msg)
    assert row["key"] == "7"
    assert row["tags"] == '["b","a"]'
    assert row["meta"] == '{"a":[1,2],"z":1}'
    assert row["score"] == 3.0
    assert row["pinned"] is False
    assert row["event_time"] is None  # no event-time field in this spec
    raw, _ = split_messages(spec, [msg], ingested_at=INGESTED_AT)
    assert raw.schema.equals(raw_schema(spec))
    assert raw.to_pylist()[0]["meta"] == '{"a":[1,2],"z":1}'


# --- the error classes -------------------------------------------------------------------------


def test_invalid_utf8() -> None:
    error = rejected(FLIGHTS, message(b'{"flight_id": "UA\xff\x00'))
    assert error.error_class == "invalid_utf8"
    assert "not UTF-8" in str(error)


@pytest.mark.parametrize("value", [b"", b'{"flight_id": "UA0452"', b"{'single': 'quotes'}", b"nul"])
def test_invalid_json(value: bytes) -> None:
    error = rejected(FLIGHTS, message(value))
    assert error.error_class == "invalid_json"
    assert str(error).startswith("value is not JSON")


def test_json_with_surrounding_whitespace_is_fine_but_trailing_data_is_not() -> None:
    good = b"  " + json.dumps(flight()).encode() + b"\n"
    assert parse_record(FLIGHTS, message(good))["key"] == "UA0452-2025-06-01"
    error = rejected(FLIGHTS, message(json.dumps(flight()).encode() + b" {}"))
    assert error.error_class == "invalid_json"
    assert "Extra data" in str(error)


@pytest.mark.parametrize(("value", "kind"), [(b"[1, 2]", "list"), (b'"UA452"', "string"), (b"null", "null")])
def test_not_an_object(value: bytes, kind: str) -> None:
    error = rejected(FLIGHTS, message(value))
    assert error.error_class == "not_an_object"
    assert str(error) == f"value is JSON {kind}, expected an object"


def test_missing_kafka_key() -> None:
    for key in (None, b""):
        error = rejected(FLIGHTS, message(flight(), key=key))
        assert (error.error_class, str(error)) == ("missing_key", "message has no Kafka key")


def test_record_without_its_key_field() -> None:
    for record in (flight(flight_id=_DROP), flight(flight_id=None)):
        error = rejected(FLIGHTS, message(record))
        assert error.error_class == "missing_key"
        assert "'flight_id'" in str(error)


def test_tombstone_without_a_key() -> None:
    error = rejected(FLIGHTS, message(None, key=None))
    assert error.error_class == "missing_key"
    assert "tombstone" in str(error)


@pytest.mark.parametrize(
    ("record", "message_text"),
    [
        (flight(status=_DROP), "required field 'status' (string) is missing"),
        (flight(event_time=None), "required field 'event_time' (timestamp) is null"),
        (flight(delay_minutes="lots"), "field 'delay_minutes': expected int, got string"),
        (flight(delay_minutes=True), "field 'delay_minutes': expected int, got bool"),
        (flight(delay_minutes=45.0), "field 'delay_minutes': expected int, got float"),
        (flight(gate=12), "field 'gate': expected string, got int"),
        (flight(reason=["weather"]), "field 'reason': expected string, got list"),
        (flight(version={"v": 2}), "field 'version': expected int, got object"),
        (flight(event_time=True), "field 'event_time': expected timestamp, got bool"),
        (flight(event_time=1.7e12), "field 'event_time': expected timestamp, got float"),
        (flight(event_time="next tuesday"), "field 'event_time': expected timestamp (ISO-8601"),
        (flight(event_time="12.5e99"), "field 'event_time': expected timestamp (ISO-8601"),
        (flight(event_time=10**18), "field 'event_time': timestamp '1000000000000000000' is out"),
    ],
)
def test_schema_errors_name_the_field_and_types(record: dict, message_text: str) -> None:
    error = rejected(FLIGHTS, message(record))
    assert error.error_class == "schema"
    assert str(error).startswith(message_text)


def test_bool_is_not_an_int_but_an_int_is_a_float() -> None:
    spec = StreamSpec(name="s", topic="s", key_field="id", fields={"id": "string", "n": "int", "x": "float"})
    assert parse_record(spec, message({"id": "a", "n": 1, "x": 2}))["x"] == 2.0
    assert rejected(spec, message({"id": "a", "n": False})).error_class == "schema"
    assert rejected(spec, message({"id": "a", "x": True})).error_class == "schema"


def test_envelope_errors_on_debezium_streams() -> None:
    no_op = change("u", before=BOOKING, after=BOOKING)
    del no_op["op"]
    cases = [
        (no_op, "has no 'op'"),
        (change("x", after=BOOKING), "unknown op 'x'"),
        (change("c", wrap=True), "op 'c' has no 'after' row image"),
        (change("d", after=BOOKING), "has no 'before' row image"),
    ]
    for value, text in cases:
        error = rejected(BOOKINGS, booking_message(value))
        assert error.error_class == "envelope"
        assert text in str(error)


def test_debezium_row_images_are_checked_against_the_spec() -> None:
    error = rejected(BOOKINGS, booking_message(change("u", after=dict(BOOKING, seat=14))))
    assert (error.error_class, str(error)) == ("schema", "field 'seat': expected string, got int")
    error = rejected(BOOKINGS, booking_message(change("c", after={"seat": "1A"})))
    assert error.error_class == "missing_key"


def test_error_messages_are_short_and_never_carry_the_payload() -> None:
    long_name = "x" * 5000
    error = rejected(FLIGHTS, message(flight(**{long_name: 1}, gate=[long_name])))
    assert long_name not in str(error)
    error = rejected(FLIGHTS, message(flight(event_time="y" * 5000)))
    assert len(str(error)) <= MAX_ERROR_MESSAGE
    assert "y" * 41 not in str(error)


# --- deletes ---------------------------------------------------------------------------------


def test_json_tombstone_is_a_delete_row() -> None:
    row = parse_record(FLIGHTS, message(None))
    assert row["is_delete"] is True
    assert row["key"] == "UA0452-2025-06-01"
    assert row["value"] is None
    assert row["event_time"] is None
    assert all(row[name] is None for name in FLIGHTS.fields if name != "event_time")


def test_debezium_tombstone_is_a_delete_row_keyed_by_the_struct_key() -> None:
    wrapped_key = b'{"schema":{"type":"struct"},"payload":{"booking_id":"BK000042"}}'
    for key in (BOOKING_KEY, wrapped_key):
        row = parse_record(BOOKINGS, booking_message(None, key=key))
        assert (row["key"], row["is_delete"], row["op"]) == ("BK000042", True, None)
        assert row["before"] is None and row["after"] is None and row["source_ts_ms"] is None
        assert all(row[name] is None for name in BOOKINGS.fields)


def test_debezium_delete_is_a_raw_row_with_the_before_image() -> None:
    row = parse_record(BOOKINGS, booking_message(change("d", before=BOOKING)))
    assert row["is_delete"] is True
    assert row["op"] == "d"
    assert row["key"] == "BK000042"
    assert row["seat"] == "14C"
    assert row["updated_at"] == utc(2025, 6, 1, 8, 15)
    assert json.loads(row["before"]) == BOOKING
    assert row["after"] is None
    assert (row["source_table"], row["source_lsn"], row["source_pos"]) == (
        "bookings",
        24023328,
        None,
    )


def test_debezium_delete_with_only_the_primary_key_in_before_is_accepted() -> None:
    spec = StreamSpec(
        name="b",
        topic="b",
        key_field="booking_id",
        format="debezium",
        fields={"booking_id": "string", "status": "string"},
        required=("booking_id", "status"),
    )
    row = parse_record(spec, booking_message(change("d", before={"booking_id": "BK1", "status": None})))
    assert (row["key"], row["status"], row["is_delete"]) == ("BK1", None, True)
    error = rejected(spec, booking_message(change("c", after={"booking_id": "BK1", "status": None})))
    assert error.error_class == "schema"


@pytest.mark.parametrize("wrap", [False, True])
def test_debezium_create_and_update(wrap: bool) -> None:
    after = dict(BOOKING, seat="2A", updated_at=_DROP)
    after = {k: v for k, v in after.items() if v is not _DROP}
    row = parse_record(BOOKINGS, booking_message(change("u", before=BOOKING, after=after, wrap=wrap)))
    assert (row["op"], row["is_delete"], row["seat"]) == ("u", False, "2A")
    assert row["after"] == json.dumps(after, separators=(",", ":"), sort_keys=True)
    assert row["source_ts_ms"] == T0_MS
    assert row["updated_at"] is None
    assert row["event_time"] == utc(2025, 6, 1, 8, 15)  # falls back to source.ts_ms


# --- batches ---------------------------------------------------------------------------------


def test_split_messages_keeps_every_message_exactly_once_in_order() -> None:
    messages = [
        message(flight()),
        message(b"not json"),
        message(None),  # tombstone
        message(flight(delay_minutes=True)),
        message(flight(flight_id="DL0101-2025-06-01"), key=b"DL0101-2025-06-01"),
        message(None, key=None),
        message(flight(), key=None),
        message(flight(), timestamp_ms=None),
    ]
    raw, quarantine = split_messages(FLIGHTS, iter(messages), ingested_at=INGESTED_AT)
    assert raw.schema.equals(raw_schema(FLIGHTS))
    assert quarantine.schema.equals(quarantine_schema())
    offsets = [m.offset for m in messages]
    assert raw.column("kafka_offset").to_pylist() == [offsets[i] for i in (0, 2, 4, 7)]
    assert quarantine.column("kafka_offset").to_pylist() == [offsets[i] for i in (1, 3, 5, 6)]
    assert quarantine.column("error_class").to_pylist() == [
        "invalid_json",
        "schema",
        "missing_key",
        "missing_key",
    ]
    assert raw.column("is_delete").to_pylist() == [False, True, False, False]
    assert raw.column("ingested_at").to_pylist() == [INGESTED_AT] * 4
    assert raw.column(PARTITION_COLUMN).to_pylist() == ["2025-06-01"] * 3 + ["2025-06-02"]
    assert raw.column("kafka_timestamp").to_pylist()[3] is None
    assert quarantine.column("value").to_pylist()[0] == b"not json"
    assert quarantine.column("kafka_key").to_pylist()[2] is None


def test_split_messages_rows_match_parse_record() -> None:
    messages = [
        message(flight(), headers=(("trace-id", b"abc"),)),
        message(None),
        booking_message(change("d", before=BOOKING)),
    ]
    raw, _ = split_messages(FLIGHTS, messages[:2], ingested_at=INGESTED_AT)
    extra = {"ingested_at": INGESTED_AT, PARTITION_COLUMN: "2025-06-01"}
    assert raw.to_pylist() == [parse_record(FLIGHTS, m) | extra for m in messages[:2]]
    raw, _ = split_messages(BOOKINGS, messages[2:], ingested_at=INGESTED_AT)
    assert raw.to_pylist() == [parse_record(BOOKINGS, messages[2]) | extra]


def test_tombstones_are_never_quarantined() -> None:
    messages = [message(None), booking_message(None)]
    for spec, msg in zip((FLIGHTS, BOOKINGS), messages, strict=True):
        raw, quarantine = split_messages(spec, [msg], ingested_at=INGESTED_AT)
        assert (raw.num_rows, quarantine.num_rows) == (1, 0)
        assert raw.column("is_delete").to_pylist() == [True]


def test_partition_falls_back_to_ingest_time_and_naive_ingest_time_is_utc() -> None:
    naive = datetime(2025, 6, 3, 23, 59)
    raw, quarantine = split_messages(
        FLIGHTS,
        [message(flight(), timestamp_ms=None), message(b"[", timestamp_ms=None)],
        ingested_at=naive,
    )
    assert raw.column(PARTITION_COLUMN).to_pylist() == ["2025-06-03"]
    assert quarantine.column(PARTITION_COLUMN).to_pylist() == ["2025-06-03"]
    assert raw.column("ingested_at").to_pylist() == [naive.replace(tzinfo=UTC)]
    offset_time = datetime(2025, 6, 4, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    raw, _ = split_messages(FLIGHTS, [message(flight(), timestamp_ms=None)], ingested_at=offset_time)
    assert raw.column(PARTITION_COLUMN).to_pylist() == ["2025-06-03"]


def test_empty_batch_gives_empty_tables_with_the_schemas() -> None:
    raw, quarantine = split_messages(BOOKINGS, [], ingested_at=INGESTED_AT)
    assert (raw.num_rows, quarantine.num_rows) == (0, 0)
    assert raw.schema.equals(raw_schema(BOOKINGS))
    assert quarantine.schema.equals(quarantine_schema())


def test_values_arrow_cannot_store_are_quarantined_without_losing_the_rest() -> None:
    messages = [
        message(flight()),
        message(flight(version=2**63)),  # valid JSON int, but not an int64
        message(flight(gate="\ud800")),  # lone surrogate: not encodable as UTF-8
        message(flight()),
    ]
    raw, quarantine = split_messages(FLIGHTS, messages, ingested_at=INGESTED_AT)
    assert raw.column("kafka_offset").to_pylist() == [messages[0].offset, messages[3].offset]
    assert quarantine.column("kafka_offset").to_pylist() == [messages[1].offset, messages[2].offset]
    assert quarantine.column("error_class").to_pylist() == ["schema", "schema"]
    errors = quarantine.column("error_message").to_pylist()
    assert errors[0].startswith("column 'version' cannot be stored")
    assert errors[1].startswith("column 'gate' cannot be stored")


def mixed_batch() -> list[KafkaMessage]:
    return [
        message(flight()),
        message(b"\xff{"),
        message(flight(version=2**64)),
        message(None),
        message(b"[]"),
        message(flight(event_time=T0_MS), headers=(("trace-id", b"1"),)),
        message(flight(delay_minutes=1.5)),
        message(b'{"flight_id": "UA1", "status": "x", "event_time": NaN}'),
        message(flight(gate="caf\u00e9 \U0001f6eb")),
        message(flight(), key=None),
    ]


def test_chunk_boundaries_keep_every_message_once_and_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    messages = mixed_batch()
    whole = split_messages(FLIGHTS, messages, ingested_at=INGESTED_AT)
    monkeypatch.setattr(splitter_module, "CHUNK_ROWS", 2)
    chunked = split_messages(FLIGHTS, messages, ingested_at=INGESTED_AT)
    assert chunked[0].column("kafka_offset").num_chunks > 1
    assert chunked[0].to_pylist() == whole[0].to_pylist()
    assert chunked[1].to_pylist() == whole[1].to_pylist()
    seen = chunked[0].column("kafka_offset").to_pylist() + chunked[1].column("kafka_offset").to_pylist()
    assert sorted(seen) == [m.offset for m in messages]
    assert chunked[1].column("kafka_offset").to_pylist() == [messages[i].offset for i in (1, 2, 4, 6, 7, 9)]


def test_results_do_not_depend_on_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    messages = mixed_batch()
    messages[2] = message(flight(version=2**63))  # orjson reads ints beyond 64 bits as floats
    default = split_messages(FLIGHTS, messages, ingested_at=INGESTED_AT)
    monkeypatch.setattr(decode, "orjson_loads", None)
    stdlib = split_messages(FLIGHTS, messages, ingested_at=INGESTED_AT)
    assert default[0].to_pylist() == stdlib[0].to_pylist()
    assert default[1].to_pylist() == stdlib[1].to_pylist()
    assert stdlib[1].column("error_class").to_pylist() == [
        "invalid_utf8",
        "schema",
        "not_an_object",
        "schema",
        "missing_version",  # the NaN message has no `version`, the field flights order by
        "missing_key",
    ]


def test_specs_with_equal_content_do_not_share_checks() -> None:
    loose = StreamSpec(name="f", topic="flights", key_field="flight_id", fields={"gate": "string"})
    strict = StreamSpec(name="f", topic="flights", key_field="flight_id", fields={"gate": "int"})
    assert parse_record(loose, message(flight()))["gate"] == "F12"
    assert rejected(strict, message(flight())).error_class == "schema"


# --- the demo world --------------------------------------------------------------------------


def test_demo_world_bad_messages_are_exactly_the_quarantined_ones() -> None:
    world_module = pytest.importorskip("examples.flight_assistant.world")
    world = world_module.DemoWorld(seed=7, start=datetime(2025, 6, 1, 6, 0, tzinfo=UTC), bad_ratio=0.05)
    demo = list(itertools.islice(world.messages(), 3000))
    offsets: dict[str, itertools.count[int]] = {}
    by_topic: dict[str, list[tuple[KafkaMessage, bool]]] = {}
    for m in demo:
        offset = next(offsets.setdefault(m.topic, itertools.count()))
        kafka = KafkaMessage(
            topic=m.topic,
            partition=0,
            offset=offset,
            key=m.key,
            value=m.value,
            timestamp_ms=m.timestamp_ms,
            headers=tuple(m.headers),
        )
        bad = any(name == world_module.BAD_HEADER for name, _ in m.headers)
        by_topic.setdefault(m.topic, []).append((kafka, bad))
    n_bad = 0
    for spec in (demo_stream(name) for name in ("flights", "bookings", "policies", "feedback")):
        pairs = by_topic.get(spec.topic, [])
        raw, quarantine = split_messages(spec, [m for m, _ in pairs], ingested_at=INGESTED_AT)
        expected_bad = [m.offset for m, bad in pairs if bad]
        assert quarantine.column("kafka_offset").to_pylist() == expected_bad, quarantine.to_pylist()
        assert raw.column("kafka_offset").to_pylist() == [m.offset for m, bad in pairs if not bad]
        assert raw.schema.equals(raw_schema(spec))
        n_bad += len(expected_bad)
    assert 50 < n_bad < 300
    assert len(demo) == sum(len(pairs) for pairs in by_topic.values())


def test_raw_table_from_split_is_a_plain_arrow_table() -> None:
    raw, _ = split_messages(FLIGHTS, [message(flight())], ingested_at=INGESTED_AT)
    assert isinstance(raw, pa.Table)
    assert raw.column("kafka_headers").to_pylist() == [[]]


# --- the column-at-a-time fast path ------------------------------------------------------------


def both_paths(
    spec: StreamSpec, messages: list[KafkaMessage], monkeypatch: pytest.MonkeyPatch
) -> tuple[tuple[pa.Table, pa.Table], tuple[pa.Table, pa.Table]]:
    """split_messages as is, and with the fast paths off (message by message only)."""
    fast = split_messages(spec, messages, ingested_at=INGESTED_AT)
    with monkeypatch.context() as m:
        m.setattr(parse.Splitter, "_json_start", lambda self, batch: None)
        m.setattr(parse.Splitter, "_orjson_chunk", lambda self, batch: None)
        slow = split_messages(spec, messages, ingested_at=INGESTED_AT)
    return fast, slow


@pytest.mark.parametrize(
    "times",
    [
        ["2025-06-01T08:15:00.000000+00:00", "2025-06-01T10:15:00.5+02:00", None],
        ["2025-06-01T08:15:00Z", "2025-06-01 08:15:00.123-05:30"],
        ["2025-06-01T08:15:00", "2025-06-01 08:15:00.5"],  # naive means UTC
        ["2025-06-01T08:15:00", "2025-06-01T08:15:00Z"],  # naive and aware mixed
        [T0_MS, T0_MS + 7, 0],
        [T0_MS, "2025-06-01T08:15:00Z"],
        ["2025-02-30T08:15:00Z", "2025-06-01T08:15:00Z"],  # no such day
        ["2025-06-01T08:15:00.1234567Z", "2025-06-01T08:15:00Z"],
        ["0001-01-01T00:00:00+00:01", "9999-12-31T23:59:59.999999-00:01", "0999-06-01T00:00:00Z"],
        ["2025-06-01T24:00:00Z", "2025-06-01T08:15:60Z", "2025-06-01T08:15:00+24:00"],
        [10**18, -(10**16), 2**63],
        ["next tuesday", "2025-06-01T08:15:00\n", "2025-06-01t08:15:00z"],
    ],
)
def test_fast_path_lands_every_message_where_the_message_path_does(
    times: list[object], monkeypatch: pytest.MonkeyPatch
) -> None:
    messages = [message(flight(event_time=t, scheduled_departure=t)) for t in times]
    messages += [message(flight(estimated_departure=t)) for t in times if t is not None]
    (raw, quarantine), (slow_raw, slow_quarantine) = both_paths(FLIGHTS, messages, monkeypatch)
    assert raw.to_pylist() == slow_raw.to_pylist()
    assert quarantine.to_pylist() == slow_quarantine.to_pylist()
    assert raw.num_rows + quarantine.num_rows == len(messages)


def test_fast_path_and_message_path_agree_on_the_demo_world(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world_module = pytest.importorskip("examples.flight_assistant.world")
    world = world_module.DemoWorld(seed=11, start=datetime(2025, 6, 1, 6, 0, tzinfo=UTC), bad_ratio=0.02)
    demo = [m for m in itertools.islice(world.messages(), 4000) if m.topic == "flights"]
    messages = [
        KafkaMessage(
            topic=m.topic,
            partition=0,
            offset=i,
            key=m.key,
            value=m.value,
            timestamp_ms=m.timestamp_ms,
            headers=tuple(m.headers),
        )
        for i, m in enumerate(demo)
    ]
    monkeypatch.setattr(splitter_module, "CHUNK_ROWS", 64)  # some chunks all good, some not
    (raw, quarantine), (slow_raw, slow_quarantine) = both_paths(FLIGHTS, messages, monkeypatch)
    assert raw.num_rows > 0 and quarantine.num_rows > 0
    assert raw.to_pylist() == slow_raw.to_pylist()
    assert quarantine.to_pylist() == slow_quarantine.to_pylist()


def test_fast_path_refuses_what_the_checks_refuse(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = StreamSpec(
        name="s",
        topic="s",
        key_field="id",
        fields={"id": "string", "n": "int", "x": "float", "ok": "bool", "tags": "list"},
        required=("id", "ok"),
    )
    good = {"id": "a", "n": 1, "x": 2, "ok": True, "tags": ["b", "a"]}
    variants = [
        good,
        dict(good, n=3.0),  # Arrow would take 3.0 as an int64
        dict(good, x=True),  # and True as a float64
        dict(good, ok=1),
        dict(good, ok=None),
        dict(good, x=2**1030),  # too large for a float
        dict(good, x=2**60 + 1),  # a float, though not exactly
        dict(good, n=2**63),
        dict(good, id=7),
    ]
    messages = [message(v, key=b"a", topic="s") for v in variants]
    for one in messages:
        (raw, quarantine), (slow_raw, slow_quarantine) = both_paths(spec, [one], monkeypatch)
        assert raw.to_pylist() == slow_raw.to_pylist()
        assert quarantine.to_pylist() == slow_quarantine.to_pylist()
    raw, quarantine = split_messages(spec, messages, ingested_at=INGESTED_AT)
    assert raw.column("kafka_offset").to_pylist() == [messages[i].offset for i in (0, 6)]
    assert raw.column("tags").to_pylist() == ['["b","a"]'] * 2


def test_arrow_reads_iso_timestamps_like_fromisoformat() -> None:
    rng = random.Random(5)
    texts = []
    for _ in range(3000):
        moment = datetime(1000, 1, 2, tzinfo=UTC) + timedelta(
            microseconds=rng.randrange(250_000_000_000_000_000)
        )
        offset = timedelta(minutes=rng.randrange(-24 * 60 + 1, 24 * 60))
        local = moment.astimezone(timezone(offset))
        digits = rng.choice([0, 1, 3, 6])
        fraction = f".{local.microsecond:06d}"[: digits + 1] if digits else ""
        zone = rng.choice(["Z", local.strftime("%z")[:3] + ":" + local.strftime("%z")[3:], ""])
        if zone == "Z":
            local = moment
        sep = rng.choice("T ")
        texts.append(f"{local:%Y-%m-%d}{sep}{local:%H:%M:%S}{fraction}{zone}")
    aware = [t for t in texts if t[-6] in "+-" or t[-1] == "Z"]
    naive = [t for t in texts if t not in aware]
    assert timestamps.timestamps_at_once(aware) is not None  # Arrow does these
    assert timestamps.timestamps_at_once(naive) is not None
    for group in (aware, naive, texts):
        expected = []
        for text in group:
            try:
                expected.append(timestamps.epoch_us(text))
            except ValueError:
                expected.append(None)
        column = timestamps.timestamps(tuple(group), "t", errors := {})
        assert column.cast(pa.int64()).to_pylist() == expected
        assert not errors


# --- Arrow's JSON reader (the first fast path) -------------------------------------------------

SCALARS = StreamSpec(
    name="s",
    topic="s",
    key_field="id",
    fields={"id": "string", "n": "int", "x": "float", "ok": "bool", "at": "timestamp", "note": "string"},
    required=("id", "ok"),
    event_time_field="at",
)
SCALAR = b'{"id":"a","n":1,"x":2.5,"ok":true,"at":"2025-06-01T08:15:00Z","note":"hi","extra":[1,{"y":2}]}'


def json_table(spec: StreamSpec, messages: list[KafkaMessage]) -> pa.Table | None:
    batch = MessageBatch.from_messages(messages)
    splitter = parse.Splitter(spec, ingested_at=INGESTED_AT)
    read = splitter._json_start(batch)
    return None if read is None else splitter._json_end(read)


def test_json_reader_reads_clean_chunks_like_the_message_path(monkeypatch: pytest.MonkeyPatch) -> None:
    messages = [message(flight(delay_minutes=i, gate=f"G\u00e9{i}", reason=None)) for i in range(50)]
    messages += [message(SCALAR.replace(b'"a"', b'"b"'), key=b"b", topic="s")]
    table = json_table(FLIGHTS, messages[:50])
    assert table is not None  # the JSON reader took the chunk
    (raw, _), (slow_raw, _) = both_paths(FLIGHTS, messages[:50], monkeypatch)
    assert table.to_pylist() == raw.to_pylist() == slow_raw.to_pylist()
    assert table.schema.equals(raw_schema(FLIGHTS))
    assert json_table(SCALARS, messages[50:]) is not None
    (raw, _), (slow_raw, _) = both_paths(SCALARS, messages[50:], monkeypatch)
    assert raw.to_pylist() == slow_raw.to_pylist()


@pytest.mark.parametrize(
    "value",
    [
        b"null",  # the reader crashes on a bare null: must never reach it
        b"{} null",
        b'{"id":"a","ok":true} {"id":"b","ok":true}',
        b'{"id":"a","ok":true}\n{"id":"b","ok":true}',
        b'{"id":"a",\n"ok":true}\n',  # newlines are whitespace
        b"\xef\xbb\xbf" + SCALAR,  # BOM
        b"  " + SCALAR,
        SCALAR + b"  ",
        b"",
        b" ",
        b"[]",
        b'"a"',
        SCALAR.replace(b'"hi"', b'"\xff"'),
        SCALAR.replace(b"[1,", b'["\xed\xa0\x80",'),  # invalid UTF-8 in an ignored field
        SCALAR.replace(b"[1,", b'["\\ud800",'),  # lone surrogates: json.loads takes them
        SCALAR.replace(b'"hi"', b'"\\udc00"'),
        SCALAR.replace(b'"hi"', b'"\\ud83d\\ude00 \\u00e9 \\/ \\b\\f\\n\\r\\t \\" \\\\ \\u0000"'),
        SCALAR.replace(b"[1,", b"[NaN,"),
        SCALAR.replace(b"[1,", b"[Inf,"),
        SCALAR.replace(b"[1,", b"[-NaN,"),
        SCALAR.replace(b"[1,", b"[ -Infinity,"),
        SCALAR.replace(b"2.5", b"NaN"),
        SCALAR.replace(b"2.5", b"Infinity"),
        SCALAR.replace(b"2.5", b"Inf"),
        SCALAR.replace(b"2.5", b"-0"),
        SCALAR.replace(b"2.5", b"-0.0"),
        SCALAR.replace(b"2.5", b"1" * 400),  # an int too large for a float
        SCALAR.replace(b"2.5", b"1" * 25),  # orjson reads it as a float
        SCALAR.replace(b"2.5", b"1e400"),
        SCALAR.replace(b"2.5", b"1e-400"),
        SCALAR.replace(b"2.5", b"1.7976931348623157e308"),
        SCALAR.replace(b"2.5", b"-9223372036854775808"),
        SCALAR.replace(b"2.5", b"2.5e+3"),
        SCALAR.replace(b"2.5", b"true"),
        SCALAR.replace(b"2.5", b'"2.5"'),
        SCALAR.replace(b"[1,", b"[" + b"1" * 5000 + b","),  # more digits than int() reads
        SCALAR.replace(b"[1,", b"[" + b"2" * 400 + b","),
        SCALAR.replace(b"[1,", b"[" + b"[" * 1500 + b"]" * 1500 + b","),  # too deep for json.loads
        SCALAR.replace(b"[1,", b"[" + b"[" * 300 + b"]" * 300 + b","),
        SCALAR.replace(b'"n":1', b'"n":1.0'),
        SCALAR.replace(b'"n":1', b'"n":1e2'),
        SCALAR.replace(b'"n":1', b'"n":9223372036854775807'),
        SCALAR.replace(b'"n":1', b'"n":9223372036854775808'),
        SCALAR.replace(b'"n":1', b'"n":-0'),
        SCALAR.replace(b'"n":1', b'"n":"1"'),
        SCALAR.replace(b'"n":1', b'"n":true'),
        SCALAR.replace(b'"n":1', b'"n":01'),
        SCALAR.replace(b'"ok":true', b'"ok":1'),
        SCALAR.replace(b'"ok":true', b'"ok":null'),
        SCALAR.replace(b'"ok":true', b'"ok":true,"ok":false'),  # duplicate field: the last wins
        SCALAR.replace(b'"extra"', b'"note"'),  # a checked field twice, with another type
        SCALAR.replace(b'"extra"', b'"x","extra"'),
        SCALAR.replace(b'"note"', b'"no\\u0074e"'),  # an escaped field name
        SCALAR.replace(b'[1,{"y":2}]', b'{"id":5,"ok":"x","n":[{}]}'),  # checked names, nested
        SCALAR.replace(b'"extra"', b'"ID"'),
        SCALAR.replace(b'"id":"a"', b'"id":7'),
        SCALAR.replace(b'"id":"a"', b'"id":null'),
        SCALAR.replace(b'"id":"a",', b""),
        SCALAR.replace(b'"hi"', b"5"),
        SCALAR.replace(b'"hi"', b'{"a":1}'),
        SCALAR.replace(b'"hi"', b'"a\tb"'),  # a raw control character
        SCALAR.replace(b"2025-06-01T08:15:00Z", b"next tuesday"),
        SCALAR.replace(b'"2025-06-01T08:15:00Z"', str(T0_MS).encode()),
        SCALAR.replace(b'"2025-06-01T08:15:00Z"', b"null"),
        SCALAR.replace(b"}", b",}"),
        SCALAR.replace(b"{", b"{/*c*/", 1),
        SCALAR.replace(b'"hi"', b"'hi'"),
        SCALAR[:-1],
        SCALAR + b"x",
        SCALAR + b"\x00",
    ],
)
def test_json_reader_lands_odd_values_where_the_message_path_does(
    value: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = message(SCALAR, key=b"a", topic="s")
    odd = message(value, key=b"a", topic="s")
    for messages in ([odd], [good, odd, good]):
        json_table(SCALARS, messages)  # never crashes
        (raw, quarantine), (slow_raw, slow_quarantine) = both_paths(SCALARS, messages, monkeypatch)
        assert repr(raw.to_pylist()) == repr(slow_raw.to_pylist())  # repr: nan is not nan
        assert quarantine.to_pylist() == slow_quarantine.to_pylist()
        assert raw.num_rows + quarantine.num_rows == len(messages)


@pytest.mark.parametrize("block", [1 << 20, 256])  # one block, or many read in parallel
def test_json_reader_never_reads_a_document_across_values(
    block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(arrow_json, "JSON_BLOCK", block)
    # Each value alone is not JSON; joined by newlines they read as three good records.
    values = [
        b'{"id":"a","ok":true,"extra":',
        b'{"y":1}}',
        b'{"id":"b","ok":true} {"id":"c","ok":true}',
    ]
    strings = [b'{"id":"a","ok":true,"note":"}', b'{"}']  # a text running into the next value
    for chunk in (values, strings):
        messages = [message(v, key=b"a", topic="s") for v in chunk]
        assert json_table(SCALARS, messages) is None
        (raw, quarantine), (slow_raw, slow_quarantine) = both_paths(SCALARS, messages, monkeypatch)
        assert raw.num_rows == slow_raw.num_rows == 0
        assert quarantine.to_pylist() == slow_quarantine.to_pylist()
        assert quarantine.column("error_class").to_pylist() == ["invalid_json"] * len(chunk)
    # Newlines inside values (where blocks may end), documents the reader could skip or split.
    odd = [b'{"id":"a",\n' + b" " * 70 + b'\n"ok":true}', b"{}\n{}", b"{" + b" " * 70 + b"}"]
    for value in odd:
        messages = [message(v, key=b"a", topic="s") for v in [SCALAR, value, SCALAR] * 3]
        (raw, quarantine), (slow_raw, slow_quarantine) = both_paths(SCALARS, messages, monkeypatch)
        assert raw.to_pylist() == slow_raw.to_pylist()
        assert quarantine.to_pylist() == slow_quarantine.to_pylist()
    messages = [message(SCALAR, key=b"a", topic="s")] * 20
    assert json_table(SCALARS, messages) is not None  # many blocks, read in order
    (raw, _), (slow_raw, _) = both_paths(SCALARS, messages, monkeypatch)
    assert raw.to_pylist() == slow_raw.to_pylist()


def test_json_reader_reads_floats_like_the_message_path(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(3)
    texts = [repr(rng.uniform(-1e6, 1e6)) for _ in range(300)]
    texts += [repr(struct_float(rng)) for _ in range(300)]
    texts += ["0." + "".join(rng.choice("0123456789") for _ in range(40)) for _ in range(100)]
    texts += [str(rng.randrange(2**53, 2**63)) for _ in range(100)]
    texts += ["5e-324", "2.2250738585072014e-308", "9.2e18", "0", "0.0", "1E5", "-1.5e-7"]
    messages = [message(SCALAR.replace(b"2.5", t.encode()), key=b"a", topic="s") for t in texts]
    assert json_table(SCALARS, messages) is not None
    (raw, quarantine), (slow_raw, slow_quarantine) = both_paths(SCALARS, messages, monkeypatch)
    assert quarantine.num_rows == slow_quarantine.num_rows == 0
    assert raw.column("x").to_pylist() == slow_raw.column("x").to_pylist()


def struct_float(rng: random.Random) -> float:
    """A double from random bits, below 2**63 (larger ones take the other paths)."""
    import struct

    while True:
        value = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if abs(value) < 2.0**63:
            return value


def test_json_reader_sits_out_chunks_after_failing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(splitter_module, "CHUNK_ROWS", 2)
    calls = []
    real = parse.Splitter._json_prepare

    def counted(self, batch):
        calls.append(len(batch))
        return real(self, batch)

    monkeypatch.setattr(parse.Splitter, "_json_prepare", counted)
    bad = [message(flight()), message(b"[]")] * 20
    raw, quarantine = split_messages(FLIGHTS, bad, ingested_at=INGESTED_AT)
    assert (raw.num_rows, quarantine.num_rows) == (20, 20)
    assert len(calls) == 4  # tried on chunks 1, 3, 7 and 15 of the 20


def _timestamps_or_error(texts: pa.Array) -> object:
    try:
        result = timestamps.text_timestamps(texts)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        return type(exc)
    return None if result is None else result.to_pylist()


def test_one_layout_columns_convert_exactly_as_the_per_text_check_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = random.Random(7)
    base = "2026-11-21T10:20:01.066000+05:30"
    alphabet = "0123456789-:T .+Z9a\n"
    for _ in range(400):
        texts = [base] * rng.randint(2, 6)
        for _ in range(rng.randint(0, 2)):  # a character changed, added or dropped somewhere
            row, at = rng.randrange(len(texts)), rng.randrange(len(base))
            edit = rng.choice(["swap", "add", "drop"])
            text = texts[row]
            char = rng.choice(alphabet)
            texts[row] = (
                text[:at] + char + text[at + 1 :]
                if edit == "swap"
                else text[:at] + char + text[at:]
                if edit == "add"
                else text[:at] + text[at + 1 :]
            )
        array = pa.array(["x", *texts], type=pa.string()).slice(1)  # sliced: a non-zero offset
        fast = _timestamps_or_error(array)
        with monkeypatch.context() as m:
            m.setattr(timestamps, "one_layout", lambda texts: False)
            assert _timestamps_or_error(array) == fast, texts


def test_one_layout_means_same_length_digits_where_the_first_has_them() -> None:
    assert timestamps.one_layout(pa.array(["2026-01-02T03:04:05Z", "1999-12-31T23:59:59Z"]))
    assert not timestamps.one_layout(pa.array(["2026-01-02T03:04:05Z", "2026-01-02 03:04:05Z"]))
    assert not timestamps.one_layout(pa.array(["2026-01-02T03:04:05Z", "0026-01-02T03:04:05Z"]))  # year
    assert not timestamps.one_layout(pa.array(["2026-01-02T03:04:05Z", "2026-01-02T03:04:5Z"]))
    assert not timestamps.one_layout(pa.array(["2026-01-02T03:04:05Z", None]))
    assert not timestamps.one_layout(pa.array(["2026-01-02T03:04:05Z"]))  # one text: nothing gained
