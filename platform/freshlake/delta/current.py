"""`<stream>/current`: one row per key, folded incrementally from raw (invariant 4).

Only raw commits newer than the last one folded are read (raw's Change Data Feed); the last raw
version folded is recorded in the same commit as the MERGE (`Transaction(app_id="raw", ...)`), so
a crash or replay folds nothing twice. A delete keeps the key as a row with `is_deleted = true`
(readers skip it) so that an older upsert replayed later cannot bring a deleted booking back.

Order: every update is guarded by `version`, one sortable string (`freshlake.ordering`):
`<order prefix><partition><offset>`. The prefix encodes the stream's order (its `order_by`
fields, by default the event time; for Debezium the source position: PostgreSQL lsn + txId,
MySQL binlog file + pos + row, SQL Server commit_lsn + change_lsn, else ts_ms), so the newest
event *by the source's order* wins in any order of arrival, whichever partition it came from. A
Kafka offset breaks a tie only inside its partition; equal order values in two partitions are
decided by (partition, offset), deterministically, and counted as `version_ties`.

Rows without an order value (tombstones; the parse step quarantines other rows without one):
a tombstone takes the prefix of the previous row of its key in its partition (by offset): in the
batch, or else in the MERGE from the `current` row when that row came from the same partition at
a lower offset (the target's prefix, the tombstone's own partition and offset). With no such row
it is kept as a deletion marker with the lowest prefix (`!`, below every order value), so any
versioned event of the key, older or newer, re-creates it. A tombstone therefore deletes what its
partition said before it, never an event of another partition it cannot be ordered against.

Tables written by freshlake before this order (an int64 `version`, the Kafka offset) are refused
at fold time with the fix: drop the table, it is re-derived from raw.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pyarrow as pa

from freshlake.delta.schemas import FIELD_TYPES, TS
from freshlake.delta.tables import COMMIT_ATTEMPTS, ensure_table, open_table, read_change_feed
from freshlake.errors import FreshlakeConfigError
from freshlake.ordering import SUFFIX_WIDTH, UNVERSIONED, assign_versions, cross_partition_ties
from freshlake.streams import StreamSpec

log = logging.getLogger(__name__)

RAW_APP_ID = "raw"

BOOKKEEPING: list[pa.Field] = [
    pa.field("key", pa.string(), nullable=False),
    pa.field("is_deleted", pa.bool_(), nullable=False),
    pa.field("version", pa.string(), nullable=False),  # freshlake.ordering: compare as text
    pa.field("source_topic", pa.string(), nullable=False),
    pa.field("source_partition", pa.int32(), nullable=False),
    pa.field("source_offset", pa.int64(), nullable=False),
    pa.field("raw_delta_version", pa.int64(), nullable=False),
    pa.field("kafka_timestamp", TS),
    pa.field("event_time", TS),
    pa.field("ingested_at", TS),
]


def current_schema(spec: StreamSpec) -> pa.Schema:
    names = {f.name for f in BOOKKEEPING}
    record = [pa.field(n, FIELD_TYPES[t]) for n, t in spec.fields.items() if n not in names]
    return pa.schema([*BOOKKEEPING, *record])


def fold(raw: pa.Table, *, spec: StreamSpec) -> pa.Table:
    """Raw rows (with `_commit_version`) -> the newest row per key, as `current_schema` rows."""
    return fold_rows(raw, spec=spec).rows


@dataclass(frozen=True, kw_only=True)
class Folded:
    rows: pa.Table  # current_schema: the newest row per key of the batch
    version_ties: int  # keys whose newest order value is held in more than one partition
    rows_unordered: int  # raw rows without an order value (tombstones), ordered as documented


def fold_rows(raw: pa.Table, *, spec: StreamSpec) -> Folded:
    """`fold`, with the counts the metadata shows."""
    import polars as pl

    schema = current_schema(spec)
    if raw.num_rows == 0:
        return Folded(rows=schema.empty_table(), version_ties=0, rows_unordered=0)
    versioned = assign_versions(pl.from_arrow(raw), spec=spec)
    record = [f.name for f in schema if f.name not in {f.name for f in BOOKKEEPING[:7]}]
    frame = (
        versioned.sort("version")
        .group_by("key", maintain_order=True)
        .last()
        .select(
            pl.col("key"),
            pl.col("is_delete").alias("is_deleted"),
            pl.col("version"),
            pl.col("kafka_topic").alias("source_topic"),
            pl.col("kafka_partition").alias("source_partition"),
            pl.col("kafka_offset").alias("source_offset"),
            pl.col("_commit_version").cast(pl.Int64).alias("raw_delta_version"),
            *[pl.col(name) for name in record],
        )
    )
    return Folded(
        rows=frame.to_arrow().cast(schema),
        version_ties=cross_partition_ties(versioned),
        rows_unordered=int(versioned.height - versioned.get_column("has_order").sum()),
    )


@dataclass(frozen=True, kw_only=True)
class FoldResult:
    raw_versions: tuple[int, int] | None  # (first, last) raw commit folded; None: nothing new
    raw_rows: int
    keys_upserted: int
    keys_deleted: int
    rows_inserted: int
    rows_updated: int
    current_version: int | None
    seconds: float
    version_ties: int = 0  # keys decided between partitions by (partition, offset): equal order
    rows_unordered: int = 0  # raw rows without an order value (tombstones)


def last_folded_raw_version(uri: str, *, storage_options: Mapping[str, str] | None = None) -> int | None:
    table = open_table(uri, storage_options=storage_options)
    return None if table is None else table.transaction_version(RAW_APP_ID)


def raw_changes(raw_uri: str, *, after: int | None, storage_options: Mapping[str, str] | None = None):
    """(rows inserted into raw after version `after`, (first, last) version) or (None, None)."""
    raw = open_table(raw_uri, storage_options=storage_options)
    if raw is None:
        return None, None
    latest = raw.version()
    first = 0 if after is None else after + 1
    if first > latest:
        return None, None
    table = read_change_feed(raw.load_cdf(starting_version=first, ending_version=latest))
    if table.num_rows:
        change_type = table.column("_change_type").cast(pa.string())
        table = table.filter(pa.compute.equal(change_type, "insert"))
    return table, (first, latest)


def _nothing_folded(
    current_uri: str, *, started: float, storage_options: Mapping[str, str] | None
) -> FoldResult:
    table = open_table(current_uri, storage_options=storage_options)
    return FoldResult(
        raw_versions=None,
        raw_rows=0,
        keys_upserted=0,
        keys_deleted=0,
        rows_inserted=0,
        rows_updated=0,
        current_version=table.version(),
        seconds=time.perf_counter() - started,
    )


def fold_into_current(
    *,
    spec: StreamSpec,
    raw_uri: str,
    current_uri: str,
    storage_options: Mapping[str, str] | None = None,
) -> FoldResult:
    """Fold raw commits not yet folded into `current`, in one guarded MERGE."""

    def plan() -> tuple[pa.Table, tuple[int, int], int | None] | None:
        after = last_folded_raw_version(current_uri, storage_options=storage_options)
        changes, versions = raw_changes(raw_uri, after=after, storage_options=storage_options)
        return None if versions is None else (changes, versions, versions[1])

    return _fold_retrying(spec=spec, current_uri=current_uri, plan=plan, storage_options=storage_options)


def rederive_current(
    *,
    spec: StreamSpec,
    raw_uri: str,
    current_uri: str,
    window,  # freshlake.partitions.TimeWindow
    storage_options: Mapping[str, str] | None = None,
) -> FoldResult:
    """Fold raw's rows of `window` again (a backfill), from raw Delta only.

    Guarded like every fold, so events older than what `current` holds change nothing and a
    backfill of last week leaves today's state as it is. The incremental record (the last raw
    version folded) is not moved. `raw_delta_version` of rows it inserts is the raw version read.
    """
    from freshlake.delta.windows import read_window

    def plan() -> tuple[pa.Table, tuple[int, int], int | None] | None:
        rows, version = read_window(raw_uri, window=window, storage_options=storage_options)
        if version is None or rows.num_rows == 0:
            return None
        rows = rows.append_column("_commit_version", pa.array([version] * rows.num_rows, pa.int64()))
        return rows, (version, version), None

    return _fold_retrying(spec=spec, current_uri=current_uri, plan=plan, storage_options=storage_options)


def _fold_retrying(
    *,
    spec: StreamSpec,
    current_uri: str,
    plan: Callable[[], tuple[pa.Table, tuple[int, int], int | None] | None],
    storage_options: Mapping[str, str] | None,
) -> FoldResult:
    """`plan()` (rows, raw versions read, raw version to record or None; None: nothing to fold),
    merged; a concurrent writer's commit makes it plan again."""
    from deltalake.exceptions import CommitFailedError

    t0 = time.perf_counter()
    ensure_table(current_uri, schema=current_schema(spec), storage_options=storage_options, partition_by=[])
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        planned = plan()
        if planned is None:
            return _nothing_folded(current_uri, started=t0, storage_options=storage_options)
        rows, versions, record = planned
        try:
            result = merge_into_current(
                spec=spec,
                current_uri=current_uri,
                raw_rows=rows,
                raw_version=record,
                storage_options=storage_options,
            )
        except CommitFailedError:
            log.warning("current merge conflict, retrying", extra={"stream": spec.name, "attempt": attempt})
            continue
        return FoldResult(
            **{**result.__dict__, "raw_versions": versions, "seconds": time.perf_counter() - t0}
        )
    msg = f"could not merge into {current_uri} after {COMMIT_ATTEMPTS} attempts (concurrent writers)"
    raise RuntimeError(msg)


def merge_into_current(
    *,
    spec: StreamSpec,
    current_uri: str,
    raw_rows: pa.Table,
    raw_version: int | None,
    storage_options: Mapping[str, str] | None = None,
) -> FoldResult:
    """Fold `raw_rows` (with `_commit_version`) and MERGE them, guarded by `version`.

    `raw_version` is recorded as the last raw commit folded; None leaves the record alone (a
    re-derivation from older raw data must not move it).
    """
    from deltalake import CommitProperties, Transaction

    t0 = time.perf_counter()
    schema = current_schema(spec)
    ensure_table(current_uri, schema=schema, storage_options=storage_options, partition_by=[])
    table = open_table(current_uri, storage_options=storage_options)
    check_version_type(table, uri=current_uri)
    result = fold_rows(raw_rows, spec=spec)
    folded = result.rows
    txns = [] if raw_version is None else [Transaction(app_id=RAW_APP_ID, version=raw_version)]
    metrics = (
        table.merge(
            source=folded,
            predicate="t.key = s.key",
            source_alias="s",
            target_alias="t",
            commit_properties=CommitProperties(app_transactions=txns),
        )
        # an unordered row (a tombstone) after the current row in the current row's partition
        # takes that row's order prefix: it is newer than what its partition said before it
        .when_matched_update(updates=_inherit_updates(schema), predicate=_INHERITS)
        .when_matched_update_all(predicate="s.version > t.version")
        .when_not_matched_insert_all()
        .execute()
    )
    deleted = int(pa.compute.sum(folded.column("is_deleted").cast(pa.int64())).as_py() or 0)
    return FoldResult(
        raw_versions=None,
        raw_rows=raw_rows.num_rows,
        keys_upserted=folded.num_rows - deleted,
        keys_deleted=deleted,
        rows_inserted=int(metrics.get("num_target_rows_inserted", 0)),
        rows_updated=int(metrics.get("num_target_rows_updated", 0)),
        current_version=open_table(current_uri, storage_options=storage_options).version(),
        seconds=time.perf_counter() - t0,
        version_ties=result.version_ties,
        rows_unordered=result.rows_unordered,
    )


_INHERITS = (
    f"starts_with(s.version, '{UNVERSIONED}') AND t.source_partition = s.source_partition "
    "AND s.source_offset > t.source_offset"
)


def _inherit_updates(schema: pa.Schema) -> dict[str, str]:
    """Every column from the source row; `version` = the target's prefix + the source's suffix."""
    updates = {f.name: f"s.{f.name}" for f in schema}
    updates["version"] = (
        f"concat(substr(t.version, 1, character_length(t.version) - {SUFFIX_WIDTH}), "
        f"substr(s.version, character_length(s.version) - {SUFFIX_WIDTH - 1}))"
    )
    return updates


def check_version_type(table, *, uri: str) -> None:
    """Refuse a `current` table whose `version` is the Kafka offset (freshlake before the
    source order): comparing it with the new versions would be meaningless."""
    if table is None:
        return
    field = next((f for f in table.schema().fields if f.name == "version"), None)
    kind = getattr(field.type, "type", None) if field is not None else None
    if kind is not None and kind != "string":
        msg = (
            f"the current table at {uri} has an integer `version` (the Kafka offset, from an older "
            "freshlake): it cannot be ordered by the source's order. Drop that table (delete its "
            "folder); the next materialization re-derives it from raw"
        )
        raise FreshlakeConfigError(msg)


def current_changes(
    current_uri: str, *, after: int | None, storage_options: Mapping[str, str] | None = None
) -> tuple[pa.Table | None, int | None]:
    """Rows of `current` changed after version `after` (their post-images), and the last version.

    With `after=None` this is the whole table: the first pass, or a rebuild.
    """
    import polars as pl

    table = open_table(current_uri, storage_options=storage_options)
    if table is None:
        return None, None
    latest = table.version()
    if after is None:
        return table.to_pyarrow_table(), latest
    if after >= latest:
        return None, latest
    changes = pl.from_arrow(
        read_change_feed(table.load_cdf(starting_version=after + 1, ending_version=latest))
    )
    if changes.height == 0:
        return None, latest
    post = (
        changes.filter(pl.col("_change_type").is_in(["insert", "update_postimage"]))
        .sort("_commit_version")
        .group_by("key", maintain_order=True)
        .last()
        .drop("_change_type", "_commit_version", "_commit_timestamp")
    )
    return post.to_arrow(), latest
