"""Time partitions of a stream: Dagster partition keys <-> Kafka message-time windows (UTC).

Raw rows carry `kafka_date` (the Delta partition column); a window maps to a filter on
`kafka_timestamp` plus the dates it covers, so reads prune to the touched Delta partitions.

Where the partitions start: a configured `partitioning.start`, else the partition of the stream's
first data (read from the Delta logs when the code location loads), else the partition in
progress. Once data exists that start only moves back (a late, older message), never forward, so
no materialized partition is orphaned; see `first_data_start`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from freshlake.streams import Cadence, Partitioning, StreamSpec

log = logging.getLogger(__name__)

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


# The start of assets built straight from a spec whose start nothing resolved (tests, notebooks);
# the code location resolves it (`resolve_starts`), so the UI never shows this one.
UNRESOLVED_START = "2026-01-01"
READ_TIMEOUT_S = 10.0  # an object store that does not answer must not hold the location's load


def start_key(partitioning: Partitioning) -> str:
    """The first partition key of `partitioning`: its start, or `UNRESOLVED_START`."""
    if partitioning.start is not None:
        return partitioning.start
    return datetime.strptime(UNRESOLVED_START, "%Y-%m-%d").strftime(KEY_FORMATS[partitioning.cadence])


def first_data_key(
    uris: Sequence[str], *, cadence: Cadence = "daily", storage_options: Mapping[str, str] | None = None
) -> str | None:
    """The partition key of the earliest row in the Delta tables `uris` (raw, quarantine), or None
    when none exists or holds a row.

    Read from the logs alone (partition values and file stats, no data file): daily keys come from
    `kafka_date`; hourly ones from the files' `min.kafka_timestamp` (a file without stats counts
    from its day's midnight, one whose rows have no Kafka time has no hourly partition).
    """
    import pyarrow as pa
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    earliest: datetime | None = None
    for uri in uris:
        try:
            table = DeltaTable(uri, storage_options=dict(storage_options or {}))
        except TableNotFoundError:
            continue
        actions = pa.table(table.get_add_actions(flatten=True))
        for when in _file_starts(actions, cadence=cadence):
            earliest = when if earliest is None else min(earliest, when)
    return None if earliest is None else key_for(earliest, cadence=cadence)


def _file_starts(actions, *, cadence: Cadence) -> list[datetime]:
    """The earliest partition time of each data file of an add-actions table."""
    from freshlake.delta.schemas import PARTITION_COLUMN

    days = actions.column(f"partition.{PARTITION_COLUMN}").to_pylist()
    midnights = [datetime.strptime(d, "%Y-%m-%d").replace(tzinfo=UTC) for d in days]
    if cadence == "daily":
        return midnights
    names = set(actions.column_names)

    def column(name: str) -> list:
        return actions.column(name).to_pylist() if name in names else [None] * actions.num_rows

    starts = []
    rows, nulls = column("num_records"), column("null_count.kafka_timestamp")
    for midnight, first, n, n_null in zip(midnights, column("min.kafka_timestamp"), rows, nulls, strict=True):
        if first is not None:
            starts.append(first)
        elif n is None or n_null is None or n_null < n:  # no stats: count from the day's start
            starts.append(midnight)
    return starts


def first_data_start(
    partitioning: Partitioning,
    *,
    first_data: str | None,
    now: datetime | None = None,
) -> str:
    """Where a stream's partitions start: the configured start; else `first_data`'s partition;
    else (no data yet) the partition in progress. Never later than the partition in progress
    (a producer's future timestamps must not leave the current partition out).

    Moving the start forward would orphan materialized partitions. It does not happen once data
    exists: the first row's partition only moves back (a late message with an older time, a raw
    backfill of older days), which adds partitions. Before data exists the start is today and the
    first data is today or later, except a message already old when it arrives: its rows are
    written and its partition's materialization recorded all the same, and the next load of the
    code location starts the partitions there. Set `partitioning.start` to pin it.
    """
    if partitioning.start is not None:
        return partitioning.start
    current = key_for(now or datetime.now(UTC), cadence=partitioning.cadence)
    if first_data is None:
        return current
    fmt = KEY_FORMATS[partitioning.cadence]
    return min(first_data, current, key=lambda key: datetime.strptime(key, fmt))


def resolve_starts(
    specs: Sequence[StreamSpec],
    *,
    table_uris: Callable[[StreamSpec], Sequence[str]],
    storage_options: Mapping[str, str] | None = None,
    now: datetime | None = None,
    timeout_s: float = READ_TIMEOUT_S,
) -> list[StreamSpec]:
    """`specs` with every unset `partitioning.start` resolved (`first_data_start`), for the code
    location's load. `table_uris(spec)`: the Delta tables holding the stream's partitions.

    Any failure to read (an unreachable store, a timeout of `timeout_s` for all streams together)
    is logged and counts as no data: the location loads with today's partition as the start.
    """
    todo = [spec for spec in specs if spec.partitioning.start is None]
    if not todo:
        return list(specs)

    def read() -> dict[str, str | None]:
        firsts: dict[str, str | None] = {}
        for spec in todo:
            try:
                firsts[spec.name] = first_data_key(
                    table_uris(spec), cadence=spec.partitioning.cadence, storage_options=storage_options
                )
            except Exception as exc:  # unreadable: the location must load anyway
                log.warning(
                    "partition start: cannot read the stream's tables; starting at today",
                    extra={"stream": spec.name, "error": str(exc)[:300]},
                )
                firsts[spec.name] = None
        return firsts

    try:
        firsts = _within(read, timeout_s=timeout_s)
    except TimeoutError:
        log.warning(
            "partition start: the Delta store did not answer in time; starting at today",
            extra={"streams": [s.name for s in todo], "timeout_s": timeout_s},
        )
        firsts = {}
    out = []
    for spec in specs:
        if spec.partitioning.start is None:
            first = firsts.get(spec.name)
            start = first_data_start(spec.partitioning, first_data=first, now=now)
            log.info(
                "partition start",
                extra={"stream": spec.name, "start": start, "from": "first data" if first else "today"},
            )
            spec = replace(spec, partitioning=replace(spec.partitioning, start=start))
        out.append(spec)
    return out


T = TypeVar("T")


def _within(fn: Callable[[], T], *, timeout_s: float) -> T:
    """`fn()` in a daemon thread, or TimeoutError after `timeout_s` (the thread is left to end)."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=run, name="freshlake-partition-start", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        msg = f"no answer in {timeout_s:g}s"
        raise TimeoutError(msg)
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]
