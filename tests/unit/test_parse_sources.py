"""Debezium source positions land in the raw row's `source_*` columns, through the real split."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from freshlake.delta.schemas import DEBEZIUM_COLUMNS, raw_schema
from freshlake.ingest.parse import split_messages
from freshlake.kafka.messages import KafkaMessage
from freshlake.streams import StreamSpec

INGESTED_AT = datetime(2026, 11, 20, tzinfo=UTC)
SPEC = StreamSpec(
    name="orders",
    topic="orders",
    key_field="order_id",
    format="debezium",
    fields={"order_id": "int", "status": "string"},
)
POSITIONS = [
    "source_ts_ms",
    "source_lsn",
    "source_txid",
    "source_file",
    "source_pos",
    "source_row",
    "source_commit_lsn",
    "source_change_lsn",
]


def split(*values: dict | None, key: bytes = b'{"order_id":1}') -> tuple[list[dict], list[dict]]:
    messages = [
        KafkaMessage(
            topic="orders",
            partition=0,
            offset=i,
            key=key,
            value=None if v is None else json.dumps(v).encode(),
            timestamp_ms=1_790_000_000_000,
        )
        for i, v in enumerate(values)
    ]
    raw, quarantine = split_messages(SPEC, messages, ingested_at=INGESTED_AT)
    assert raw.schema.equals(raw_schema(SPEC))
    return raw.to_pylist(), quarantine.to_pylist()


def event(source: dict, **extra: object) -> dict:
    return {"op": "u", "before": None, "after": {"order_id": 1, "status": "paid"}, "source": source, **extra}


def test_position_columns_are_in_the_raw_schema_with_their_types() -> None:
    schema = raw_schema(SPEC)
    for name in POSITIONS:
        assert schema.field(name).type == next(f.type for f in DEBEZIUM_COLUMNS if f.name == name)
    assert str(schema.field("source_lsn").type) == "int64"
    assert str(schema.field("source_commit_lsn").type) == "string"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            {"connector": "postgresql", "ts_ms": 10, "lsn": 24023328, "txId": 7401},
            {"source_ts_ms": 10, "source_lsn": 24023328, "source_txid": 7401},
        ),
        (
            {"connector": "mysql", "ts_ms": 11, "file": "mysql-bin.000003", "pos": 154, "row": 2},
            {"source_ts_ms": 11, "source_file": "mysql-bin.000003", "source_pos": 154, "source_row": 2},
        ),
        (
            {
                "connector": "sqlserver",
                "ts_ms": 12,
                "commit_lsn": "00000027:00000758:0005",
                "change_lsn": "00000027:00000758:0003",
            },
            {
                "source_ts_ms": 12,
                "source_commit_lsn": "00000027:00000758:0005",
                "source_change_lsn": "00000027:00000758:0003",
            },
        ),
    ],
)
def test_each_connector_fills_its_position_columns(source: dict, expected: dict) -> None:
    (row,), quarantined = split(event(source))
    assert quarantined == []
    assert {name: row[name] for name in POSITIONS} == {name: expected.get(name) for name in POSITIONS}


def test_source_ts_ms_falls_back_to_the_envelope_ts_ms() -> None:
    (row,), _ = split(event({"connector": "postgresql", "lsn": 5}, ts_ms=1_790_000_000_123))
    assert (row["source_ts_ms"], row["source_lsn"]) == (1_790_000_000_123, 5)
    (row,), _ = split(event({"connector": "postgresql", "ts_ms": 7, "lsn": 5}, ts_ms=1_790_000_000_123))
    assert row["source_ts_ms"] == 7


def test_a_tombstone_has_no_position() -> None:
    (row,), _ = split(None)
    assert row["is_delete"] is True
    assert all(row[name] is None for name in POSITIONS)
