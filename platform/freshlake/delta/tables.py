"""Delta tables whose commits carry Kafka offsets, so the table itself says what was ingested.

Each commit records one `Transaction(app_id=f"{topic}-{partition}", version=last_offset)` per
partition. delta-rs accepts a lower version for an app id, so the check before the write (rows at
or below the recorded version are dropped) is what makes a replay a no-op.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from freshlake.delta.schemas import PARTITION_COLUMN

log = logging.getLogger(__name__)

COMMIT_ATTEMPTS = 5

# Change Data Feed on every table: `current` folds raw incrementally from it, and downstream
# consumers of `current` read its changes the same way.
CDF = {"delta.enableChangeDataFeed": "true"}


def app_id(*, topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


def open_table(uri: str, *, storage_options: Mapping[str, str] | None = None):
    """The DeltaTable at `uri`, or None if nothing was written there yet."""
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(uri, storage_options=dict(storage_options or {})):
        return None
    return DeltaTable(uri, storage_options=dict(storage_options or {}))


def committed_offsets(
    uri: str, *, topic: str, partitions: list[int], storage_options: Mapping[str, str] | None = None
) -> dict[int, int | None]:
    """Last offset written per partition (None: nothing yet), read from the txn log."""
    return _committed(open_table(uri, storage_options=storage_options), topic=topic, partitions=partitions)


def _committed(table, *, topic: str, partitions: list[int]) -> dict[int, int | None]:
    if table is None:
        return dict.fromkeys(partitions)
    return {p: table.transaction_version(app_id(topic=topic, partition=p)) for p in partitions}


def unwritten(rows: pa.Table, *, committed: Mapping[int, int | None]) -> pa.Table:
    """Drop rows whose offset the table already recorded for their partition."""
    if rows.num_rows == 0 or all(v is None for v in committed.values()):
        return rows
    floor = pa.array(
        [
            committed.get(p) if committed.get(p) is not None else -1
            for p in rows.column("kafka_partition").to_pylist()
        ],
        pa.int64(),
    )
    return rows.filter(pc.greater(rows.column("kafka_offset"), floor))


@dataclass(frozen=True, kw_only=True)
class AppendResult:
    version: int | None  # None: nothing to commit
    rows_written: int
    rows_skipped: int


def append_offsets(
    uri: str,
    rows: pa.Table,
    *,
    topic: str,
    last_offsets: Mapping[int, int],
    storage_options: Mapping[str, str] | None = None,
    commit_empty: bool = True,
) -> AppendResult:
    """Append `rows` and record `last_offsets` in the same commit, skipping what is already there.

    `commit_empty` commits the offsets even with no rows, so a range of only bad messages still
    advances the table's committed offsets. A concurrent writer's commit is re-read and the
    check repeated, so two writers never duplicate a row.
    """
    from deltalake import CommitProperties, Transaction, write_deltalake
    from deltalake.exceptions import CommitFailedError

    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        # One snapshot for the check and the write: the write commits on top of what was checked.
        table = open_table(uri, storage_options=storage_options)
        committed = _committed(table, topic=topic, partitions=list(last_offsets))
        fresh = {p: o for p, o in last_offsets.items() if committed.get(p) is None or o > committed[p]}
        if not fresh:
            return AppendResult(version=None, rows_written=0, rows_skipped=rows.num_rows)
        todo = unwritten(rows, committed=committed)
        if todo.num_rows == 0 and not commit_empty:
            return AppendResult(version=None, rows_written=0, rows_skipped=rows.num_rows)
        txns = [Transaction(app_id=app_id(topic=topic, partition=p), version=o) for p, o in fresh.items()]
        try:
            write_deltalake(
                uri if table is None else table,
                todo,
                mode="append",
                partition_by=[PARTITION_COLUMN],
                storage_options=dict(storage_options or {}) or None,
                configuration=CDF,  # only used when this write creates the table
                commit_properties=CommitProperties(app_transactions=txns),
            )
        except CommitFailedError:
            log.warning("delta commit conflict, re-checking offsets", extra={"uri": uri, "attempt": attempt})
            continue
        if table is None:
            table = open_table(uri, storage_options=storage_options)
        return AppendResult(
            version=table.version(),  # the write moved `table` to its commit
            rows_written=todo.num_rows,
            rows_skipped=rows.num_rows - todo.num_rows,
        )
    msg = f"could not commit to {uri} after {COMMIT_ATTEMPTS} attempts (concurrent writers)"
    raise RuntimeError(msg)


def ensure_table(
    uri: str,
    *,
    schema: pa.Schema,
    storage_options: Mapping[str, str] | None = None,
    partition_by: list[str] | None = None,
) -> None:
    """Create an empty table with `schema` so readers and sensors find it before any data.

    `partition_by` defaults to the Kafka-date column of the primary store's tables.
    """
    from deltalake import DeltaTable

    if not DeltaTable.is_deltatable(uri, storage_options=dict(storage_options or {})):
        DeltaTable.create(
            uri,
            schema=schema,
            partition_by=[PARTITION_COLUMN] if partition_by is None else partition_by or None,
            mode="ignore",
            storage_options=dict(storage_options or {}) or None,
            configuration=CDF,
        )


def read_change_feed(reader) -> pa.Table:
    """delta-rs hands back an arro3 stream of view types: read it as plain Arrow columns."""
    table = pa.RecordBatchReader.from_stream(reader).read_all()
    plain = {pa.string_view(): pa.string(), pa.binary_view(): pa.binary()}
    schema = pa.schema([f.with_type(plain.get(f.type, f.type)) for f in table.schema])
    return table.cast(schema) if schema != table.schema else table
