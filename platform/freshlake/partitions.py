"""Time partitions of a stream: Dagster partition keys <-> Kafka message-time windows (UTC).

Raw rows carry `kafka_date` (the Delta partition column); a window maps to a filter on
`kafka_timestamp` plus the dates it covers, so reads prune to the touched Delta partitions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from freshlake.streams import Cadence

KEY_FORMATS: dict[Cadence, str] = {"daily": "%Y-%m-%d", "hourly": "%Y-%m-%d-%H:%M"}
STEPS: dict[Cadence, timedelta] = {"daily": timedelta(days=1), "hourly": timedelta(hours=1)}


@dataclass(frozen=True, kw_only=True)
class TimeWindow:
    """`[start, end)` in UTC."""

    start: datetime
    end: datetime

    @property
    def dates(self) -> list[str]:
        """The `kafka_date` values the window touches."""
        day, last = self.start.date(), (self.end - timedelta(microseconds=1)).date()
        out = []
        while day <= last:
            out.append(day.isoformat())
            day += timedelta(days=1)
        return out

    def contains(self, when: datetime) -> bool:
        return self.start <= when < self.end


def window(keys: Sequence[str], *, cadence: Cadence = "daily") -> TimeWindow:
    """The window covering the contiguous partition `keys` (order does not matter)."""
    if not keys:
        msg = "no partition keys given: select at least one partition"
        raise ValueError(msg)
    starts = sorted(datetime.strptime(k, KEY_FORMATS[cadence]).replace(tzinfo=UTC) for k in keys)
    return TimeWindow(start=starts[0], end=starts[-1] + STEPS[cadence])


def key_for(when: datetime, *, cadence: Cadence = "daily") -> str:
    """The partition key holding `when` (naive times are UTC)."""
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    when = when.astimezone(UTC)
    if cadence == "hourly":
        when = when.replace(minute=0, second=0, microsecond=0)
    return when.strftime(KEY_FORMATS[cadence])


def keys_of(rows, *, cadence: Cadence = "daily") -> list[str]:
    """The partition keys of raw/quarantine `rows` (a pyarrow Table), sorted."""
    import pyarrow.compute as pc

    if rows.num_rows == 0:
        return []
    if cadence == "daily":
        values = rows.column("kafka_date")
    else:
        values = pc.strftime(rows.column("kafka_timestamp").drop_null(), format="%Y-%m-%d-%H:00")
    return sorted(str(v) for v in pc.unique(values).to_pylist() if v is not None)
