"""Keeping Delta tables healthy: compaction of small files and checkpoints.

Compaction rewrites data files but carries no app transactions, and the txn versions live in the
log (checkpoints keep them), so what was ingested stays exactly what it was.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from freshlake.delta.tables import COMMIT_ATTEMPTS, open_table

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class CompactionResult:
    uri: str
    files_before: int
    files_after: int
    files_removed: int
    files_added: int
    version: int | None
    seconds: float


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
