"""A Debezium PostgreSQL table with an integer primary key and a microsecond `timestamp` column,
ingested from the real broker into real Delta tables: nothing quarantined, keys and times right."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from freshlake.ingest.raw import RawTables, ingest_stream
from freshlake.kafka.topics import ensure_topics
from freshlake.streams import StreamSpec

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 1, 10, 38, 48, 76854, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ROW_SCHEMA = [
    {"type": "int64", "optional": False, "field": "order_id"},
    {"type": "string", "optional": True, "field": "status"},
    {"type": "int64", "optional": True, "name": "io.debezium.time.MicroTimestamp", "field": "created_at"},
    {
        "type": "bytes",
        "optional": True,
        "name": "org.apache.kafka.connect.data.Decimal",
        "parameters": {"scale": "2"},
        "field": "total",
    },
]


def micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def change(order_id: int, *, lsn: int, status: str, created: datetime, wrap: bool) -> bytes:
    row = {
        "order_id": order_id,
        "status": status,
        "created_at": micros(created),
        # Decimal bytes with a schema; without one the connector is set to decimal.handling.mode=string
        "total": base64.b64encode((order_id * 100 + 99).to_bytes(4, "big", signed=True)).decode()
        if wrap
        else f"{order_id}.99",
        "coupon": "new-column",  # added upstream, not declared: kept in the raw value
    }
    source = {"connector": "postgresql", "db": "shop", "table": "orders", "lsn": lsn, "txId": 900 + lsn}
    source["ts_ms"] = micros(created) // 1000
    envelope = {"op": "u" if lsn > 100 else "c", "before": None, "after": row, "source": source}
    envelope["ts_ms"] = source["ts_ms"] + 5
    if not wrap:
        return json.dumps(envelope).encode()
    image = {"type": "struct", "optional": True, "fields": ROW_SCHEMA, "field": "after"}
    return json.dumps({"schema": {"type": "struct", "fields": [image]}, "payload": envelope}).encode()


def test_integer_keys_and_microsecond_timestamps_from_debezium(kafka_config, unique_topic, tmp_path) -> None:
    from confluent_kafka import Producer

    spec = StreamSpec(
        name="orders",
        topic=unique_topic + "-shop.public.orders",
        key_field="order_id",
        format="debezium",
        fields={"order_id": "int", "status": "string", "created_at": "timestamp", "total": "decimal"},
        required=("order_id",),
        event_time_field="created_at",
        partitions=3,
    )
    ensure_topics(kafka_config, topics={spec.topic: spec.partitions})
    producer = Producer({**kafka_config, "enable.idempotence": True})
    sent = {}
    for order_id in range(1, 31):
        created = T0 + timedelta(seconds=order_id, microseconds=order_id)
        # schemas.enable=true for even ids (the schema names MicroTimestamp), off for odd ones
        # (the magnitude says micros); a Kafka key like the connector's, with and without schema
        key = {"order_id": order_id}
        if order_id % 3 == 0:
            key = {"schema": {"type": "struct"}, "payload": key}
        value = change(order_id, lsn=order_id, status="placed", created=created, wrap=order_id % 2 == 0)
        producer.produce(spec.topic, key=json.dumps(key).encode(), value=value)
        sent[order_id] = created
    producer.produce(spec.topic, key=b'{"order_id":7}', value=None)  # a tombstone: delete 7
    producer.produce(
        spec.topic, key=b'{"customer_id":3}', value=change(5, lsn=205, status="paid", created=T0, wrap=True)
    )
    assert producer.flush(10) == 0

    tables = RawTables(raw=str(tmp_path / "raw"), quarantine=str(tmp_path / "quarantine"))
    result = ingest_stream(spec=spec, kafka_config=kafka_config, tables=tables)

    assert (result.rows_written, result.rows_quarantined) == (32, 0)
    assert result.kafka_key_mismatches == 1  # keyed by customer_id: ingested, counted
    raw = pl.read_delta(tables.raw)
    assert raw["key"].dtype == pl.String and raw["order_id"].dtype == pl.Int64
    upserts = raw.filter(~pl.col("is_delete") & (pl.col("source_lsn") < 100)).sort("order_id")
    assert upserts["key"].to_list() == [str(i) for i in range(1, 31)]
    assert upserts["created_at"].dt.convert_time_zone("UTC").to_list() == [sent[i] for i in range(1, 31)]
    assert upserts["event_time"].to_list() == upserts["created_at"].to_list()
    assert upserts["total"].to_list() == [f"{i}.99" for i in range(1, 31)]
    assert upserts["source_txid"].to_list() == [900 + i for i in range(1, 31)]
    assert {json.loads(after)["coupon"] for after in upserts["after"].to_list()} == {"new-column"}
    tombstone = raw.filter(pl.col("is_delete"))
    assert tombstone["key"].to_list() == ["7"]
    keyed_elsewhere = raw.filter(pl.col("source_lsn") == 205)
    assert keyed_elsewhere["key"].to_list() == ["5"] and keyed_elsewhere["status"].to_list() == ["paid"]
