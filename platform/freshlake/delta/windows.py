"""Reading the primary store by time partition: what a backfill of processed data starts from."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa

from freshlake.delta.schemas import PARTITION_COLUMN
from freshlake.delta.tables import open_table
from freshlake.partitions import TimeWindow


def read_window(
    uri: str,
    *,
    window: TimeWindow,
    columns: Sequence[str] | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> tuple[pa.Table, int | None]:
    """Rows of a raw/quarantine table whose Kafka time falls in `window`, and the table version
    they were read at. Pruned to the window's `kafka_date` partitions; rows without a Kafka
    timestamp belong to the day of their `kafka_date`."""
    import polars as pl

    table = open_table(uri, storage_options=storage_options)
    if table is None:
        return pa.table({}), None
    version = table.version()
    frame = pl.scan_delta(table).filter(pl.col(PARTITION_COLUMN).is_in(window.dates))
    ts = pl.col("kafka_timestamp")
    frame = frame.filter(ts.is_null() | ((ts >= window.start) & (ts < window.end)))
    if columns is not None:
        frame = frame.select(list(columns))
    return frame.collect().to_arrow(), version


def window_keys(
    uri: str, *, window: TimeWindow, storage_options: Mapping[str, str] | None = None
) -> set[str]:
    """The stream keys with at least one raw event in `window`."""
    rows, _ = read_window(uri, window=window, columns=["key"], storage_options=storage_options)
    return set() if rows.num_rows == 0 else {k for k in rows.column("key").to_pylist() if k is not None}
