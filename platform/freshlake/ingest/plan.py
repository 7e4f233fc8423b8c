"""Which offsets a run reads: from what raw committed up to the fetch-derived watermark."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from freshlake.errors import FreshlakeError


class OffsetsWentBackwards(FreshlakeError):
    """The topic's end is behind what we ingested: it was recreated or truncated."""


class OffsetsLostToRetention(FreshlakeError):
    """Messages we never ingested were deleted by retention before we read them."""


@dataclass(frozen=True, kw_only=True, order=True)
class OffsetRange:
    """`[start, end)` of one partition."""

    partition: int
    start: int
    end: int

    @property
    def count(self) -> int:
        return max(0, self.end - self.start)


def next_offsets(
    *,
    committed: Mapping[int, int | None],
    low: Mapping[int, int],
    high: Mapping[int, int],
    topic: str,
) -> dict[int, int]:
    """The first offset still to ingest per partition, checked against what the broker holds.

    Raises:
        OffsetsWentBackwards: committed offsets are past the broker's end.
        OffsetsLostToRetention: the broker no longer holds offsets we never ingested.
    """
    result: dict[int, int] = {}
    for partition, end in high.items():
        last = committed.get(partition)
        start = low.get(partition, 0) if last is None else last + 1
        if start > end:
            msg = (
                f"{topic}[{partition}] ends at offset {end} but the raw table already holds up to "
                f"{last}: the topic was recreated or truncated. Nothing was read. Point the stream "
                "at a new raw table (or delete it) to start over; freshlake will not guess."
            )
            raise OffsetsWentBackwards(msg)
        if start < low.get(partition, 0):
            msg = (
                f"{topic}[{partition}] starts at offset {low[partition]} but offsets from "
                f"{start} were never ingested: retention deleted them. Raise the topic's "
                "retention, or accept the gap explicitly by backfilling from the new start."
            )
            raise OffsetsLostToRetention(msg)
        result[partition] = start
    return result


def plan_ranges(*, start: Mapping[int, int], high: Mapping[int, int], max_records: int) -> list[OffsetRange]:
    """Ranges from `start` towards `high`, at most `max_records` in all, shared fairly."""
    lag = {p: max(0, high[p] - s) for p, s in start.items()}
    budget = max_records
    share: dict[int, int] = dict.fromkeys(lag, 0)
    waiting = sorted(p for p, n in lag.items() if n > 0)
    while waiting and budget > 0:
        each = max(1, budget // len(waiting))
        for p in list(waiting):
            take = min(each, lag[p] - share[p], budget)
            share[p] += take
            budget -= take
            if share[p] >= lag[p]:
                waiting.remove(p)
            if budget <= 0:
                break
    return [
        OffsetRange(partition=p, start=start[p], end=start[p] + share[p])
        for p in sorted(start)
        if share[p] > 0
    ]


def run_key(*, topic: str, ranges: list[OffsetRange]) -> str:
    """Deterministic: the same ranges always give the same key (`topic:p0=a-b,p1=c-d`)."""
    parts = ",".join(f"p{r.partition}={r.start}-{r.end}" for r in sorted(ranges))
    return f"{topic}:{parts}"


def parse_run_key(key: str) -> list[OffsetRange]:
    """The ranges of a `run_key` (a `#retryN` suffix is ignored); [] for anything else."""
    _, _, parts = key.partition("#")[0].rpartition(":")
    ranges = []
    for part in filter(None, parts.split(",")):
        name, _, span = part.partition("=")
        start, _, end = span.partition("-")
        if not (name.startswith("p") and name[1:].isdigit() and start.isdigit() and end.isdigit()):
            return []
        ranges.append(OffsetRange(partition=int(name[1:]), start=int(start), end=int(end)))
    return ranges


def consumer_lag(*, start: Mapping[int, int], high: Mapping[int, int]) -> int:
    return sum(max(0, high[p] - s) for p, s in start.items())
