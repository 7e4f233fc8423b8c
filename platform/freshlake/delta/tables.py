"""Delta tables whose commits carry Kafka offsets, so the table itself says what was ingested.

Each commit records one `Transaction(app_id=f"{topic}-{partition}", version=last_offset)` per
partition. delta-rs accepts a lower version for an app id, so the check before the write (rows at
or below the recorded version are dropped) is what makes a replay a no-op.

Concurrent writers: the check reads the txn versions of the snapshot the write commits on, and
delta-rs (1.6, `ConflictChecker`) fails a commit with `CommitFailedError` ("Concurrent
transaction failed") when a commit made after that snapshot carries a txn of one of its own app
ids. So a commit lands only on exactly the offsets it was checked against; on a conflict the
snapshot is re-read and the check repeated.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from freshlake.delta.schemas import PARTITION_COLUMN
from freshlake.errors import FreshlakeError

log = logging.getLogger(__name__)

COMMIT_ATTEMPTS = 5

# Change Data Feed on every table: `current` folds raw incrementally from it, and downstream
# consumers of `current` read its changes the same way.
CDF = {"delta.enableChangeDataFeed": "true"}


def app_id(*, topic: str, partition: int) -> str:
    return f"{topic}-{partition}"


def ingest_writer_properties():
    """Parquet settings of the ingest's appends: no dictionary pages, which cost about a quarter
    of the encoding time for hardly any size (snappy takes the repeats). Files that compaction
    merges are written with the defaults again, dictionaries included.
    """
    from deltalake import ColumnProperties, WriterProperties

    return WriterProperties(
        compression="SNAPPY", default_column_properties=ColumnProperties(dictionary_enabled=False)
    )


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
    planned: Mapping[int, int | None] | None = None,
) -> AppendResult:
    """Append `rows` and record `last_offsets` in the same commit, skipping what is already there.

    `commit_empty` commits the offsets even with no rows, so a range of only bad messages still
    advances the table's committed offsets. A concurrent writer's commit is re-read and the
    check repeated, so two writers never duplicate a row. `planned`: the committed offsets the
    rows were read after (`rows` hold every offset from there to `last_offsets`); what another
    writer committed since is trimmed, and a table behind the plan is refused (the rows would
    leave a gap).
    """
    from deltalake import CommitProperties, Transaction, write_deltalake
    from deltalake.exceptions import CommitFailedError

    if rows.num_rows == 0 and not commit_empty:
        return AppendResult(version=None, rows_written=0, rows_skipped=0)
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        # One snapshot for the check and the write: the write commits on top of what was checked.
        table = open_table(uri, storage_options=storage_options)
        committed = _committed(table, topic=topic, partitions=list(last_offsets))
        if planned is not None:
            _refuse_gaps(uri, committed=committed, planned=planned)
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
                writer_properties=ingest_writer_properties(),
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


def _refuse_gaps(uri: str, *, committed: Mapping[int, int | None], planned: Mapping[int, int | None]) -> None:
    def last(offset: int | None) -> int:
        return -1 if offset is None else offset

    behind = {p: (c, planned.get(p)) for p, c in committed.items() if last(c) < last(planned.get(p))}
    if behind:
        msg = (
            f"{uri}: committed offsets went back while a run was writing ({behind}, committed vs "
            "planned): the table was restored or recreated. Nothing was committed; rerun the "
            "ingest, which plans from the table as it is now."
        )
        raise FreshlakeError(msg)


class NotCommitted(Exception):  # an outcome the caller handles, not an error
    """Raised by the batches given to `append_stream` to end it without a commit."""


def append_stream(
    uri: str,
    batches: Iterator[pa.RecordBatch],
    *,
    schema: pa.Schema,
    topic: str,
    last_offsets: Mapping[int, int],
    storage_options: Mapping[str, str] | None = None,
    planned: Mapping[int, int | None] | None = None,
) -> AppendResult | None:
    """Append batches as they are produced, with `last_offsets` in the same commit.

    `batches` is consumed on the calling thread while a writer thread encodes and uploads what
    it produced so far, so the write overlaps the work that produces the rows. It commits only
    on a snapshot whose committed offsets are exactly `planned` (the ones the run read after;
    None: whatever the snapshot holds, with none of `last_offsets` recorded) for every
    partition it writes; a commit made after that snapshot for one of them fails this one (a
    delta-rs txn conflict), so rows are never written twice. None: nothing was committed (the
    table moved past the plan, a conflict, or `batches` raised `NotCommitted`) and `batches` is
    used up: append what it yielded with `append_offsets`, which trims to what is committed
    then. Other errors from `batches` propagate.
    """
    table = open_table(uri, storage_options=storage_options)
    committed = _committed(table, topic=topic, partitions=list(last_offsets))
    recorded = any(committed[p] is not None and o <= committed[p] for p, o in last_offsets.items())
    moved = planned is not None and any(committed[p] != planned.get(p) for p in last_offsets)
    if table is None or not last_offsets or recorded or moved:
        with contextlib.suppress(NotCommitted):  # a writer got there first: the checked path decides
            for _ in batches:
                pass
        return None
    writer = _StreamWriter(table, schema=schema, topic=topic, last_offsets=last_offsets)
    rows = 0
    try:
        for batch in batches:
            rows += batch.num_rows
            writer.put(batch)
    except NotCommitted:
        writer.abort()
        return None
    except BaseException:
        writer.abort()
        raise
    version = writer.commit()
    if version is None:
        log.warning("delta commit conflict, re-checking offsets", extra={"uri": uri})
        return None
    return AppendResult(version=version, rows_written=rows, rows_skipped=0)


class _StreamWriter:
    """`write_deltalake` on its own thread, pulling batches from a queue."""

    _END = object()

    def __init__(self, table, *, schema: pa.Schema, topic: str, last_offsets: Mapping[int, int]) -> None:
        self._table = table
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._conflict = False
        self._txns = [(app_id(topic=topic, partition=p), o) for p, o in last_offsets.items()]
        self._thread = threading.Thread(
            target=self._write, args=(schema,), name="freshlake-delta-writer", daemon=True
        )
        self._thread.start()

    def _pulled(self) -> Iterator[pa.RecordBatch]:
        while (item := self._queue.get()) is not self._END:
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]

    def _write(self, schema: pa.Schema) -> None:
        from deltalake import CommitProperties, Transaction, write_deltalake
        from deltalake.exceptions import CommitFailedError

        try:
            write_deltalake(
                self._table,
                pa.RecordBatchReader.from_batches(schema, self._pulled()),
                mode="append",
                partition_by=[PARTITION_COLUMN],
                commit_properties=CommitProperties(
                    app_transactions=[Transaction(app_id=a, version=v) for a, v in self._txns]
                ),
                writer_properties=ingest_writer_properties(),
            )
        except CommitFailedError:
            self._conflict = True
        except BaseException as exc:  # handed to the caller by `commit`
            self._error = exc

    def put(self, batch: pa.RecordBatch) -> None:
        self._queue.put(batch)

    def abort(self) -> None:
        """End the write without a commit (its files are left for vacuum)."""
        self._queue.put(NotCommitted("aborted"))
        self._thread.join()

    def commit(self) -> int | None:
        """The committed version, or None on a commit conflict."""
        self._queue.put(self._END)
        self._thread.join()
        if self._error is not None:
            raise self._error
        return None if self._conflict else self._table.version()


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
