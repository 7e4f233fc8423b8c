"""Where the stores live: local paths by default, object storage URIs by configuration."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from freshlake.ingest.raw import RawTables
from freshlake.settings import store_roots
from freshlake.streams import StreamSpec


class StorageResource(dg.ConfigurableResource):
    """Delta and LanceDB roots; empty fields come from `FRESHLAKE_DELTA_URI` / `FRESHLAKE_HOME`."""

    delta_root: str | None = Field(default=None, description="path or s3:// gs:// az:// URI")
    lance_root: str | None = Field(default=None, description="path or s3:// gs:// az:// URI")
    storage_options: dict[str, str] = Field(
        default_factory=dict, description="delta-rs storage options (credentials, endpoints)"
    )

    def delta_uri(self, spec: StreamSpec | str, layer: str) -> str:
        root = (self.delta_root or store_roots()[0]).rstrip("/")
        name = spec if isinstance(spec, str) else spec.name
        return f"{root}/{name}/{layer}"

    def lance_uri(self) -> str:
        return (self.lance_root or store_roots()[1]).rstrip("/")

    def registry(self):
        from freshlake.lance.tables import TableRegistry

        return TableRegistry(uri=self.lance_uri(), storage_options=self.storage_options or None)

    def live_store(self, spec: StreamSpec):
        """The ChunkStore searches read for `spec`, or None before its first embeddings run."""
        from freshlake.lance.tables import live_store

        return live_store(uri=self.lance_uri(), spec=spec, storage_options=self.storage_options or None)

    def space_store(self, spec: StreamSpec, *, embedder):
        """The ChunkStore `embedder`'s vectors of `spec` go to (live, or being built)."""
        from freshlake.lance.tables import space_store

        return space_store(
            uri=self.lance_uri(),
            spec=spec,
            model_name=embedder.model_name,
            model_version=embedder.model_version,
            dimension=embedder.dimension,
            storage_options=self.storage_options or None,
        )

    def progress(self):
        from freshlake.lance.progress import Progress

        return Progress(uri=self.lance_uri(), storage_options=self.storage_options or None)

    def raw_tables(self, spec: StreamSpec) -> RawTables:
        return RawTables(
            raw=self.delta_uri(spec, "raw"),
            quarantine=self.delta_uri(spec, "quarantine"),
            storage_options=self.storage_options,
        )
