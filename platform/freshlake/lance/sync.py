"""`<stream>/embeddings`: keep a LanceDB table in step with `current` (invariants 4-6).

Reads only the keys of `current` that changed since the last pass (its Change Data Feed), plus,
for an enriched stream, the keys whose joined row changed (a booking whose flight was cancelled).
Each document is rendered, chunked with the model's tokenizer and hashed; only chunks whose hash
changed are embedded. Deleted keys lose their chunks; shrunk documents lose their surplus chunks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

from freshlake.chunks import Chunk, Provenance
from freshlake.delta.current import current_changes
from freshlake.documents import render
from freshlake.embed.base import Embedder
from freshlake.lance.progress import Progress
from freshlake.streams import StreamSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class SyncResult:
    keys_upserted: int
    keys_deleted: int
    chunks_total: int
    chunks_embedded: int
    chunks_skipped_unchanged: int
    rows_deleted: int
    embed_seconds: float
    lance_version: int | None
    current_version: int | None
    newest_event_time: datetime | None
    table_name: str = ""
    swapped: bool = False  # this pass filled a new table (model change) and made it live
    chunks_carried: int = 0  # unchanged chunks written again at the new version (not embedded)

    @property
    def embed_rate(self) -> float:
        return self.chunks_embedded / self.embed_seconds if self.embed_seconds > 0 else 0.0


def _rows(table: pa.Table | None) -> list[dict[str, Any]]:
    return [] if table is None or table.num_rows == 0 else table.to_pylist()


def _scan(uri: str, *, storage_options: Mapping[str, str] | None):
    """A lazy scan of a `current` table, or None when it has no table yet (a stream not
    materialized: its documents render without it until it arrives)."""
    import polars as pl

    from freshlake.delta.tables import open_table

    table = open_table(uri, storage_options=storage_options)
    return None if table is None else pl.scan_delta(table)


def _all_current_rows(
    uri: str, *, keys: Sequence[str], storage_options: Mapping[str, str] | None
) -> list[dict]:
    """The rows of `current` for `keys`, deleted ones included (they delete chunks)."""
    import polars as pl

    scan = _scan(uri, storage_options=storage_options) if keys else None
    if scan is None:
        return []
    return scan.filter(pl.col("key").is_in(list(keys))).collect().to_dicts()


def deleted_versions(
    uri: str, *, keys: Sequence[str], storage_options: Mapping[str, str] | None = None
) -> dict[str, str]:
    """key -> version of its delete, for the `keys` that `current` holds as deleted now."""
    import polars as pl

    scan = _scan(uri, storage_options=storage_options) if keys else None
    if scan is None:
        return {}
    frame = scan.filter(pl.col("key").is_in(list(keys)) & pl.col("is_deleted")).select("key", "version")
    return dict(frame.collect().iter_rows())


def deletes_in(
    uri: str, *, storage_options: Mapping[str, str] | None = None
) -> Callable[[Sequence[str]], dict[str, str]]:
    """`deleted_versions` of one `current` table, in the shape `ChunkStore.apply` calls it."""
    return lambda keys: deleted_versions(uri, keys=keys, storage_options=storage_options)


def document_version(row: Mapping[str, Any], joined: Mapping[str, Any] | None) -> str:
    """The order of a document: its row's version, then the joined row's (`/` between), so a
    re-render for a newer flight outranks the booking's older render, and no render is lost to
    an older one (the joined row is included when deleted: its absence is then newer)."""
    return row["version"] if joined is None else f"{row['version']}/{joined['version']}"


def backfill_keys(
    *,
    spec: StreamSpec,
    window,  # freshlake.partitions.TimeWindow
    raw_uris: Mapping[str, str],
    current_uris: Mapping[str, str],
    storage_options: Mapping[str, str] | None = None,
) -> set[str]:
    """The documents of `spec` a time window touched: keys with raw events in it, and for an
    enriched stream the keys joined to a row of the other stream with events in it."""
    from freshlake.delta.windows import window_keys

    keys = window_keys(raw_uris[spec.name], window=window, storage_options=storage_options)
    enrich = spec.document.enrich if spec.document else None
    if enrich is not None:
        import polars as pl

        from freshlake.delta.tables import open_table

        moved = window_keys(raw_uris[enrich.stream], window=window, storage_options=storage_options)
        table = open_table(current_uris[spec.name], storage_options=storage_options)
        if moved and table is not None:
            joined = pl.scan_delta(table).filter(pl.col(enrich.on).is_in(list(moved))).select("key").collect()
            keys |= set(joined.get_column("key").to_list())
    return keys


def render_version(spec: StreamSpec, chunker) -> str:
    """What shapes chunk texts: a new one re-renders every document (hash skip keeps the cost
    to the chunks whose text really changed)."""
    assert spec.document is not None
    return f"{chunker.version}|template-{spec.document.version}"


def follow_marks(spec: StreamSpec, *, table_name: str, chunker) -> dict[str, str]:
    """Stream -> name of the progress mark with which `table_name` follows that stream's
    `current` Change Data Feed (this stream's, and the enrichment stream's)."""
    assert spec.document is not None
    version = render_version(spec, chunker)
    streams = [spec.name] + ([spec.document.enrich.stream] if spec.document.enrich else [])
    return {s: f"{table_name}<-{s}@{version}" for s in streams}


def oldest_unread_current_versions(
    specs: Sequence[StreamSpec], *, live: Mapping[str, str], progress: Progress, chunker
) -> dict[str, int]:
    """Stream -> the oldest `current` version a live embeddings table has yet to read (vacuum
    keeps its files). `live` maps embedded stream -> its live table name."""
    oldest: dict[str, int] = {}
    for spec in specs:
        if spec.document is None or spec.name not in live:
            continue
        for stream, mark in follow_marks(spec, table_name=live[spec.name], chunker=chunker).items():
            read = progress.get(mark)
            if read is not None:  # None: the next pass reads the latest snapshot, no history
                oldest[stream] = min(read + 1, oldest.get(stream, read + 1))
    return oldest


def sync_embeddings(
    *,
    spec: StreamSpec,
    current_uris: Mapping[str, str],
    store,  # freshlake.lance.store.ChunkStore
    embedder: Embedder,
    chunker,  # freshlake.embed.chunking.ChunkerSettings
    progress: Progress,
    storage_options: Mapping[str, str] | None = None,
    registry=None,  # freshlake.lance.tables.TableRegistry
    keys: Collection[str] | None = None,
) -> SyncResult:
    """Bring `spec`'s embeddings table up to date with its `current` table (and the joined one).

    `current_uris` maps stream name -> current table URI, for this stream and its enrichment.
    `keys` re-derives just those documents (a backfill) and leaves the incremental marks alone.
    With a `registry`, a `store` that is not the stream's live table (a new model or precision)
    is first filled with every document, then swapped in: `keys` is ignored until then.
    """
    document = spec.document
    if document is None:
        msg = f"stream {spec.name!r} has no document spec: nothing to embed"
        raise ValueError(msg)
    live = registry.live(spec.name) if registry is not None else None
    building = registry is not None and (live is None or live.table_name != store.table_name)
    names = follow_marks(spec, table_name=store.table_name, chunker=chunker)
    mark = names[spec.name]
    read_at = store.version  # before `current` is read: `apply` checks for writers since then
    known = {name: progress.get(name) for name in names.values()}
    if any(v is not None for v in known.values()) and store.count() == 0 and keys is None:
        # the table was dropped (or emptied) behind the marks: follow `current` from scratch
        log.warning("embeddings table is empty: re-deriving it", extra={"table": store.table_name})
        known = dict.fromkeys(known)
    rows: dict[str, dict] = {}
    marks: dict[str, int | None] = {}
    joined: dict[str, dict] = {}
    if keys is not None and not building:
        rows = {
            r["key"]: r
            for r in _all_current_rows(
                current_uris[spec.name], keys=sorted(keys), storage_options=storage_options
            )
        }
        from freshlake.delta.tables import open_table

        table = open_table(current_uris[spec.name], storage_options=storage_options)
        latest = table.version() if table is not None else None
    else:
        changed, latest = current_changes(
            current_uris[spec.name], after=known[mark], storage_options=storage_options
        )
        rows = {r["key"]: r for r in _rows(changed)}
        marks[mark] = latest

    if document.enrich is not None:
        other = document.enrich
        if keys is None or building:
            other_mark = names[other.stream]
            other_changed, other_latest = current_changes(
                current_uris[other.stream], after=known[other_mark], storage_options=storage_options
            )
            marks[other_mark] = other_latest
            moved = {r["key"] for r in _rows(other_changed)}
            scan = _scan(current_uris[spec.name], storage_options=storage_options)
            if moved and known[mark] is not None and scan is not None:  # a first pass renders all
                import polars as pl

                affected = scan.filter(pl.col(other.on).is_in(list(moved)) & ~pl.col("is_deleted"))
                for row in affected.collect().to_dicts():
                    rows.setdefault(row["key"], row)
        wanted = {str(r[other.on]) for r in rows.values() if not r["is_deleted"] and r.get(other.on)}
        joined = {
            r["key"]: r
            for r in _all_current_rows(
                current_uris[other.stream], keys=sorted(wanted), storage_options=storage_options
            )
        }

    deletes: dict[str, str] = {}
    keep: dict[str, tuple[int, str]] = {}
    chunks: list[Chunk] = []
    for key, row in rows.items():
        if row["is_deleted"]:
            deletes[key] = row["version"]
            continue
        join = joined.get(str(row.get(document.enrich.on))) if document.enrich else None
        version = document_version(row, join)
        live_join = None if join is None or join["is_deleted"] else join
        texts = chunker.chunk(render(document, row=row, joined=live_join))
        provenance = Provenance(
            source_topic=row["source_topic"],
            source_partition=row["source_partition"],
            source_offset=row["source_offset"],
            source_version=version,
            raw_delta_version=row["raw_delta_version"],
            current_delta_version=latest if latest is not None else -1,
            event_time=row.get("event_time"),
            ingested_at=row.get("ingested_at"),
        )
        attributes = {a: None if row.get(a) is None else str(row[a]) for a in document.attributes}
        chunks.extend(
            Chunk(
                stream=spec.name,
                key=key,
                chunk_index=i,
                text=text,
                provenance=provenance,
                attributes=attributes,
            )
            for i, text in enumerate(texts)
        )
        keep[key] = (len(texts), version)

    # Every chunk of a new document version is written with that version: changed chunks are
    # embedded, unchanged ones carry their stored vector; chunks stored at this very version
    # and text (a replay) are not written at all.
    existing = store.existing_chunks(sorted(keep)) if keep else {}
    todo: list[Chunk] = []
    carried: list[Chunk] = []
    for c in chunks:
        stored = existing.get(c.chunk_id)
        if stored is None or stored.content_hash != c.content_hash:
            todo.append(c)
        elif stored.source_version != c.provenance.source_version:
            carried.append(replace(c, embedded_at=stored.embedded_at))
    t0 = time.perf_counter()
    fresh = embedder.embed([c.text for c in todo]) if todo else None
    embed_seconds = time.perf_counter() - t0
    vectors = None
    if todo or carried:
        parts = [np.asarray(fresh, np.float32).reshape(len(todo), store.dimension)] if todo else []
        if carried:
            parts.append(np.stack([existing[c.chunk_id].vector for c in carried]).astype(np.float32))
        vectors = np.concatenate(parts)
    result = store.apply(
        upserts=[*todo, *carried],
        vectors=vectors,
        deletes_keys=deletes,
        keep_counts=keep,
        embedder_name=embedder.model_name,
        embedder_version=embedder.model_version,
        read_at=read_at,
        deleted_in_current=deletes_in(current_uris[spec.name], storage_options=storage_options),
    )
    progress.set(marks)
    if building:
        registry.swap(
            spec.name,
            table_name=store.table_name,
            model_name=embedder.model_name,
            model_version=embedder.model_version,
            dimension=embedder.dimension,
        )
        log.info("embeddings table swapped in", extra={"stream": spec.name, "table": store.table_name})
    event_times = [c.provenance.event_time for c in chunks if c.provenance.event_time is not None]
    sync = SyncResult(
        keys_upserted=len(keep),
        keys_deleted=len(deletes),
        chunks_total=len(chunks),
        chunks_embedded=len(todo),
        chunks_skipped_unchanged=len(chunks) - len(todo),
        chunks_carried=len(carried),
        rows_deleted=result.rows_deleted,
        embed_seconds=embed_seconds,
        lance_version=result.version,
        current_version=latest,
        newest_event_time=max(event_times) if event_times else None,
        table_name=store.table_name,
        swapped=building,
    )
    log.info(
        "embeddings synced",
        extra={
            "stream": spec.name,
            "embedded": sync.chunks_embedded,
            "skipped": sync.chunks_skipped_unchanged,
            "deleted_keys": sync.keys_deleted,
        },
    )
    return sync
