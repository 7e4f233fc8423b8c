"""Raw and quarantine rows: Kafka coordinates as columns, row tuples -> tables."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from freshlake.delta.schemas import HEADERS, TS, quarantine_schema
from freshlake.ingest.parse.errors import ARROW_ERRORS
from freshlake.ingest.parse.timestamps import MAX_MS, MIN_FAST_DAY_MS
from freshlake.kafka.messages import MessageBatch

N_COORDINATES = 7  # kafka_* and value: how raw and quarantine rows start
_NO_HEADERS = pa.array([], type=HEADERS.value_type)


class TableBuilder:
    """Row tuples -> a table of `schema` with one Arrow conversion, then a few column fix-ups.

    Rows follow the schema without `ingested_at` (one value per batch), hold every timestamp
    as epoch microseconds and `None` for no headers. The quarantine is built this way, and raw
    rows when a column of a chunk cannot be stored (see `Splitter`).
    """

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        fields = [f for f in schema if f.name != "ingested_at"]
        self.names = [f.name for f in fields]
        self.timestamps = [f.name for f in fields if f.type == TS]
        self.row_type = pa.struct([pa.field(f.name, pa.int64() if f.type == TS else f.type) for f in fields])

    def build(self, rows: list[tuple[Any, ...]], *, ingested_at: datetime) -> pa.Table:
        if not rows:
            return self.schema.empty_table()
        columns = dict(zip(self.names, pa.array(rows, type=self.row_type).flatten(), strict=True))
        for name in self.timestamps:
            columns[name] = columns[name].cast(TS)
        columns["kafka_headers"] = no_null_lists(columns["kafka_headers"])
        columns["ingested_at"] = pa.repeat(pa.scalar(ingested_at, type=TS), len(rows))
        arrays = [columns[name] for name in self.schema.names]
        return pa.Table.from_arrays(arrays, schema=self.schema)


def no_null_lists(headers: pa.Array) -> pa.Array:
    """Null header lists as empty ones: null slots have empty offsets ranges, so same offsets."""
    if not headers.null_count:
        return headers
    return pa.ListArray.from_arrays(headers.offsets, headers.values, type=HEADERS)


QUARANTINE_BUILDER = TableBuilder(quarantine_schema())


def coordinates(batch: MessageBatch, micros: list[int | None], position: int) -> tuple[Any, ...]:
    """kafka_topic .. kafka_headers, then the raw value (row form: see `TableBuilder`)."""
    headers = batch.headers[position]
    return (
        batch.topics[position],
        batch.partitions[position],
        batch.offsets[position],
        batch.keys[position],
        micros[position],
        [{"key": k, "value": v} for k, v in headers] if headers else None,
        batch.values[position],
    )


def coordinate_arrays(
    batch: MessageBatch, micros: pa.Array, values: pa.Array | None = None
) -> list[pa.Array]:
    """kafka_topic .. kafka_headers and value of every message in the batch."""
    headers = batch.headers
    return [
        pa.array(batch.topics, type=pa.string()),
        pa.array(batch.partitions, type=pa.int32()),
        pa.array(batch.offsets, type=pa.int64()),
        pa.array(batch.keys, type=pa.binary()),
        micros,
        no_null_lists(pa.array(headers, type=HEADERS))
        if any(headers)
        else pa.ListArray.from_arrays(pa.array([0] * (len(batch) + 1), pa.int32()), _NO_HEADERS),
        pa.array(batch.values, type=pa.binary()) if values is None else values,
    ]


def kafka_arrays(stamps: list[int | None], *, fallback_day: str) -> tuple[pa.Array, pa.Array] | None:
    """Kafka times (`timestamp[us, UTC]`) and `kafka_date`s in a few Arrow calls, or None for
    times before year 1000 or out of range (then `Splitter._kafka_times` does it).
    """
    millis = pa.array(stamps, type=pa.int64())
    if millis.null_count == len(millis):
        return millis.cast(TS), pa.repeat(pa.scalar(fallback_day), len(millis))
    low, high = pc.min_max(millis).values()
    if low.as_py() < MIN_FAST_DAY_MS or high.as_py() > MAX_MS:
        return None
    micros = pc.multiply(millis, 1000).cast(TS)
    days = micros.cast(pa.date32()).cast(pa.string())
    return micros, days.fill_null(fallback_day) if days.null_count else days


def refused_rows(row_type: pa.StructType, rows: list[tuple[Any, ...]], lo: int, hi: int) -> list[int]:
    """Positions in `rows[lo:hi]` Arrow refuses to convert, found by bisection."""
    try:
        pa.array(rows[lo:hi], type=row_type)
    except ARROW_ERRORS:
        if hi - lo == 1:
            return [lo]
        mid = (lo + hi) // 2
        return refused_rows(row_type, rows, lo, mid) + refused_rows(row_type, rows, mid, hi)
    return []
