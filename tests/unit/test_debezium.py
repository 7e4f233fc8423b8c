"""The Debezium envelope: wrapped and bare forms, every op, refusals, and keys."""

from __future__ import annotations

import json

import pytest

from freshlake.cdc.debezium import (
    DebeziumChange,
    EnvelopeError,
    key_from_kafka_key,
    parse_change,
    unwrap,
)

ROW = {
    "booking_id": "BK000042",
    "passenger_name": "Ines Rossi",
    "email": "ines.rossi7@example.com",
    "flight_id": "UA0452-2025-06-01",
    "seat": "14C",
    "fare_class": "economy",
    "status": "confirmed",
    "updated_at": "2025-06-01T08:15:00.000000+00:00",
}
SOURCE = {
    "version": "2.7.3.Final",
    "connector": "postgresql",
    "name": "airline",
    "ts_ms": 1748765700000,
    "db": "airline",
    "schema": "public",
    "table": "bookings",
    "txId": 7401,
    "lsn": 24023328,
}


def envelope(op: str, *, before: object = None, after: object = None) -> dict[str, object]:
    return {"before": before, "after": after, "source": SOURCE, "op": op, "ts_ms": 1748765700042}


def test_unwrap_accepts_bare_and_schema_wrapped_envelopes() -> None:
    bare = envelope("c", after=ROW)
    wrapped = {
        "schema": {"type": "struct", "name": "airline.public.bookings.Envelope"},
        "payload": bare,
    }
    assert unwrap(bare) is bare
    assert unwrap(wrapped) == bare


def test_unwrap_refuses_a_payload_that_is_not_an_object() -> None:
    with pytest.raises(EnvelopeError, match="'payload' must be an object, got null"):
        unwrap({"schema": {}, "payload": None})


@pytest.mark.parametrize("op", ["c", "r"])
def test_create_and_snapshot_read_carry_the_after_image(op: str) -> None:
    change = parse_change(unwrap({"schema": {}, "payload": envelope(op, after=ROW)}))
    assert change == DebeziumChange(
        op=op,
        before=None,
        after=ROW,
        source_ts_ms=1748765700000,
        source_table="bookings",
        source_lsn=24023328,
        source_pos=None,
        ts_ms=1748765700042,
        source_txid=7401,
    )
    assert change.row is ROW
    assert not change.is_delete


def test_update_row_is_the_after_image() -> None:
    after = dict(ROW, seat="2A", updated_at="2025-06-01T09:00:00+00:00")
    change = parse_change(envelope("u", before=ROW, after=after))
    assert change.op == "u"
    assert change.before == ROW
    assert change.row == after


def test_delete_row_is_the_before_image() -> None:
    change = parse_change(envelope("d", before=ROW))
    assert change.is_delete
    assert change.after is None
    assert change.row == ROW


def test_mysql_source_position() -> None:
    source = {"connector": "mysql", "table": "bookings", "ts_ms": 1, "pos": 154, "file": "bin.1", "row": 2}
    change = parse_change({"op": "c", "after": ROW, "source": source})
    assert (change.source_pos, change.source_lsn, change.ts_ms) == (154, None, None)
    assert (change.source_file, change.source_row) == ("bin.1", 2)
    assert change.has_position


def test_postgres_and_sql_server_source_positions() -> None:
    change = parse_change(envelope("u", before=ROW, after=ROW))
    assert (change.source_lsn, change.source_txid, change.source_file) == (24023328, 7401, None)
    source = {
        "connector": "sqlserver",
        "commit_lsn": "00000027:00000758:0005",
        "change_lsn": "00000027:00000758:0003",
    }
    change = parse_change({"op": "c", "after": ROW, "source": source})
    assert (change.source_commit_lsn, change.source_change_lsn) == (
        source["commit_lsn"],
        source["change_lsn"],
    )
    assert change.has_position
    assert not parse_change({"op": "c", "after": ROW, "source": {"connector": "x"}}).has_position
    assert parse_change({"op": "c", "after": ROW, "ts_ms": 5}).has_position


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"before": None, "after": ROW, "source": SOURCE}, "has no 'op'"),
        (envelope("x", after=ROW), "unknown op 'x'"),
        (envelope("t"), "unknown op 't'"),
        (envelope("c"), "op 'c' has no 'after' row image"),
        (envelope("u", before=ROW), "op 'u' has no 'after' row image"),
        (envelope("r"), "op 'r' has no 'after' row image"),
        (envelope("d", after=ROW), "delete \\(op 'd'\\) has no 'before' row image"),
        (envelope("c", after=["BK1"]), "'after' must be an object or null, got array"),
        (envelope("d", before="BK1"), "'before' must be an object or null, got string"),
        (dict(envelope("c", after=ROW), source="pg"), "'source' must be an object"),
        (dict(envelope("c", after=ROW), source={"lsn": "0/16B3748"}), "'source.lsn' must be"),
        (dict(envelope("c", after=ROW), source={"txId": "7"}), "'source.txId' must be"),
        (dict(envelope("c", after=ROW), source={"file": 3}), "'source.file' must be a string"),
        (dict(envelope("c", after=ROW), source={"commit_lsn": 3}), "'source.commit_lsn' must be"),
    ],
)
def test_invalid_envelopes_are_refused_with_a_clear_message(value: dict, message: str) -> None:
    with pytest.raises(EnvelopeError, match=message):
        parse_change(value)


def test_envelope_error_is_a_value_error() -> None:
    assert issubclass(EnvelopeError, ValueError)


def test_key_from_a_bare_json_struct_key() -> None:
    assert key_from_kafka_key(b'{"booking_id":"BK000042"}', "booking_id") == "BK000042"


def test_key_from_a_schema_wrapped_struct_key() -> None:
    key = json.dumps(
        {
            "schema": {"type": "struct", "fields": [{"type": "string", "field": "booking_id"}]},
            "payload": {"booking_id": "BK000042"},
        }
    ).encode()
    assert key_from_kafka_key(key, "booking_id") == "BK000042"


def test_integer_key_values_become_text() -> None:
    assert key_from_kafka_key(b'{"payload": {"id": 42}}', "id") == "42"


def test_plain_text_keys_are_the_id() -> None:
    assert key_from_kafka_key(b"UA0452-2025-06-01", "flight_id") == "UA0452-2025-06-01"
    assert key_from_kafka_key("policy-refunds-ü".encode(), "policy_id") == "policy-refunds-ü"


def test_a_json_key_without_the_field_is_taken_as_text() -> None:
    assert key_from_kafka_key(b'{"id":"x"}', "booking_id") == '{"id":"x"}'
    assert key_from_kafka_key(b"{not json", "booking_id") == "{not json"


@pytest.mark.parametrize("key", [None, b""])
def test_no_key(key: bytes | None) -> None:
    assert key_from_kafka_key(key, "booking_id") is None


def test_a_null_key_field_is_no_key() -> None:
    assert key_from_kafka_key(b'{"booking_id":null}', "booking_id") is None


def test_a_key_that_is_not_utf8_raises_value_error() -> None:
    with pytest.raises(ValueError):
        key_from_kafka_key(b"\xff\xfe", "flight_id")
