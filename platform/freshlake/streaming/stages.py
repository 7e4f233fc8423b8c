"""One stream's stores as a run writes them: the same stage functions every launch path calls.

A streaming run keeps this object for its whole life, so the LanceDB table handle and the model
stay open across micro-batches; a run per batch builds one per run. The progress marks and the
table registry are re-read on every pass (other runs move them).
"""

from __future__ import annotations

from collections.abc import Collection
from functools import cached_property
from typing import Any

from freshlake.streams import StreamSpec


class StreamStores:
    """`storage` is anything with `StorageResource`'s methods (`delta_uri`, `raw_tables`,
    `space_store`, `progress`, `registry`, `storage_options`); `embedder` is needed to `sync`."""

    def __init__(self, *, spec: StreamSpec, storage: Any, embedder: Any = None) -> None:
        self.spec = spec
        self.storage = storage
        self.embedder = embedder

    @cached_property
    def raw(self):  # freshlake.ingest.raw.RawTables
        return self.storage.raw_tables(self.spec)

    @property
    def storage_options(self) -> dict[str, str]:
        return self.storage.storage_options

    @cached_property
    def current_uris(self) -> dict[str, str]:
        """The stream's `current` table and its enrichment's, by stream name."""
        document = self.spec.document
        streams = [self.spec.name] + ([document.enrich.stream] if document and document.enrich else [])
        return {s: self.storage.delta_uri(s, "current") for s in streams}

    @cached_property
    def store(self):  # freshlake.lance.store.ChunkStore, opened once
        return self.storage.space_store(self.spec, embedder=self.embedder)

    def fold(self):
        """Raw commits not folded yet -> `current` (freshlake.delta.current.FoldResult)."""
        from freshlake.delta.current import fold_into_current

        return fold_into_current(
            spec=self.spec,
            raw_uri=self.raw.raw,
            current_uri=self.current_uris[self.spec.name],
            storage_options=self.storage_options,
        )

    def sync(self, *, keys: Collection[str] | None = None):
        """`current` changes (or just `keys`, a backfill) -> LanceDB (freshlake.lance.sync.SyncResult)."""
        from freshlake.embed.chunking import ChunkerSettings
        from freshlake.lance.sync import sync_embeddings

        return sync_embeddings(
            spec=self.spec,
            current_uris=self.current_uris,
            store=self.store,
            embedder=self.embedder,
            chunker=ChunkerSettings(),
            progress=self.storage.progress(),
            storage_options=self.storage_options,
            registry=self.storage.registry(),
            keys=keys,
        )
