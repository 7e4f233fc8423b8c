"""What a search can see of each stream: the versions it reads and the Kafka positions in them.

The searchable offset of a partition is derived from the records the writers keep, never from
the rows themselves (a superseded event leaves no row, yet it was processed):

    embeddings progress mark  -> the `current` Delta version the live LanceDB table has read
    that `current` version    -> the last raw version folded into it (txn app id "raw")
    that raw version          -> the last Kafka offset ingested per partition (txn "<topic>-<p>")

Each mark is written only after the data it describes is committed (`sync_embeddings` sets the
progress mark after the LanceDB write; `current` and raw record their txns in the same commit as
the data), so an offset read this way is always already searchable. Versions are immutable, so
the two Delta look-ups are cached per version.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import pyarrow.compute as pc

PROBED_PARTITIONS = 64  # partitions looked up in a raw snapshot beyond the spec's count


@dataclass(frozen=True, kw_only=True)
class StreamFreshness:
    """How old the searchable data of one stream is, and which versions a search reads.

    `lance_version` is the LanceDB table version seen just before the search (it reads that
    version or a newer one); `current_version`, `raw_version` and `searchable_offsets` are lower
    bounds of what that version holds: everything up to them is searchable.
    """

    stream: str
    topic: str
    table: str | None  # the live LanceDB table; None before the stream's first embeddings run
    model: tuple[str, str] | None
    rows: int
    lance_version: int | None
    current_version: int | None  # the `current` Delta version the table has read
    raw_version: int | None  # the raw Delta version folded into that `current` version
    searchable_offsets: dict[int, int] = field(default_factory=dict)  # partition -> last offset
    newest_event_time: datetime | None = None  # newest searchable event time (else embedded_at)
    measured_at: datetime
    stale: bool | None = None  # against the request's max_staleness_s; None when none was given

    @property
    def event_time_lag_s(self) -> float | None:
        """now - the newest searchable event time: `freshlake.lag`'s event-time lag."""
        if self.newest_event_time is None:
            return None
        return (self.measured_at - self.newest_event_time).total_seconds()

    def covers(self, partition: int, offset: int) -> bool:
        """Whether the event at (partition, offset) is searchable."""
        return self.searchable_offsets.get(partition, -1) >= offset


class Marks:
    """The embeddings progress marks under a LanceDB root, read fresh on every call."""

    def __init__(self, *, uri: str, storage_options: Mapping[str, str] | None = None) -> None:
        self._uri = uri
        self._storage_options = dict(storage_options or {})
        self._table = None
        self._lock = threading.Lock()

    def read(self) -> dict[str, int | None]:
        from freshlake.lance.progress import TABLE

        with self._lock:
            if self._table is None:
                import lancedb

                db = lancedb.connect(
                    self._uri,
                    storage_options=self._storage_options or None,
                    read_consistency_interval=timedelta(0),  # a long-lived reader sees new marks
                )
                try:
                    self._table = db.open_table(TABLE)
                except (ValueError, FileNotFoundError):  # no embeddings run yet
                    return {}
            table = self._table
        rows = table.search().select(["name", "version"]).to_arrow()
        return dict(zip(rows.column("name").to_pylist(), rows.column("version").to_pylist(), strict=True))


def raw_version_folded(
    current_uri: str, *, version: int, storage_options: Mapping[str, str] | None = None
) -> int | None:
    """The last raw version folded into `current` at `version` (None: nothing folded yet)."""
    return _raw_version_folded(current_uri, version, _frozen(storage_options))


def ingested_offsets(
    raw_uri: str,
    *,
    version: int,
    topic: str,
    partitions: int,
    storage_options: Mapping[str, str] | None = None,
) -> dict[int, int]:
    """Partition -> last Kafka offset ingested into raw at `version` (partitions with one)."""
    return dict(_ingested_offsets(raw_uri, version, topic, partitions, _frozen(storage_options)))


def newest_time(table) -> datetime | None:
    """Newest `event_time` (else `embedded_at`) of a LanceDB chunk table, as `freshlake.lag`."""
    rows = table.search().select(["event_time", "embedded_at"]).to_arrow()
    for column in ("event_time", "embedded_at"):
        value = pc.max(rows.column(column)).as_py() if rows.num_rows else None
        if isinstance(value, datetime):
            return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return None


def _frozen(options: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((options or {}).items()))


@lru_cache(maxsize=1024)
def _raw_version_folded(uri: str, version: int, options: tuple[tuple[str, str], ...]) -> int | None:
    from deltalake import DeltaTable

    from freshlake.delta.current import RAW_APP_ID

    table = DeltaTable(uri, version=version, storage_options=dict(options) or None)
    return table.transaction_version(RAW_APP_ID)


@lru_cache(maxsize=1024)
def _ingested_offsets(
    uri: str, version: int, topic: str, partitions: int, options: tuple[tuple[str, str], ...]
) -> dict[int, int]:
    from deltalake import DeltaTable

    from freshlake.delta.tables import app_id

    table = DeltaTable(uri, version=version, storage_options=dict(options) or None)
    found = {}
    for partition in range(partitions + PROBED_PARTITIONS):  # a topic may have grown
        offset = table.transaction_version(app_id(topic=topic, partition=partition))
        if offset is not None:
            found[partition] = offset
    return found
