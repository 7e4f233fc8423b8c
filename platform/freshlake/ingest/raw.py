"""One ingestion pass of a stream: Kafka offsets -> `<stream>/raw` and `<stream>/quarantine`.

Exactly once: the raw table's txn versions are read first and everything at or below them is
skipped; rows and offsets are committed together. Quarantine is committed before raw, with its
own txn versions, so a crash between the two commits loses and duplicates nothing on retry.
Overlapping runs (any launch path): raw commits only on a snapshot whose txn versions are the
ones the run planned from, and a concurrent commit fails it (`append_stream`); the run then
appends only what is still unrecorded (`append_offsets`, trimmed to the table as it is then).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc

from freshlake.delta.schemas import quarantine_schema, raw_schema
from freshlake.delta.tables import (
    NotCommitted,
    append_offsets,
    append_stream,
    committed_offsets,
    ensure_table,
)
from freshlake.errors import FreshlakeError
from freshlake.ingest.plan import OffsetRange, next_offsets, plan_ranges
from freshlake.kafka.consumer import Watermarks, read_batches, topic_partitions, watermarks
from freshlake.kafka.messages import MessageBatch
from freshlake.partitions import keys_of
from freshlake.streams import StreamSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class RawTables:
    raw: str
    quarantine: str
    storage_options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class IngestResult:
    ranges: list[OffsetRange]
    rows_written: int
    rows_quarantined: int
    rows_skipped: int
    raw_version: int | None
    quarantine_version: int | None
    consumer_lag: int
    committed: dict[int, int | None]
    watermarks: dict[int, int]
    newest_message_time: datetime | None
    newest_event_time: datetime | None
    read_seconds: float
    parse_seconds: float
    write_seconds: float
    partition_keys: list[str] = field(default_factory=list)  # time partitions the rows fell in
    kafka_key_mismatches: int = 0  # rows whose Kafka key names another key than the record's

    @property
    def messages_read(self) -> int:
        return sum(r.count for r in self.ranges)


def clip_ranges(
    requested: list[OffsetRange], *, start: Mapping[int, int], high: Mapping[int, int]
) -> list[OffsetRange]:
    """Requested ranges made contiguous with what is committed: never a gap, never past the end."""
    clipped = []
    for r in requested:
        begin, end = start.get(r.partition, r.start), min(r.end, high.get(r.partition, r.end))
        if end > begin:
            clipped.append(OffsetRange(partition=r.partition, start=begin, end=end))
    return clipped


def ingest_stream(
    *,
    spec: StreamSpec,
    kafka_config: Mapping[str, object],
    tables: RawTables,
    ranges: list[OffsetRange] | None = None,
    max_records: int | None = None,
    barrier: Callable[[str], None] | None = None,
) -> IngestResult:
    """Ingest `ranges` (default: committed -> watermark, capped) of `spec`'s topic.

    `barrier` is a test seam for overlapping runs: called with "plan" just before the committed
    offsets are read, "planned" once the ranges are fixed, "write" before the raw snapshot the
    write commits on is opened, and "commit" just before the first commit.
    """
    opts = tables.storage_options
    ensure_table(tables.raw, schema=raw_schema(spec), storage_options=opts)
    ensure_table(tables.quarantine, schema=quarantine_schema(), storage_options=opts)

    t0 = time.perf_counter()
    partitions = topic_partitions(kafka_config, topic=spec.topic)
    marks = watermarks(kafka_config, topic=spec.topic, partitions=partitions)
    if barrier is not None:
        barrier("plan")
    committed = committed_offsets(tables.raw, topic=spec.topic, partitions=partitions, storage_options=opts)
    start = next_offsets(committed=committed, low=marks.low, high=marks.high, topic=spec.topic)
    cap = max_records or spec.batching.max_records_per_run
    todo = (
        plan_ranges(start=start, high=marks.high, max_records=cap)
        if ranges is None
        else clip_ranges(ranges, start=start, high=marks.high)
    )
    if barrier is not None:
        barrier("planned")
    batches = read_batches(
        kafka_config,
        topic=spec.topic,
        ranges={r.partition: (r.start, r.end) for r in todo},
        batch_size=8192,  # the splitter's chunk: no short chunk after each full one
    )
    return write_batches(
        spec=spec,
        tables=tables,
        todo=todo,
        committed=committed,
        marks=marks,
        batches=batches,
        started=t0,
        barrier=barrier,
    )


def write_batches(
    *,
    spec: StreamSpec,
    tables: RawTables,
    todo: list[OffsetRange],
    committed: Mapping[int, int | None],
    marks: Watermarks,
    batches: Iterable[MessageBatch],
    started: float,
    barrier: Callable[[str], None] | None = None,
) -> IngestResult:
    """Parse `batches` (every offset of `todo`, read after `committed`) into quarantine, then raw.

    The commit half of `ingest_stream`, shared with streaming runs, which read from a consumer
    they keep open: `marks` are the watermarks the ranges were planned against (lag), `started`
    when reading began (`read_seconds`).
    """
    from freshlake.ingest.parse import Splitter

    opts = tables.storage_options
    t0 = started
    # Each batch is parsed as it is read (Arrow's JSON reader runs on its own thread while the
    # next batch is fetched), and its raw rows go to the Delta writer, which encodes them
    # meanwhile. Quarantine must commit first, so a run that finds a bad message ends the
    # stream without a commit and appends both tables after it.
    splitter = Splitter(spec, ingested_at=datetime.now(UTC))
    last = {r.partition: r.end - 1 for r in todo}
    planned = {p: committed.get(p) for p in last}
    clock = {"parse": 0.0, "read_done": t0}

    def parsed_rows() -> Iterator[pa.RecordBatch]:
        for batch in batches:
            started = time.perf_counter()
            new_rows = splitter.add(batch)
            clock["parse"] += time.perf_counter() - started
            yield from new_rows
        started = time.perf_counter()
        last_rows = splitter.drain()
        clock["read_done"] = time.perf_counter()
        clock["parse"] += clock["read_done"] - started
        yield from last_rows
        if barrier is not None:
            barrier("commit")
        if splitter.quarantined:
            raise NotCommitted

    if barrier is not None:
        barrier("write")
    streamed = append_stream(
        tables.raw,
        parsed_rows(),
        schema=raw_schema(spec),
        topic=spec.topic,
        last_offsets=last,
        storage_options=opts,
        planned=planned,
    )
    t2 = time.perf_counter()
    raw, bad = splitter.finish()
    parse_seconds = clock["parse"] + time.perf_counter() - t2
    q_result = append_offsets(
        tables.quarantine,
        bad,
        topic=spec.topic,
        last_offsets=last,
        storage_options=opts,
        commit_empty=False,
    )
    r_result = streamed or append_offsets(
        tables.raw, raw, topic=spec.topic, last_offsets=last, storage_options=opts, planned=planned
    )
    t3 = time.perf_counter()
    if r_result.rows_written + r_result.rows_skipped != raw.num_rows:  # never: a bug, said loudly
        msg = f"{spec.name}: {raw.num_rows} rows parsed but {r_result.rows_written} written"
        raise FreshlakeError(msg)

    partitions = list(marks.high)
    after = {p: (last[p] if p in last else committed.get(p)) for p in partitions}
    lag = sum(marks.high[p] - (after[p] + 1 if after[p] is not None else marks.low[p]) for p in partitions)
    result = IngestResult(
        ranges=todo,
        rows_written=r_result.rows_written,
        rows_quarantined=q_result.rows_written,
        rows_skipped=r_result.rows_skipped,
        raw_version=r_result.version,
        quarantine_version=q_result.version,
        consumer_lag=max(0, lag),
        committed=after,
        watermarks=dict(marks.high),
        newest_message_time=_newest(raw, "kafka_timestamp"),
        newest_event_time=_newest(raw, "event_time"),
        read_seconds=clock["read_done"] - t0 - clock["parse"],
        parse_seconds=parse_seconds,
        write_seconds=t3 - clock["read_done"] - (parse_seconds - clock["parse"]),
        partition_keys=sorted(
            set(keys_of(raw, cadence=spec.partitioning.cadence))
            | set(keys_of(bad, cadence=spec.partitioning.cadence))
        ),
        kafka_key_mismatches=splitter.kafka_key_mismatches,
    )
    log.info(
        "ingested",
        extra={
            "stream": spec.name,
            "messages": result.messages_read,
            "written": result.rows_written,
            "quarantined": result.rows_quarantined,
            "lag": result.consumer_lag,
        },
    )
    return result


def _newest(table: pa.Table, column: str) -> datetime | None:
    if table.num_rows == 0:
        return None
    value = pc.max(table.column(column)).as_py()
    return value if isinstance(value, datetime) else None
