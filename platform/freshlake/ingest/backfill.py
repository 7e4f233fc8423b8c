"""Re-ingesting a time window of raw data from Kafka: a damaged or lost day, replaced atomically.

Which offsets hold the window is read from the raw (and quarantine) table itself: per Kafka
partition, the window starts after the last offset the tables hold before it and ends at the
first offset they hold after it, or at the committed offset. The broker's time lookup is not
used (`offsets_for_times` answers with broker write time on some brokers, and 0 for "none").
Only offsets at or below the committed txn versions are re-read, and the commit carries no app
transactions, so what the table says was ingested never moves. Each table is replaced in one
Delta commit (`overwrite` with a predicate over the window and the offsets re-read), so readers
see the old day or the new one, and streaming appends of newer offsets are never touched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from freshlake.delta.schemas import PARTITION_COLUMN
from freshlake.delta.tables import COMMIT_ATTEMPTS, committed_offsets, open_table
from freshlake.ingest.plan import OffsetRange, OffsetsLostToRetention
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


def _neighbours(
    uris: list[str], *, window: TimeWindow, storage_options: Mapping[str, str] | None
) -> tuple[dict[int, int], dict[int, int]]:
    """Per Kafka partition: the last offset held before the window, the first held after it."""
    import polars as pl

    before: dict[int, int] = {}
    after: dict[int, int] = {}
    ts, day = pl.col("kafka_timestamp"), pl.col(PARTITION_COLUMN)
    first, last = window.dates[0], window.dates[-1]
    for uri in uris:
        table = open_table(uri, storage_options=storage_options)
        if table is None:
            continue
        coords = pl.scan_delta(table).select(
            "kafka_partition", "kafka_offset", "kafka_timestamp", PARTITION_COLUMN
        )
        earlier = (
            coords.filter((day < first) | ((day == first) & (ts < window.start)))
            .group_by("kafka_partition")
            .agg(pl.col("kafka_offset").max())
            .collect()
        )
        later = (
            coords.filter((day > last) | ((day == last) & (ts >= window.end)))
            .group_by("kafka_partition")
            .agg(pl.col("kafka_offset").min())
            .collect()
        )
        for p, o in earlier.iter_rows():
            before[p] = max(o, before.get(p, o))
        for p, o in later.iter_rows():
            after[p] = min(o, after.get(p, o))
    return before, after


def plan_window(
    *,
    topic: str,
    partitions: list[int],
    committed: Mapping[int, int | None],
    low: Mapping[int, int],
    before: Mapping[int, int],
    after: Mapping[int, int],
) -> list[OffsetRange]:
    """The offsets to re-read per partition (pure; see the module docstring).

    Raises:
        OffsetsLostToRetention: the broker no longer holds part of the window.
    """
    ranges = []
    for p in partitions:
        last = committed.get(p)
        if last is None:
            continue  # nothing ingested from this partition yet: the streaming path reads it
        start = before[p] + 1 if p in before else low.get(p, 0)
        end = min(after.get(p, last + 1), last + 1)
        if end <= start:
            continue
        if start < low.get(p, 0):
            msg = (
                f"{topic}[{p}]: the window needs offsets from {start}, but the broker now starts at "
                f"{low[p]} (retention). Nothing was replaced; the raw table still holds what it had."
            )
            raise OffsetsLostToRetention(msg)
        ranges.append(OffsetRange(partition=p, start=start, end=end))
    return ranges


def _predicate(window: TimeWindow, ranges: list[OffsetRange], *, hourly: bool) -> str:
    dates = ", ".join(f"'{d}'" for d in window.dates)
    spans = " OR ".join(
        f"(kafka_partition = {r.partition} AND kafka_offset >= {r.start} AND kafka_offset < {r.end})"
        for r in ranges
    )
    text = f"{PARTITION_COLUMN} IN ({dates}) AND ({spans})"
    if hourly:
        start, end = (t.strftime("%Y-%m-%dT%H:%M:%S") for t in (window.start, window.end))
        text += f" AND kafka_timestamp >= TIMESTAMP '{start}Z' AND kafka_timestamp < TIMESTAMP '{end}Z'"
    return text


def _in_window(rows: pa.Table, window: TimeWindow) -> pa.Table:
    if rows.num_rows == 0:
        return rows
    ts = rows.column("kafka_timestamp")
    inside = pc.and_(
        pc.greater_equal(ts, pa.scalar(window.start, ts.type)), pc.less(ts, pa.scalar(window.end, ts.type))
    )
    return rows.filter(pc.fill_null(inside, False))


def _replace(
    uri: str, rows: pa.Table, *, predicate: str, storage_options: Mapping[str, str] | None
) -> int | None:
    from deltalake import write_deltalake

    write_deltalake(
        uri,
        rows,
        mode="overwrite",
        predicate=predicate,
        partition_by=[PARTITION_COLUMN],
        storage_options=dict(storage_options or {}) or None,
    )
    return open_table(uri, storage_options=storage_options).version()


def reingest_window(
    *,
    spec: StreamSpec,
    kafka_config: Mapping[str, object],
    tables: RawTables,
    window: TimeWindow,
) -> ReingestResult:
    """Replace the raw and quarantine rows of `window` with what Kafka holds for it."""
    from deltalake.exceptions import CommitFailedError

    from freshlake.delta.windows import read_window
    from freshlake.ingest.parse import Splitter
    from freshlake.kafka.consumer import read_batches, topic_partitions, watermarks

    t0 = time.perf_counter()
    opts = tables.storage_options
    partitions = topic_partitions(kafka_config, topic=spec.topic)
    marks = watermarks(kafka_config, topic=spec.topic, partitions=partitions)
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        committed = committed_offsets(
            tables.raw, topic=spec.topic, partitions=partitions, storage_options=opts
        )
        before, after = _neighbours([tables.raw, tables.quarantine], window=window, storage_options=opts)
        ranges = plan_window(
            topic=spec.topic,
            partitions=partitions,
            committed=committed,
            low=marks.low,
            before=before,
            after=after,
        )
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
        splitter = Splitter(spec, ingested_at=_now())
        for batch in read_batches(
            kafka_config, topic=spec.topic, ranges={r.partition: (r.start, r.end) for r in ranges}
        ):
            splitter.add(batch)
        raw, bad = splitter.finish()
        # Out-of-order timestamps: rows of other windows inside these offsets stay where they are.
        raw, bad = _in_window(raw, window), _in_window(bad, window)
        predicate = _predicate(window, ranges, hourly=spec.partitioning.cadence == "hourly")
        try:
            q_version = _replace(tables.quarantine, bad, predicate=predicate, storage_options=opts)
            r_version = _replace(tables.raw, raw, predicate=predicate, storage_options=opts)
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


def _now():
    from datetime import UTC, datetime

    return datetime.now(UTC)
