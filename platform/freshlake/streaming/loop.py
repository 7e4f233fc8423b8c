"""The micro-batch loop of a streaming run: read what is new, raw exactly once, fold, embed.

Each batch reads up to the watermark of the fetch responses it was built from (late-bound: what
arrived while the previous batch was being written is the next batch), plans from the raw
table's txn versions as they are at that moment, and commits through the same `write_batches`
as every ingest, so a batch overlapping any other run (a manual run, a backfill, the next
streaming run after a kill) loses and duplicates nothing. `current` and LanceDB are then brought
up to date with the stage functions the assets use. The loop ends between batches: on `stop`,
after `max_run_seconds`, or after `idle_seconds` without a message.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from freshlake.streaming.stages import StreamStores
from freshlake.streaming.tail import Polled, Tail
from freshlake.streams import StreamSpec

log = logging.getLogger(__name__)

POLL_WAIT_S = 0.25  # how often an idle loop looks at `stop` and its clocks
PARTITIONS_EVERY_S = 30.0  # how often the topic's partitions are listed again (a topic grows)

StopReason = Literal["stopped", "max_run_seconds", "idle"]


@dataclass(frozen=True, kw_only=True)
class BatchReport:
    """One micro-batch, everything its materializations say."""

    number: int
    ingest: Any  # freshlake.ingest.raw.IngestResult
    fold: Any  # freshlake.delta.current.FoldResult
    sync: Any | None  # freshlake.lance.sync.SyncResult (None: the stream is not embedded)
    seconds: dict[str, float]  # read, raw, current, embeddings, total
    consumer_lag: int  # watermark (of the fetch) - committed, after this batch
    newest_searchable: datetime | None  # newest event time made searchable, this run or before
    finished_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def event_time_lag_seconds(self) -> float | None:
        if self.newest_searchable is None:
            return None
        return (self.finished_at - self.newest_searchable).total_seconds()


class StreamRun:
    """Iterate `batches()`; `stopped_by` says why it ended.

    `barrier` is a test seam: called with "read" once a batch is planned, then with
    `write_batches`' "write" and "commit", then "fold", "embed" and "done".
    """

    def __init__(
        self,
        *,
        spec: StreamSpec,
        kafka_config: Mapping[str, object],
        stores: StreamStores,
        stop: threading.Event | None = None,
        barrier: Callable[[str], None] | None = None,
        max_run_seconds: float | None = None,
        idle_seconds: float | None = None,
    ) -> None:
        self.spec = spec
        self.kafka_config = kafka_config
        self.stores = stores
        self.stop = stop or threading.Event()
        self.barrier = barrier or (lambda _stage: None)
        self.max_run_seconds = spec.batching.max_run_seconds if max_run_seconds is None else max_run_seconds
        self.idle_seconds = spec.batching.idle_seconds if idle_seconds is None else idle_seconds
        self.stopped_by: StopReason | None = None
        self.batches_done = 0
        self._first: dict[int, int] = {}  # where each partition starts before anything is committed
        self._newest: datetime | None = None

    def batches(self) -> Iterator[BatchReport]:
        from freshlake.delta.schemas import quarantine_schema, raw_schema
        from freshlake.delta.tables import ensure_table

        raw = self.stores.raw
        ensure_table(raw.raw, schema=raw_schema(self.spec), storage_options=raw.storage_options)
        ensure_table(raw.quarantine, schema=quarantine_schema(), storage_options=raw.storage_options)
        self._newest = self._searchable_before()
        tail = Tail(self.kafka_config, topic=self.spec.topic, start=self._starts())
        began = idle_since = listed = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                if self.stop.is_set():
                    self.stopped_by = "stopped"
                    return
                if now - began >= self.max_run_seconds:
                    self.stopped_by = "max_run_seconds"
                    return
                if now - idle_since >= self.idle_seconds:
                    self.stopped_by = "idle"
                    return
                if now - listed >= PARTITIONS_EVERY_S:
                    tail.seek({p: o for p, o in self._starts().items() if p not in tail.partitions})
                    listed = now
                expected = {p: tail.position(p) for p in tail.partitions}
                polled = tail.poll(wait=POLL_WAIT_S, max_records=self.spec.batching.max_records_per_run)
                if not len(polled.messages):
                    continue
                idle_since = time.monotonic()
                report = self._batch(tail, polled, expected)
                if report is not None:
                    self.batches_done += 1
                    yield report
        finally:
            tail.close()

    def _starts(self) -> dict[int, int]:
        """Where to read from, per partition: the raw table's txn versions, checked against the
        fetch-derived watermarks (retention, a recreated topic)."""
        from freshlake.delta.tables import committed_offsets
        from freshlake.ingest.plan import next_offsets
        from freshlake.kafka.consumer import topic_partitions, watermarks

        partitions = topic_partitions(self.kafka_config, topic=self.spec.topic)
        marks = watermarks(self.kafka_config, topic=self.spec.topic, partitions=partitions)
        raw = self.stores.raw
        committed = committed_offsets(
            raw.raw, topic=self.spec.topic, partitions=partitions, storage_options=raw.storage_options
        )
        start = next_offsets(committed=committed, low=marks.low, high=marks.high, topic=self.spec.topic)
        for p, offset in start.items():
            self._first.setdefault(p, offset)
        return start

    def _searchable_before(self) -> datetime | None:
        if self.spec.document is None:
            return None
        from freshlake.lag import newest_searchable_event_time

        return newest_searchable_event_time(
            lance_uri=self.stores.storage.lance_uri(),
            stream=self.spec.name,
            storage_options=self.stores.storage_options or None,
        )

    def _batch(self, tail: Tail, polled: Polled, expected: Mapping[int, int | None]) -> BatchReport | None:
        from freshlake.delta.tables import committed_offsets
        from freshlake.ingest.plan import OffsetRange
        from freshlake.ingest.raw import write_batches
        from freshlake.kafka.consumer import Watermarks

        t0 = time.perf_counter()
        raw = self.stores.raw
        committed = committed_offsets(
            raw.raw, topic=self.spec.topic, partitions=tail.partitions, storage_options=raw.storage_options
        )
        want = {p: self._first[p] if c is None else c + 1 for p, c in committed.items()}
        batch = polled.messages
        keep = []
        last: dict[int, int] = {}
        for i, (p, offset) in enumerate(zip(batch.partitions, batch.offsets, strict=True)):
            if expected.get(p) is not None and expected[p] > want[p]:
                continue  # behind the table (our commit failed, or it was restored): read again
            if offset >= want[p]:  # below: another writer already committed it
                keep.append(i)
                last[p] = offset
        behind = {p: want[p] for p in tail.partitions if (expected.get(p) or 0) > want[p]}
        ahead = {p: want[p] for p in tail.partitions if p not in behind and (tail.position(p) or 0) < want[p]}
        tail.seek({**behind, **ahead})
        if behind:
            log.warning("re-reading from the raw table's offsets", extra={"stream": self.spec.name, **behind})
        if not last:
            return None
        if len(keep) < len(batch):
            batch = _take(batch, keep)
        todo = [OffsetRange(partition=p, start=want[p], end=o + 1) for p, o in sorted(last.items())]
        high = {p: max(h, tail.position(p) or 0) for p, h in polled.high.items()}
        marks = Watermarks(low={p: max(0, v) for p, v in polled.low.items()}, high=high)
        self.barrier("read")
        ingest = write_batches(
            spec=self.spec,
            tables=raw,
            todo=todo,
            committed=committed,
            marks=marks,
            batches=[batch],
            started=t0,
            barrier=self.barrier,
        )
        t1 = time.perf_counter()
        self.barrier("fold")
        fold = self.stores.fold()
        t2 = time.perf_counter()
        sync = None
        if self.spec.document is not None:
            self.barrier("embed")
            sync = self.stores.sync()
            if sync.newest_event_time is not None:
                self._newest = max(filter(None, (self._newest, sync.newest_event_time)))
        elif fold.raw_versions is not None and ingest.newest_event_time is not None:
            self._newest = max(filter(None, (self._newest, ingest.newest_event_time)))
        t3 = time.perf_counter()
        self.barrier("done")
        return BatchReport(
            number=self.batches_done + 1,
            ingest=ingest,
            fold=fold,
            sync=sync,
            seconds={
                "read": round(polled.seconds, 4),
                "raw": round(t1 - t0, 4),
                "current": round(t2 - t1, 4),
                "embeddings": round(t3 - t2, 4),
                "total": round(polled.seconds + t3 - t0, 4),
            },
            consumer_lag=ingest.consumer_lag,
            newest_searchable=self._newest,
        )


def _take(batch, indices: list[int]):
    """The messages of `batch` at `indices` (in order), as a new batch."""
    from freshlake.kafka.messages import MessageBatch

    return MessageBatch(
        topics=[batch.topics[i] for i in indices],
        partitions=[batch.partitions[i] for i in indices],
        offsets=[batch.offsets[i] for i in indices],
        keys=[batch.keys[i] for i in indices],
        values=[batch.values[i] for i in indices],
        timestamps_ms=[batch.timestamps_ms[i] for i in indices],
        headers=[batch.headers[i] for i in indices],
    )
