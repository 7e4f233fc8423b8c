"""How far behind a stream is: consumer lag (records) and event-time lag (seconds).

consumer lag = sum over partitions of (high watermark - next offset to ingest);
event-time lag = now - the newest event time that is searchable (LanceDB rows for a stream with
documents, the `current` Delta table otherwise). The pure parts (`consumer_lag`, `judge`) are
separate from `measure_lag`, which reads Kafka, Delta and LanceDB.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from freshlake.ingest.plan import consumer_lag as _lag_from
from freshlake.streams import FreshnessState, StreamSpec

log = logging.getLogger(__name__)

State = FreshnessState
EventTimeSource = Literal["lancedb", "delta-current", "none"]


@dataclass(frozen=True, kw_only=True)
class StreamLag:
    """One measurement of a stream; `error` set means Kafka could not be read."""

    stream: str
    topic: str
    measured_at: datetime
    watermarks: dict[int, int] = field(default_factory=dict)
    committed: dict[int, int | None] = field(default_factory=dict)
    consumer_lag: int | None = None
    newest_event_time: datetime | None = None
    event_time_source: EventTimeSource = "none"
    error: str | None = None

    @property
    def watermark_total(self) -> int:
        return sum(self.watermarks.values())

    @property
    def committed_total(self) -> int:
        """Offsets ingested, summed like the watermarks (committed + 1 per partition)."""
        return sum(c + 1 for c in self.committed.values() if c is not None)

    @property
    def event_time_lag_seconds(self) -> float | None:
        if self.newest_event_time is None:
            return None
        return (self.measured_at - self.newest_event_time).total_seconds()


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """The SLO state of one measurement, and of each of its two numbers."""

    state: State
    consumer_lag: State
    event_time_lag: State
    reasons: tuple[str, ...] = ()


def consumer_lag(
    *, high: Mapping[int, int], committed: Mapping[int, int | None], low: Mapping[int, int] | None = None
) -> int:
    """Records in Kafka not yet in raw: high - (committed + 1), from `low` where nothing is committed."""
    low = low or {}
    start = {p: low.get(p, 0) if committed.get(p) is None else committed[p] + 1 for p in high}
    return _lag_from(start=start, high=high)


def judge(lag: StreamLag, spec: StreamSpec) -> Verdict:
    """PASS/WARN/FAIL from the spec's SLO. An unmeasured number is UNKNOWN and fails nothing,
    except that Kafka being unreadable is FAIL: a health check must not report green blind."""
    slo = spec.freshness
    reasons: list[str] = []
    if lag.error is not None:
        consumer: State = "FAIL"
        reasons.append(f"lag unknown: {lag.error}")
    elif lag.consumer_lag is None:
        consumer = "UNKNOWN"
    elif lag.consumer_lag > slo.max_consumer_lag:
        consumer = "FAIL"
        reasons.append(f"consumer lag {lag.consumer_lag} > {slo.max_consumer_lag} records")
    else:
        consumer = "PASS"
    seconds = lag.event_time_lag_seconds
    if seconds is None:
        event: State = "UNKNOWN"
    elif seconds > slo.fail_after_seconds:
        event = "FAIL"
        reasons.append(f"event-time lag {seconds:.0f}s > {slo.fail_after_seconds}s")
    elif seconds > slo.warn_after_seconds:
        event = "WARN"
        reasons.append(f"event-time lag {seconds:.0f}s > {slo.warn_after_seconds}s (warn)")
    else:
        event = "PASS"
    order = ("UNKNOWN", "PASS", "WARN", "FAIL")
    worst = max((consumer, event), key=order.index)
    if worst == "UNKNOWN" and "PASS" in (consumer, event):
        worst = "PASS"
    return Verdict(state=worst, consumer_lag=consumer, event_time_lag=event, reasons=tuple(reasons))


def newest_searchable_event_time(
    *, lance_uri: str, stream: str, storage_options: Mapping[str, str] | None = None
) -> datetime | None:
    """Newest `event_time` (else `embedded_at`) among the stream's live LanceDB rows; None if none."""
    import lancedb

    from freshlake.lance.tables import live_table_name

    table_name = live_table_name(uri=lance_uri, stream=stream, storage_options=storage_options)
    if table_name is None:
        return None
    db = lancedb.connect(lance_uri, storage_options=dict(storage_options or {}) or None)
    try:
        table = db.open_table(table_name)
    except (ValueError, FileNotFoundError):
        return None
    rows = table.search().select(["event_time", "embedded_at"]).to_arrow()
    return _max_time(rows, "event_time") or _max_time(rows, "embedded_at")


def newest_current_event_time(
    current_uri: str, *, storage_options: Mapping[str, str] | None = None
) -> datetime | None:
    """Newest `event_time` (else `kafka_timestamp`) of live rows in the `current` Delta table."""
    from freshlake.delta.tables import open_table

    table = open_table(current_uri, storage_options=storage_options)
    if table is None:
        return None
    rows = table.to_pyarrow_table(columns=["is_deleted", "event_time", "kafka_timestamp"])
    rows = rows.filter(pc.invert(rows.column("is_deleted"))) if rows.num_rows else rows
    return _max_time(rows, "event_time") or _max_time(rows, "kafka_timestamp")


def measure_lag(
    spec: StreamSpec,
    *,
    kafka_config: Mapping[str, object],
    raw_uri: str,
    current_uri: str,
    lance_uri: str | None,
    storage_options: Mapping[str, str] | None = None,
    now: datetime | None = None,
    timeout: float = 5.0,
) -> StreamLag:
    """Read the stream's watermarks, committed offsets and newest searchable event time.

    Kafka errors are returned in `error` (never raised): a status page must show the other
    streams, and a lag check must say "unknown", not crash.
    """
    from freshlake.delta.tables import committed_offsets
    from freshlake.errors import FreshlakeError
    from freshlake.kafka.consumer import topic_partitions, watermarks

    now = now or datetime.now(UTC)
    if spec.document is not None and lance_uri is not None:
        newest = newest_searchable_event_time(
            lance_uri=lance_uri, stream=spec.name, storage_options=storage_options
        )
        source: EventTimeSource = "lancedb"
    else:
        newest = newest_current_event_time(current_uri, storage_options=storage_options)
        source = "delta-current"
    base = StreamLag(
        stream=spec.name,
        topic=spec.topic,
        measured_at=now,
        newest_event_time=newest,
        event_time_source=source if newest is not None else "none",
    )
    try:
        partitions = topic_partitions(kafka_config, topic=spec.topic, timeout=timeout)
        marks = watermarks(kafka_config, topic=spec.topic, partitions=partitions, timeout=timeout)
    except FreshlakeError as exc:
        return StreamLag(**{**base.__dict__, "error": str(exc)})
    committed = committed_offsets(
        raw_uri, topic=spec.topic, partitions=partitions, storage_options=storage_options
    )
    return StreamLag(
        **{
            **base.__dict__,
            "watermarks": dict(marks.high),
            "committed": committed,
            "consumer_lag": consumer_lag(high=marks.high, committed=committed, low=marks.low),
        }
    )


def _max_time(rows: pa.Table, column: str) -> datetime | None:
    if rows.num_rows == 0 or column not in rows.column_names:
        return None
    value = pc.max(rows.column(column)).as_py()
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
