"""Keeping Delta tables healthy: compaction of small files, checkpoints and vacuum.

Compaction rewrites data files but carries no app transactions, and the txn versions live in the
log (checkpoints keep them), so what was ingested stays exactly what it was. Vacuum runs in
delta-rs' lite mode only: it deletes files a commit removed longer ago than the retention, never
files no commit mentions (a streaming write may be about to commit them).

Retention floor: every Delta reader in freshlake (a run folding raw into `current`, an embeddings
sync, `freshlake status`/`trace`) opens one snapshot and reads its files within that run, which
lasts seconds to minutes. `MIN_RETENTION_HOURS` (1 h) is far above that; a shorter retention is
refused unless forced (tests, or a table nobody reads). Change Data Feed followers read old
versions: `keep_from_version` keeps the files those versions need until the follower has read them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from freshlake.delta.tables import COMMIT_ATTEMPTS, open_table
from freshlake.errors import FreshlakeConfigError

log = logging.getLogger(__name__)

DEFAULT_RETENTION_HOURS = 168  # Delta's own default (delta.deletedFileRetentionDuration)
MIN_RETENTION_HOURS = 1  # see the module docstring
MAX_PROTECTED_VERSIONS = 1_000  # a CDF follower further behind than this: vacuum waits for it
MAX_MEASURED_BYTES = 1 << 30  # read time is measured on tables up to 1 GiB (a full scan)


@dataclass(frozen=True, kw_only=True)
class CompactionResult:
    uri: str
    files_before: int
    files_after: int
    files_removed: int
    files_added: int
    version: int | None
    seconds: float


@dataclass(frozen=True, kw_only=True)
class VacuumResult:
    files_vacuumed: int
    version: int | None
    seconds: float
    skipped: str | None = None  # why nothing was vacuumed, if so


@dataclass(frozen=True, kw_only=True)
class MaintenanceResult:
    compaction: CompactionResult
    vacuum: VacuumResult
    bytes_before: int
    bytes_after: int
    read_seconds_before: float | None  # None: table missing or over MAX_MEASURED_BYTES
    read_seconds_after: float | None


def check_retention(retention_hours: int, *, force: bool = False) -> None:
    """Refuse a vacuum retention that could delete files a running reader still needs."""
    if retention_hours < 0:
        msg = f"vacuum retention must be 0 or more hours, got {retention_hours}"
        raise FreshlakeConfigError(msg)
    if retention_hours < MIN_RETENTION_HOURS and not force:
        msg = (
            f"vacuum retention of {retention_hours} h is below the {MIN_RETENTION_HOURS} h floor that "
            "protects running readers (a run still reading an older snapshot of the table): use "
            f"retention_hours >= {MIN_RETENTION_HOURS} (default {DEFAULT_RETENTION_HOURS}), or force it "
            "only when no run or reader uses the table"
        )
        raise FreshlakeConfigError(msg)


def compact(
    uri: str, *, storage_options: Mapping[str, str] | None = None, checkpoint: bool = True
) -> CompactionResult:
    """Bin-pack small files and write a checkpoint; retried if a streaming commit lands between."""
    from deltalake.exceptions import CommitFailedError

    t0 = time.perf_counter()
    table = open_table(uri, storage_options=storage_options)
    if table is None:
        return CompactionResult(
            uri=uri,
            files_before=0,
            files_after=0,
            files_removed=0,
            files_added=0,
            version=None,
            seconds=0.0,
        )
    before = len(table.file_uris())
    metrics: dict[str, object] = {}
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            metrics = table.optimize.compact()
            break
        except CommitFailedError:
            log.warning("compaction conflict, retrying", extra={"uri": uri, "attempt": attempt})
            table = open_table(uri, storage_options=storage_options)
    else:
        msg = f"compaction of {uri} kept conflicting with other writers; it will run again"
        raise RuntimeError(msg)
    table = open_table(uri, storage_options=storage_options)
    if checkpoint:
        table.create_checkpoint()
    return CompactionResult(
        uri=uri,
        files_before=before,
        files_after=len(table.file_uris()),
        files_removed=int(metrics.get("numFilesRemoved", 0)),
        files_added=int(metrics.get("numFilesAdded", 0)),
        version=table.version(),
        seconds=time.perf_counter() - t0,
    )


def vacuum(
    uri: str,
    *,
    retention_hours: int = DEFAULT_RETENTION_HOURS,
    force: bool = False,
    keep_from_version: int | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> VacuumResult:
    """Delete data files removed (or never committed) more than `retention_hours` ago.

    Args:
        force: allow a retention below `MIN_RETENTION_HOURS`.
        keep_from_version: the oldest version a Change Data Feed follower has yet to read; the
            files of that version and later ones are kept.
    """
    from deltalake.exceptions import CommitFailedError

    check_retention(retention_hours, force=force)
    t0 = time.perf_counter()
    table = open_table(uri, storage_options=storage_options)
    if table is None:
        return VacuumResult(files_vacuumed=0, version=None, seconds=0.0, skipped="no table")
    keep: list[int] | None = None
    if keep_from_version is not None and keep_from_version <= table.version():
        keep = list(range(max(keep_from_version, 0), table.version() + 1))
        if len(keep) > MAX_PROTECTED_VERSIONS:
            skipped = f"a Change Data Feed follower has {len(keep)} versions to read"
            log.warning("vacuum skipped: %s", skipped, extra={"uri": uri})
            return VacuumResult(files_vacuumed=0, version=table.version(), seconds=0.0, skipped=skipped)
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            removed = table.vacuum(
                retention_hours=retention_hours,
                dry_run=False,
                enforce_retention_duration=False,  # our floor replaces the table's 7-day check
                keep_versions=keep,
                # Full: also files no commit ever named (a write that ended without its commit,
                # e.g. an ingest that found a bad message). Only past the floor, which no write
                # in flight is as old as: a forced shorter retention must not take its files.
                full=retention_hours >= MIN_RETENTION_HOURS,
            )
            break
        except CommitFailedError:
            log.warning("vacuum commit conflict, retrying", extra={"uri": uri, "attempt": attempt})
            table = open_table(uri, storage_options=storage_options)
    else:
        msg = f"vacuum of {uri} kept conflicting with other writers; it will run again"
        raise RuntimeError(msg)
    version = open_table(uri, storage_options=storage_options).version()
    return VacuumResult(files_vacuumed=len(removed), version=version, seconds=time.perf_counter() - t0)


def table_bytes(uri: str, *, storage_options: Mapping[str, str] | None = None) -> int:
    """Bytes of the data files in the table's current snapshot (0 if there is no table)."""
    import pyarrow as pa

    table = open_table(uri, storage_options=storage_options)
    if table is None:
        return 0
    actions = pa.table(table.get_add_actions(flatten=True))
    return int(pa.compute.sum(actions.column("size_bytes")).as_py() or 0) if actions.num_rows else 0


def read_seconds(uri: str, *, storage_options: Mapping[str, str] | None = None) -> float:
    """Seconds to scan every column of every file (best of two), with constant memory."""
    import polars as pl

    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        frame = pl.scan_delta(uri, storage_options=dict(storage_options or {}) or None)
        frame.select(pl.all().null_count()).collect(engine="streaming")
        best = min(best, time.perf_counter() - t0)
    return best


def maintain(
    uri: str,
    *,
    retention_hours: int = DEFAULT_RETENTION_HOURS,
    force: bool = False,
    keep_from_version: int | None = None,
    measure_reads: bool = True,
    storage_options: Mapping[str, str] | None = None,
) -> MaintenanceResult:
    """Compact + checkpoint, then vacuum; the numbers an operator needs before and after.

    The retention is checked first, so a refused one changes nothing.
    """
    check_retention(retention_hours, force=force)
    bytes_before = table_bytes(uri, storage_options=storage_options)
    measure = measure_reads and 0 < bytes_before <= MAX_MEASURED_BYTES
    read_before = read_seconds(uri, storage_options=storage_options) if measure else None
    compaction = compact(uri, storage_options=storage_options)
    vacuumed = vacuum(
        uri,
        retention_hours=retention_hours,
        force=force,
        keep_from_version=keep_from_version,
        storage_options=storage_options,
    )
    read_after = read_seconds(uri, storage_options=storage_options) if measure else None
    return MaintenanceResult(
        compaction=compaction,
        vacuum=vacuumed,
        bytes_before=bytes_before,
        bytes_after=table_bytes(uri, storage_options=storage_options),
        read_seconds_before=read_before,
        read_seconds_after=read_after,
    )
