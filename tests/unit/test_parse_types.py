"""The keys and field types real sources send, through the real split path (every chunk path)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime
from typing import Any

import pytest

from freshlake.delta.schemas import raw_schema
from freshlake.errors import FreshlakeConfigError
from freshlake.ingest.parse import Splitter, split_messages
from freshlake.kafka.messages import KafkaMessage
from freshlake.streams import StreamSpec

INGESTED_AT = datetime(2026, 11, 20, tzinfo=UTC)
# 2026-12-01T10:38:48.076854Z as a Debezium PostgreSQL `timestamp` column sends it
MICROS = 1_796_121_528_076_854
MOMENT = datetime(2026, 12, 1, 10, 38, 48, 76854, tzinfo=UTC)


def msg(value: Any, *, key: bytes | None = b"k", offset: int = 0) -> KafkaMessage:
    raw = None if value is None else value if isinstance(value, bytes) else json.dumps(value).encode()
    return KafkaMessage(
        topic="t", partition=0, offset=offset, key=key, value=raw, timestamp_ms=1_790_000_000_000
    )


def split_all_paths(
    spec: StreamSpec, messages: list[KafkaMessage], monkeypatch: pytest.MonkeyPatch
) -> tuple[list[dict], list[dict], int]:
    """(raw rows, quarantine rows, Kafka key mismatches), checked to be the same on each path:
    Arrow's JSON reader, orjson a chunk at a time, and message by message."""
    results = []
    for skip in ((), ("_json_start",), ("_json_start", "_orjson_chunk")):
        with monkeypatch.context() as m:
            for name in skip:
                m.setattr(Splitter, name, lambda self, batch: None)
            splitter = Splitter(spec, ingested_at=INGESTED_AT)
            splitter.add(messages)
            raw, quarantine = splitter.finish()
            assert raw.schema.equals(raw_schema(spec))
            assert raw.num_rows + quarantine.num_rows == len(messages)
            results.append((raw.to_pylist(), quarantine.to_pylist(), splitter.kafka_key_mismatches))
    assert results[0] == results[1] == results[2]
    return results[0]


def reasons(quarantine: list[dict]) -> list[tuple[str, str]]:
    return [(row["error_class"], row["error_message"]) for row in quarantine]


# --- keys ------------------------------------------------------------------------------------

ORDERS = StreamSpec(
    name="orders",
    topic="t",
    key_field="order_id",
    fields={"order_id": "int", "status": "string", "updated_at": "timestamp"},
    event_time_field="updated_at",
)


def test_an_integer_key_is_its_value_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    messages = [msg({"order_id": 17, "status": "paid", "updated_at": "2026-12-01T10:00:00Z"}, key=b"17")]
    messages.append(msg(None, key=b"17", offset=1))
    raw, quarantine, mismatches = split_all_paths(ORDERS, messages, monkeypatch)
    assert quarantine == []
    assert [(r["key"], r["is_delete"], r["order_id"]) for r in raw] == [("17", False, 17), ("17", True, None)]
    assert mismatches == 0


def test_a_declared_key_type_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    messages = [msg({"order_id": "17", "updated_at": "2026-12-01T10:00:00Z"})]
    _, quarantine, _ = split_all_paths(ORDERS, messages, monkeypatch)
    assert reasons(quarantine) == [("schema", "field 'order_id': expected int, got string")]
    loose = StreamSpec(name="l", topic="t", key_field="id", fields={"n": "int"})
    _, quarantine, _ = split_all_paths(loose, [msg({"id": 1.5}), msg({"id": True})], monkeypatch)
    assert [reason for _, reason in reasons(quarantine)] == [
        "key field 'id' must be a string or an integer, got float",
        "key field 'id' must be a string or an integer, got bool",
    ]


COMPOSITE = StreamSpec(
    name="stock",
    topic="t",
    key_field=("region", "sku"),
    fields={"region": "string", "sku": "int", "units": "int", "version": "int"},
    order_by=("version",),
)


def test_a_composite_key_is_the_compact_json_array_of_its_values(monkeypatch: pytest.MonkeyPatch) -> None:
    messages = [
        msg({"region": "EU", "sku": 17, "units": 3, "version": 1}, key=b'["EU",17]'),
        msg({"region": "Zürich", "sku": 2, "units": 1, "version": 1}, key=None, offset=1),
        msg({"region": "EU", "units": 3, "version": 2}, offset=2),
        msg(None, key=b'{"region": "EU", "sku": 17}', offset=3),
        msg(None, key=b'["EU", 17]', offset=4),
    ]
    raw, quarantine, _ = split_all_paths(COMPOSITE, messages, monkeypatch)
    assert [r["key"] for r in raw] == ['["EU",17]', '["EU",17]', '["EU",17]']
    assert [r["is_delete"] for r in raw] == [False, True, True]
    assert reasons(quarantine) == [
        ("missing_key", "message has no Kafka key"),
        ("missing_key", "record has no key field 'sku'"),
    ]
    one, _ = split_messages(
        COMPOSITE, [msg({"region": "Zürich", "sku": 2, "version": 1})], ingested_at=INGESTED_AT
    )
    assert one.column("key").to_pylist() == ['["Zürich",2]']  # UTF-8 as is, not \\u escapes


# --- Debezium: integer keys, schemas, logical types -----------------------------------------

BOOKINGS = StreamSpec(
    name="bookings",
    topic="t",
    key_field="booking_id",
    format="debezium",
    fields={
        "booking_id": "int",
        "created_at": "timestamp",
        "paid_at": "timestamp",
        "expires_at": "timestamp",
        "zoned_at": "timestamp",
        "travel_date": "timestamp",
        "price": "decimal",
        "price_float": "float",
        "ratio": "decimal",
        "extras": "object",
    },
)
SOURCE = {"connector": "postgresql", "ts_ms": 1_796_121_528_000, "lsn": 24023328, "txId": 7401, "table": "bk"}


def decimal_bytes(unscaled: int) -> str:
    return base64.b64encode(unscaled.to_bytes(8, "big", signed=True).lstrip(b"\x00") or b"\x00").decode()


def debezium(after: dict, *, schema: list[dict] | None = None, op: str = "c") -> dict:
    envelope = {"before": None, "after": after, "source": SOURCE, "op": op, "ts_ms": 1_796_121_528_100}
    if schema is None:
        return envelope
    row = {"type": "struct", "optional": True, "name": "db.public.bookings.Value", "fields": schema}
    fields = [dict(row, field="before"), dict(row, field="after"), {"type": "string", "field": "op"}]
    return {
        "schema": {"type": "struct", "fields": fields, "name": "db.public.bookings.Envelope"},
        "payload": envelope,
    }


ROW_SCHEMA = [
    {"type": "int32", "optional": False, "field": "booking_id"},
    {"type": "int64", "name": "io.debezium.time.MicroTimestamp", "version": 1, "field": "created_at"},
    {"type": "int64", "name": "io.debezium.time.Timestamp", "version": 1, "field": "paid_at"},
    {"type": "int64", "name": "io.debezium.time.NanoTimestamp", "version": 1, "field": "expires_at"},
    {"type": "string", "name": "io.debezium.time.ZonedTimestamp", "version": 1, "field": "zoned_at"},
    {"type": "int32", "name": "io.debezium.time.Date", "version": 1, "field": "travel_date"},
    {
        "type": "bytes",
        "name": "org.apache.kafka.connect.data.Decimal",
        "parameters": {"scale": "2", "connect.decimal.precision": "10"},
        "field": "price",
    },
    {
        "type": "bytes",
        "name": "org.apache.kafka.connect.data.Decimal",
        "parameters": {"scale": "2"},
        "field": "price_float",
    },
    {"type": "struct", "name": "io.debezium.data.VariableScaleDecimal", "field": "ratio"},
    {"type": "string", "name": "io.debezium.data.Json", "field": "extras"},
    {"type": "string", "field": "note"},  # a column the spec does not declare
]


def test_debezium_integer_key_and_every_logical_type_read_with_the_schema(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    after = {
        "booking_id": 17,
        "created_at": MICROS,
        "paid_at": MICROS // 1000,
        "expires_at": MICROS * 1000 + 999,
        "zoned_at": "2026-12-01T10:38:48.076854Z",
        "travel_date": (date(2026, 12, 24) - date(1970, 1, 1)).days,
        "price": decimal_bytes(-123456),
        "price_float": decimal_bytes(1999),
        "ratio": {"scale": 3, "value": decimal_bytes(5)},
        "extras": '{"meal": "veg", "bags": [1, 2]}',
        "note": "new column upstream",
    }
    key_schema = {"type": "struct", "fields": [{"type": "int32", "field": "booking_id"}]}
    key = json.dumps({"schema": key_schema, "payload": {"booking_id": 17}}).encode()
    messages = [
        msg(debezium(after, schema=ROW_SCHEMA), key=key),
        msg(None, key=b'{"booking_id":17}', offset=1),
    ]
    raw, quarantine, mismatches = split_all_paths(BOOKINGS, messages, monkeypatch)
    assert quarantine == []
    row, tombstone = raw
    assert (row["key"], row["booking_id"], tombstone["key"], tombstone["is_delete"]) == ("17", 17, "17", True)
    assert row["created_at"] == MOMENT
    assert row["paid_at"] == MOMENT.replace(microsecond=76000)
    assert row["expires_at"] == MOMENT
    assert row["zoned_at"] == MOMENT
    assert row["travel_date"] == datetime(2026, 12, 24, tzinfo=UTC)
    assert (row["price"], row["price_float"], row["ratio"]) == ("-1234.56", 19.99, "0.005")
    assert row["extras"] == '{"bags":[1,2],"meal":"veg"}'
    assert "note" not in row and json.loads(row["after"])["note"] == "new column upstream"
    assert mismatches == 0


def test_debezium_postgres_micros_without_a_schema_are_read_by_magnitude(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A `timestamp` column is int64 micros: 1796181528076854 used to be 'out of range' as millis."""
    spec = StreamSpec(
        name="b",
        topic="t",
        key_field="booking_id",
        format="debezium",
        fields={"booking_id": "int", "created_at": "timestamp", "paid_at": "timestamp"},
    )
    after = {"booking_id": 17, "created_at": MICROS, "paid_at": MICROS // 1000}
    raw, quarantine, _ = split_all_paths(spec, [msg(debezium(after), key=b'{"booking_id":17}')], monkeypatch)
    assert quarantine == []
    assert (raw[0]["created_at"], raw[0]["paid_at"]) == (MOMENT, MOMENT.replace(microsecond=76000))


@pytest.mark.parametrize(
    "sent",
    [MICROS // 1000, MICROS, "2026-12-01T10:38:48.076Z", "2026-12-01 10:38:48.076"],
)
def test_json_timestamps_as_iso_text_millis_or_micros(sent: object, monkeypatch: pytest.MonkeyPatch) -> None:
    messages = [msg({"order_id": i, "updated_at": sent}, key=str(i).encode(), offset=i) for i in range(3)]
    raw, quarantine, _ = split_all_paths(ORDERS, messages, monkeypatch)
    assert quarantine == []
    expected = MOMENT if sent == MICROS else MOMENT.replace(microsecond=76000)
    assert {r["updated_at"] for r in raw} == {expected}
    assert {r["event_time"] for r in raw} == {expected}


def test_timestamps_out_of_range_in_any_unit_are_quarantined(monkeypatch: pytest.MonkeyPatch) -> None:
    messages = [msg({"order_id": 1, "updated_at": v}, key=b"1") for v in (10**18, -(2**63))]
    _, quarantine, _ = split_all_paths(ORDERS, messages, monkeypatch)
    assert [cls for cls, _ in reasons(quarantine)] == ["schema", "schema"]
    assert all("out of range" in text for _, text in reasons(quarantine))


def test_decimals_are_exact_text_and_base64_without_a_schema_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = StreamSpec(name="p", topic="t", key_field="id", fields={"id": "string", "price": "decimal"})
    messages = [
        msg({"id": "a", "price": v}, offset=i) for i, v in enumerate(["12.50", 7, 0.1, "1e3", "AN4=", "NaN"])
    ]
    raw, quarantine, _ = split_all_paths(spec, messages, monkeypatch)
    assert [r["price"] for r in raw] == ["12.50", "7", "0.1", "1000"]
    assert [cls for cls, _ in reasons(quarantine)] == ["schema", "schema"]
    assert "schemas.enable=true" in quarantine[0]["error_message"]
    assert "finite" in quarantine[1]["error_message"]


# --- undeclared fields and type changes ------------------------------------------------------


def test_an_undeclared_field_is_kept_in_the_value_and_a_changed_type_is_quarantined(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    good = {"order_id": 1, "status": "paid", "updated_at": "2026-12-01T10:00:00Z", "coupon": {"code": "X"}}
    changed = dict(good, status=3)
    raw, quarantine, _ = split_all_paths(
        ORDERS, [msg(good, key=b"1"), msg(changed, key=b"1", offset=1)], monkeypatch
    )
    assert len(raw) == 1 and "coupon" not in raw[0]
    assert json.loads(raw[0]["value"])["coupon"] == {"code": "X"}
    assert reasons(quarantine) == [("schema", "field 'status': expected string, got int")]
    after = {"booking_id": 17, "created_at": "soon"}
    _, quarantine, _ = split_all_paths(
        BOOKINGS, [msg(debezium(after), key=b'{"booking_id":17}')], monkeypatch
    )
    assert quarantine[0]["error_class"] == "schema"
    assert quarantine[0]["error_message"].startswith("field 'created_at': expected timestamp")


# --- messages without an order value ---------------------------------------------------------

VERSIONED = StreamSpec(
    name="v",
    topic="t",
    key_field="id",
    fields={"id": "string", "version": "int", "title": "string"},
    order_by=("version",),
)


def test_a_message_without_its_order_value_is_quarantined(monkeypatch: pytest.MonkeyPatch) -> None:
    messages = [
        msg({"id": "a", "version": 1}),
        msg({"id": "a", "title": "x"}, offset=1),
        msg({"id": "a", "version": None}, offset=2),
        msg(None, offset=3),
    ]
    raw, quarantine, _ = split_all_paths(VERSIONED, messages, monkeypatch)
    assert [(r["version"], r["is_delete"]) for r in raw] == [(1, False), (None, True)]
    assert reasons(quarantine) == [
        (
            "missing_version",
            "field 'version' is missing: the stream orders a key's events by it (order_by: version)",
        ),
        (
            "missing_version",
            "field 'version' is null: the stream orders a key's events by it (order_by: version)",
        ),
    ]


def test_a_json_stream_ordered_by_event_time_needs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    _, quarantine, _ = split_all_paths(
        ORDERS, [msg({"order_id": 1, "status": "paid"}, key=b"1")], monkeypatch
    )
    assert quarantine[0]["error_class"] == "missing_version"
    assert "'updated_at' is missing" in quarantine[0]["error_message"]


def test_a_debezium_change_without_any_source_position_is_quarantined(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = StreamSpec(
        name="b", topic="t", key_field="booking_id", format="debezium", fields={"booking_id": "int"}
    )
    positioned = debezium({"booking_id": 1})
    bare = {"op": "u", "before": None, "after": {"booking_id": 1}, "source": {"connector": "postgresql"}}
    only_ts = dict(bare, ts_ms=1_796_121_528_100)
    delete = {"op": "d", "before": {"booking_id": 1}, "after": None, "source": {}}
    messages = [
        msg(v, key=b'{"booking_id":1}', offset=i) for i, v in enumerate([positioned, bare, only_ts, delete])
    ]
    messages.append(msg(None, key=b'{"booking_id":1}', offset=4))
    raw, quarantine, _ = split_all_paths(spec, messages, monkeypatch)
    assert [r["kafka_offset"] for r in raw] == [0, 2, 4]
    assert raw[1]["source_ts_ms"] == 1_796_121_528_100
    assert [(q["kafka_offset"], q["error_class"]) for q in quarantine] == [
        (1, "missing_version"),
        (3, "missing_version"),
    ]
    assert "no source position" in quarantine[0]["error_message"]


def test_a_debezium_delete_needs_no_order_field_but_a_change_does(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = StreamSpec(
        name="b",
        topic="t",
        key_field="booking_id",
        format="debezium",
        fields={"booking_id": "int", "revision": "int"},
        order_by=("revision",),
    )
    delete = {"op": "d", "before": {"booking_id": 1}, "after": None, "source": SOURCE}
    messages = [msg(debezium({"booking_id": 1})), msg(delete, offset=1)]
    raw, quarantine, _ = split_all_paths(spec, messages, monkeypatch)
    assert [r["is_delete"] for r in raw] == [True]
    assert quarantine[0]["error_class"] == "missing_version"


def test_an_order_field_the_spec_does_not_declare_is_a_config_error() -> None:
    spec = StreamSpec(name="bad", topic="t", key_field="id", fields={"id": "string"}, order_by=("rev",))
    with pytest.raises(FreshlakeConfigError, match="order_by field 'rev' is not among its fields"):
        split_messages(spec, [msg({"id": "a"})], ingested_at=INGESTED_AT)


# --- Kafka key vs record key -----------------------------------------------------------------


def test_a_kafka_key_naming_another_key_is_ingested_under_the_record_key_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record = {"order_id": 17, "status": "paid", "updated_at": "2026-12-01T10:00:00Z"}
    messages = [
        msg(record, key=b"17"),  # the record's key
        msg(record, key=b"customer-4", offset=1),  # keyed by another field, for partition locality
        msg(record, key=b"\xff\xfe", offset=2),  # not even text
        msg(None, key=b"17", offset=3),  # a tombstone is keyed by its Kafka key
    ]
    raw, quarantine, mismatches = split_all_paths(ORDERS, messages, monkeypatch)
    assert quarantine == []
    assert [r["key"] for r in raw] == ["17", "17", "17", "17"]
    assert mismatches == 2


def test_debezium_struct_keys_match_their_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = StreamSpec(
        name="b", topic="t", key_field="booking_id", format="debezium", fields={"booking_id": "int"}
    )
    value = debezium({"booking_id": 17})
    keys = [
        b'{"booking_id":17}',
        b'{"schema":{"type":"struct"},"payload":{"booking_id":17}}',
        b'{"booking_id":18}',
        b'{"customer_id":4}',
    ]
    messages = [msg(value, key=key, offset=i) for i, key in enumerate(keys)]
    raw, _, mismatches = split_all_paths(spec, messages, monkeypatch)
    assert {r["key"] for r in raw} == {"17"}
    assert mismatches == 2


def test_struct_keys_with_characters_json_escapes_are_compared_as_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spec = StreamSpec(name="b", topic="t", key_field="id", format="debezium", fields={"id": "string"})
    value = debezium({"id": 'a"b\\c'})
    keys = [json.dumps({"id": 'a"b\\c'}, separators=(",", ":")).encode(), b'{"id":"a"b\\c"}']
    raw, _, mismatches = split_all_paths(
        spec, [msg(value, key=k, offset=i) for i, k in enumerate(keys)], monkeypatch
    )
    assert {r["key"] for r in raw} == {'a"b\\c'}
    assert mismatches == 1  # the second key is not JSON: it names no record
