"""Re-ingesting a time window of raw data from Kafka: a damaged or lost day, replaced atomically.

Which offsets hold the window is read from the raw (and quarantine) table itself: every
committed offset is held exactly once by one of them, so the window's offsets are the committed
ones not held for messages of another window (held for this one, or lost). That holds with
out-of-order message times too. The broker's time lookup is not used (`offsets_for_times`
answers with broker write time on some brokers, and 0 for "none").
Only offsets at or below the committed txn versions are re-read, and the commits carry no app
transactions, so what the table says was ingested never moves. Each table's rows are replaced
in one Delta commit (`overwrite` with a predicate over the window and the offsets re-read), so
readers see the old day or the new one, and streaming appends of newer offsets are never touched.

Two tables cannot change in one commit, so the commits are ordered to never lose an offset at any
point a process may die: (1) quarantine gains the newly bad rows it lacks, (2) raw is replaced,
(3) quarantine is replaced. Between them an offset can only be held twice (once in each table),
never not at all, and a doubly held row carries its message time: every backfill first finds
such rows and re-derives their windows (a killed backfill is repaired by its retry or by any
later raw backfill).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from freshlake.delta.schemas import PARTITION_COLUMN
from freshlake.delta.tables import COMMIT_ATTEMPTS, committed_offsets, open_table
from freshlake.ingest.plan import OffsetRange
from freshlake.ingest.raw import RawTables
from freshlake.partitions import TimeWindow
from freshlake.streams import StreamSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ReingestResult:
    ranges: list[OffsetRange]
    rows_written: int
    rows_quarantined: int
    rows_replaced: int  # raw rows of the window before the backfill
    raw_version: int | None
    quarantine_version: int | None
    seconds: float


def _held_outside(
    uris: list[str], *, window: TimeWindow, storage_options: Mapping[str, str] | None
) -> dict[int, np.ndarray]:
    """Per Kafka partition: the sorted offsets the tables hold for messages outside `window`."""
    import polars as pl

    ts, day = pl.col("kafka_timestamp"), pl.col(PARTITION_COLUMN)
    inside = day.is_in(window.dates) & (ts.is_null() | ((ts >= window.start) & (ts < window.end)))
    parts: list[pl.DataFrame] = []
    for uri in uris:
        table = open_table(uri, storage_options=storage_options)
        if table is not None:
            parts.append(
                pl.scan_delta(table).filter(~inside).select("kafka_partition", "kafka_offset").collect()
            )
    if not parts:
        return {}
    frame = pl.concat(parts)
    return {
        int(p): np.unique(group.get_column("kafka_offset").to_numpy())
        for (p,), group in frame.group_by("kafka_partition")
    }


def plan_window(
    *,
    partitions: list[int],
    committed: Mapping[int, int | None],
    low: Mapping[int, int],
    outside: Mapping[int, np.ndarray],
) -> list[OffsetRange]:
    """Per partition, the span of offsets to re-read (pure).

    Every committed offset is held exactly once by raw or quarantine, so the window's messages
    are the committed offsets not held for another window: those held for this one, and the
    missing ones (lost rows). With out-of-order timestamps they need not be contiguous: the span
    runs from the first to the last of them, and `wanted` picks them out of what is read.
    Offsets below the broker's start can no longer be read: rows held for them are kept as
    they are (the replace predicate starts at the span).
    """
    ranges = []
    for p in partitions:
        last = committed.get(p)
        first = low.get(p, 0)
        if last is None or last < first:
            continue  # nothing ingested yet (the streaming path reads it), or nothing readable
        size = last - first + 1
        held = outside.get(p, np.empty(0, np.int64))
        rel = held[(held >= first) & (held <= last)] - first  # sorted, unique, in [0, size)
        if rel.size == size:
            continue  # every readable offset belongs to another window
        differs = np.flatnonzero(rel != np.arange(rel.size))
        lo = int(differs[0]) if differs.size else int(rel.size)
        tail = np.flatnonzero(rel[::-1] != np.arange(size - 1, size - 1 - rel.size, -1))
        hi = size - 1 - (int(tail[0]) if tail.size else int(rel.size))
        ranges.append(OffsetRange(partition=p, start=first + lo, end=first + hi + 1))
    return ranges


def wanted(rows: pa.Table, outside: Mapping[int, np.ndarray]) -> pa.Table:
    """The rows read whose offsets are not held for another window."""
    if rows.num_rows == 0:
        return rows
    keep = np.ones(rows.num_rows, dtype=bool)
    partitions = rows.column("kafka_partition").to_numpy(zero_copy_only=False)
    offsets = rows.column("kafka_offset").to_numpy(zero_copy_only=False)
    for p, held in outside.items():
        mine = partitions == p
        keep[mine] &= ~np.isin(offsets[mine], held)
    return rows.filter(pa.array(keep))


def _predicate(window: TimeWindow, ranges: list[OffsetRange]) -> str:
    """The rows a replace removes: in the window (message time, pruned by date) and in the spans
    re-read. Rows without a message time are never matched (nor re-written)."""
    dates = ", ".join(f"'{d}'" for d in window.dates)
    spans = " OR ".join(
        f"(kafka_partition = {r.partition} AND kafka_offset >= {r.start} AND kafka_offset < {r.end})"
        for r in ranges
    )
    start, end = (
        f"arrow_cast('{t.strftime('%Y-%m-%dT%H:%M:%S')}Z', 'Timestamp(Microsecond, Some(\"UTC\"))')"
        for t in (window.start, window.end)
    )
    return (
        f"{PARTITION_COLUMN} IN ({dates}) AND kafka_timestamp >= {start} AND kafka_timestamp < {end} "
        f"AND ({spans})"
    )


def _in_window(rows: pa.Table, window: TimeWindow) -> pa.Table:
    if rows.num_rows == 0:
        return rows
    ts = rows.column("kafka_timestamp")
    inside = pc.and_(
        pc.greater_equal(ts, pa.scalar(window.start, ts.type)), pc.less(ts, pa.scalar(window.end, ts.type))
    )
    return rows.filter(pc.fill_null(inside, False))


def _replace(
    uri: str, rows: pa.Table, *, predicate: str | None, storage_options: Mapping[str, str] | None
) -> int | None:
    """Replace the rows matching `predicate` with `rows` (None: append `rows`), one commit."""
    from deltalake import write_deltalake

    write_deltalake(
        uri,
        rows,
        mode="append" if predicate is None else "overwrite",
        predicate=predicate,
        partition_by=[PARTITION_COLUMN],
        storage_options=dict(storage_options or {}) or None,
    )
    return open_table(uri, storage_options=storage_options).version()


def _missing_from(uri: str, rows: pa.Table, *, storage_options: Mapping[str, str] | None) -> pa.Table:
    """The `rows` whose (partition, offset) the table does not hold yet."""
    import polars as pl

    table = open_table(uri, storage_options=storage_options)
    if rows.num_rows == 0 or table is None:
        return rows
    dates = pc.unique(rows.column(PARTITION_COLUMN)).to_pylist()
    held = (
        pl.scan_delta(table)
        .filter(pl.col(PARTITION_COLUMN).is_in(dates))
        .select("kafka_partition", "kafka_offset")
        .collect()
    )
    wanted_rows = pl.from_arrow(rows.select(["kafka_partition", "kafka_offset"])).with_row_index("row")
    keep = wanted_rows.join(held, on=["kafka_partition", "kafka_offset"], how="anti")["row"].sort()
    return rows.take(pa.array(keep.to_numpy()))


def held_twice(tables: RawTables) -> pa.Table:
    """Rows of messages that both raw and quarantine hold (`kafka_partition`, `kafka_offset`,
    `kafka_timestamp`, `kafka_date`): what a backfill killed between its commits leaves."""
    import polars as pl

    opts = tables.storage_options
    raw, bad = (open_table(uri, storage_options=opts) for uri in (tables.raw, tables.quarantine))
    columns = ["kafka_partition", "kafka_offset", "kafka_timestamp", PARTITION_COLUMN]
    if raw is None or bad is None:
        return pa.table({c: [] for c in columns})
    quarantined = pl.scan_delta(bad).select(columns).collect()
    dates = quarantined.get_column(PARTITION_COLUMN).unique().to_list()
    held = (
        pl.scan_delta(raw)
        .filter(pl.col(PARTITION_COLUMN).is_in(dates))
        .select("kafka_partition", "kafka_offset")
        .collect()
    )
    return (
        quarantined.join(held, on=["kafka_partition", "kafka_offset"], how="semi").select(columns).to_arrow()
    )


def half_done_windows(*, spec: StreamSpec, tables: RawTables) -> list[TimeWindow]:
    """The partitions' windows a killed backfill left offsets held twice in (sorted)."""
    from freshlake.partitions import keys_of, window

    twice = held_twice(tables)
    timed = twice.filter(pc.is_valid(twice.column("kafka_timestamp")))
    cadence = spec.partitioning.cadence
    return [window([key], cadence=cadence) for key in keys_of(timed, cadence=cadence)]


def reingest_window(
    *,
    spec: StreamSpec,
    kafka_config: Mapping[str, object],
    tables: RawTables,
    window: TimeWindow,
    repair: bool = True,
    between_commits: Callable[[str], None] | None = None,
) -> ReingestResult:
    """Replace the raw and quarantine rows of `window` with what Kafka holds for it.

    `repair` first re-derives every other window a killed backfill left half done.
    `between_commits` is a test seam: called with "quarantine_added" and "raw_replaced".
    """
    from deltalake.exceptions import CommitFailedError

    from freshlake.delta.windows import read_window
    from freshlake.ingest.parse import Splitter
    from freshlake.kafka.consumer import read_batches, topic_partitions, watermarks

    t0 = time.perf_counter()
    opts = tables.storage_options
    if repair:
        for half_done in half_done_windows(spec=spec, tables=tables):
            if half_done != window:  # this window is re-derived below anyway
                log.warning("repairing a half-done raw backfill", extra={"window": half_done.dates})
                reingest_window(
                    spec=spec, kafka_config=kafka_config, tables=tables, window=half_done, repair=False
                )
    partitions = topic_partitions(kafka_config, topic=spec.topic)
    marks = watermarks(kafka_config, topic=spec.topic, partitions=partitions)
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        committed = committed_offsets(
            tables.raw, topic=spec.topic, partitions=partitions, storage_options=opts
        )
        outside = _held_outside([tables.raw, tables.quarantine], window=window, storage_options=opts)
        ranges = plan_window(partitions=partitions, committed=committed, low=marks.low, outside=outside)
        if not ranges:
            return ReingestResult(
                ranges=[],
                rows_written=0,
                rows_quarantined=0,
                rows_replaced=0,
                raw_version=None,
                quarantine_version=None,
                seconds=time.perf_counter() - t0,
            )
        old, _ = read_window(tables.raw, window=window, columns=["kafka_offset"], storage_options=opts)
        splitter = Splitter(spec, ingested_at=datetime.now(UTC))
        for batch in read_batches(
            kafka_config, topic=spec.topic, ranges={r.partition: (r.start, r.end) for r in ranges}
        ):
            splitter.add(batch)
        raw, bad = splitter.finish()
        # Out-of-order timestamps: rows of other windows inside these offsets stay where they are.
        raw, bad = wanted(_in_window(raw, window), outside), wanted(_in_window(bad, window), outside)
        predicate = _predicate(window, ranges)
        try:
            added = _missing_from(tables.quarantine, bad, storage_options=opts)
            if added.num_rows:
                _replace(tables.quarantine, added, predicate=None, storage_options=opts)
            if between_commits is not None:
                between_commits("quarantine_added")
            r_version = _replace(tables.raw, raw, predicate=predicate, storage_options=opts)
            if between_commits is not None:
                between_commits("raw_replaced")
            q_version = _replace(tables.quarantine, bad, predicate=predicate, storage_options=opts)
        except CommitFailedError:
            log.warning("raw backfill conflict, re-planning", extra={"stream": spec.name, "attempt": attempt})
            continue
        log.info(
            "raw window re-ingested",
            extra={"stream": spec.name, "window": window.dates, "rows": raw.num_rows, "bad": bad.num_rows},
        )
        return ReingestResult(
            ranges=ranges,
            rows_written=raw.num_rows,
            rows_quarantined=bad.num_rows,
            rows_replaced=old.num_rows,
            raw_version=r_version,
            quarantine_version=q_version,
            seconds=time.perf_counter() - t0,
        )
    msg = f"could not replace {window.dates} in {tables.raw} after {COMMIT_ATTEMPTS} attempts"
    raise RuntimeError(msg)
