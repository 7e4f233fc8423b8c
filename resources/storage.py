"""Where the stores live: local paths by default, object storage URIs by configuration."""

from __future__ import annotations

import re

import dagster as dg
from pydantic import Field

from freshlake.errors import FreshlakeConfigError
from freshlake.ingest.raw import RawTables
from freshlake.settings import STORAGE_OPTIONS_ENV, storage_options, store_roots
from freshlake.streams import StreamSpec

_OBJECT_STORES = ("s3://", "s3a://", "gs://", "az://", "abfs://", "abfss://")


class StorageResource(dg.ConfigurableResource):
    """Delta and LanceDB roots; empty fields come from `FRESHLAKE_DELTA_URI` / `FRESHLAKE_HOME`,
    storage options from `FRESHLAKE_STORAGE_OPTIONS` (JSON). On S3, delta-rs 1.x commits with
    conditional puts (safe concurrent writers, no DynamoDB lock) where the store supports them."""

    delta_root: str | None = Field(default=None, description="path or s3:// gs:// az:// URI")
    lance_root: str | None = Field(default=None, description="path or s3:// gs:// az:// URI")
    storage_options: dict[str, str] = Field(
        default_factory=storage_options,
        description=f"delta-rs / LanceDB options (credentials, endpoint); default ${STORAGE_OPTIONS_ENV}",
    )

    def setup_for_execution(self, context) -> None:
        """On object storage, prove the store answers before the run touches a table: an
        unreachable one fails the run once, with the fix, after the options' bounded retries."""
        for root in {self.delta_root or store_roots()[0], self.lance_root or store_roots()[1]}:
            if root.startswith(_OBJECT_STORES):
                self.check_reachable(root)

    def check_reachable(self, root: str) -> None:
        from deltalake import DeltaTable

        try:
            DeltaTable.is_deltatable(
                f"{root.rstrip('/')}/_freshlake_probe", storage_options=self.storage_options
            )
        except OSError as exc:
            lines = re.sub(r"\x1b\[[0-9;]*m|↳", "", str(exc)).splitlines()
            reason = " ".join(line.strip() for line in lines if line.strip())[:400]
            options = self.storage_options
            endpoint = options.get("AWS_ENDPOINT_URL") or options.get("aws_endpoint")
            msg = (
                f"the object store for {root} is unreachable ({reason}): check that it is up and "
                f"that {STORAGE_OPTIONS_ENV} names the right endpoint"
                + (f" (now {endpoint})" if endpoint else "")
                + " and credentials, or point FRESHLAKE_DELTA_URI / FRESHLAKE_LANCE_URI elsewhere"
            )
            raise FreshlakeConfigError(msg) from None

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
