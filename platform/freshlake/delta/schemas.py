"""Arrow schemas of the primary store's tables. Coordinates first, then the parsed record."""

from __future__ import annotations

import pyarrow as pa

from freshlake.streams import FieldType, StreamSpec

TS = pa.timestamp("us", tz="UTC")

FIELD_TYPES: dict[FieldType, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": TS,
    "list": pa.string(),  # JSON text: nested shapes vary by producer
    "object": pa.string(),
    "decimal": pa.string(),  # exact text ("12.50"): a float would round, Arrow decimals need a fixed scale
}

HEADERS = pa.list_(pa.struct([("key", pa.string()), ("value", pa.binary())]))

# Where a message came from: together with `kafka_topic` these make every raw row unique.
COORDINATES: list[pa.Field] = [
    pa.field("kafka_topic", pa.string(), nullable=False),
    pa.field("kafka_partition", pa.int32(), nullable=False),
    pa.field("kafka_offset", pa.int64(), nullable=False),
    pa.field("kafka_key", pa.binary()),
    pa.field("kafka_timestamp", TS),
    pa.field("kafka_headers", HEADERS),
]

# The change and where the source wrote it: the position columns order a key's changes
# (`source_*` from the envelope's `source` block; null where the connector has no such field).
DEBEZIUM_COLUMNS: list[pa.Field] = [
    pa.field("op", pa.string()),  # c/u/d/r; null for a tombstone
    pa.field("before", pa.string()),  # JSON text of the row image
    pa.field("after", pa.string()),
    pa.field("source_ts_ms", pa.int64()),  # source.ts_ms, else the envelope's ts_ms
    pa.field("source_table", pa.string()),
    pa.field("source_lsn", pa.int64()),  # PostgreSQL
    pa.field("source_pos", pa.int64()),  # MySQL binlog position (with source_file, source_row)
    pa.field("source_txid", pa.int64()),  # PostgreSQL txId
    pa.field("source_file", pa.string()),  # MySQL binlog file
    pa.field("source_row", pa.int64()),  # MySQL row within the binlog event
    pa.field("source_commit_lsn", pa.string()),  # SQL Server
    pa.field("source_change_lsn", pa.string()),  # SQL Server
]

PARTITION_COLUMN = "kafka_date"  # YYYY-MM-DD of the Kafka message time, UTC


def raw_schema(spec: StreamSpec) -> pa.Schema:
    """`<stream>/raw`: coordinates, the raw value, the parsed record and ingest bookkeeping.

    `key` is the stream key (the spec's key field); `is_delete` marks tombstones and CDC deletes.
    Spec fields hold the record (for Debezium: `after`, or `before` for a delete).
    """
    parsed = [pa.field(name, FIELD_TYPES[kind]) for name, kind in spec.fields.items()]
    if spec.format == "debezium":
        parsed = DEBEZIUM_COLUMNS + parsed
    return pa.schema(
        [
            *COORDINATES,
            pa.field("value", pa.binary()),
            pa.field("key", pa.string(), nullable=False),
            pa.field("is_delete", pa.bool_(), nullable=False),
            pa.field("event_time", TS),
            *[f for f in parsed if f.name not in {"key", "event_time"}],
            pa.field("ingested_at", TS, nullable=False),
            pa.field(PARTITION_COLUMN, pa.string(), nullable=False),
        ]
    )


def quarantine_schema() -> pa.Schema:
    """`<stream>/quarantine`: the message as it came, and why it was refused."""
    return pa.schema(
        [
            *COORDINATES,
            pa.field("value", pa.binary()),
            pa.field("error_class", pa.string(), nullable=False),
            pa.field("error_message", pa.string(), nullable=False),
            pa.field("ingested_at", TS, nullable=False),
            pa.field(PARTITION_COLUMN, pa.string(), nullable=False),
        ]
    )
