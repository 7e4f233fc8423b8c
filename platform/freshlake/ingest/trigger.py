"""When the offsets sensor launches a run: pure decisions over watermarks, commits and time."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from freshlake.ingest.plan import OffsetRange, consumer_lag, plan_ranges, run_key
from freshlake.streams import Batching


@dataclass(frozen=True, kw_only=True)
class SensorCursor:
    """A hint for batching only: the Delta txn log, not the cursor, says what was ingested."""

    pending_since: float | None = None

    def dumps(self) -> str:
        return json.dumps({"pending_since": self.pending_since})

    @classmethod
    def loads(cls, text: str | None) -> SensorCursor:
        if not text:
            return cls()
        try:
            data = json.loads(text)
        except ValueError:
            return cls()
        pending = data.get("pending_since")
        return cls(pending_since=float(pending) if pending is not None else None)


@dataclass(frozen=True, kw_only=True)
class Decision:
    ranges: list[OffsetRange]
    run_key: str | None
    lag: int
    skip_reason: str | None
    cursor: SensorCursor


def decide(
    *,
    topic: str,
    start: Mapping[int, int],
    high: Mapping[int, int],
    batching: Batching,
    cursor: SensorCursor,
    now: float,
) -> Decision:
    """Request a run when `lag >= min_batch` or the oldest pending record waited `max_wait`."""
    lag = consumer_lag(start=start, high=high)
    if lag == 0:
        return Decision(ranges=[], run_key=None, lag=0, skip_reason="no new messages", cursor=SensorCursor())
    pending_since = cursor.pending_since if cursor.pending_since is not None else now
    waited = now - pending_since
    if lag < batching.min_batch and waited < batching.max_wait_seconds:
        reason = (
            f"lag {lag} < min_batch {batching.min_batch}; waiting "
            f"{batching.max_wait_seconds - waited:.1f}s more"
        )
        return Decision(
            ranges=[],
            run_key=None,
            lag=lag,
            skip_reason=reason,
            cursor=SensorCursor(pending_since=pending_since),
        )
    ranges = plan_ranges(start=start, high=high, max_records=batching.max_records_per_run)
    return Decision(
        ranges=ranges,
        run_key=run_key(topic=topic, ranges=ranges),
        lag=lag,
        skip_reason=None,
        cursor=SensorCursor(),
    )
