"""Which LanceDB table serves each stream: one physical table per vector space, one alias.

A vector space is (model name, model version); the version carries the precision. A new model
or precision is embedded into a new table `<stream>__<space>` while searches keep using the live
one; when the new table holds every document, the alias is swapped in one LanceDB commit. A
search therefore reads one table per stream, never a half re-embedded mix of two spaces.
Retired tables stay for `RETIRED_GRACE` so searches that resolved the alias just before the
swap finish, and are dropped by maintenance afterwards.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pyarrow as pa

TABLE = "_freshlake_tables"
RETIRED_GRACE = timedelta(hours=1)
SCHEMA = pa.schema(
    [
        pa.field("stream", pa.string(), nullable=False),
        pa.field("table_name", pa.string(), nullable=False),
        pa.field("model_name", pa.string(), nullable=False),
        pa.field("model_version", pa.string(), nullable=False),
        pa.field("dimension", pa.int32(), nullable=False),
        pa.field("live", pa.bool_(), nullable=False),
        pa.field("changed_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)
_SLUG = re.compile(r"[^a-z0-9]+")


def space_table_name(stream: str, *, model_name: str, model_version: str) -> str:
    """`<stream>__<readable model slug>_<hash>`: stable per vector space, safe as a table name."""
    slug = _SLUG.sub("_", f"{model_name}_{model_version}".lower()).strip("_")[:40]
    digest = hashlib.sha1(f"{model_name}\0{model_version}".encode()).hexdigest()[:8]
    return f"{stream}__{slug}_{digest}"


@dataclass(frozen=True, kw_only=True)
class TableEntry:
    stream: str
    table_name: str
    model_name: str
    model_version: str
    dimension: int
    live: bool
    changed_at: datetime


class TableRegistry:
    """The alias table under a LanceDB root. Reads are one small scan; a swap is one commit."""

    def __init__(self, *, uri: str, storage_options: Mapping[str, str] | None = None) -> None:
        self._uri = uri
        self._storage_options = dict(storage_options or {})
        self._db = None

    def _connect(self):
        if self._db is None:
            import lancedb

            self._db = lancedb.connect(
                self._uri,
                storage_options=self._storage_options or None,
                read_consistency_interval=timedelta(0),
            )
        return self._db

    def _table(self):
        return self._connect().create_table(TABLE, schema=SCHEMA, exist_ok=True)

    def _names(self) -> list[str]:
        names, token = [], None
        while True:
            page = self._connect().list_tables(page_token=token, limit=1000)
            names += page.tables
            token = page.page_token
            if not token:
                return names

    def entries(self, stream: str | None = None) -> list[TableEntry]:
        if TABLE not in self._names():
            return []
        rows = self._table().to_arrow().to_pylist()
        return [TableEntry(**r) for r in rows if stream is None or r["stream"] == stream]

    def live(self, stream: str) -> TableEntry | None:
        return next((e for e in self.entries(stream) if e.live), None)

    def retired(
        self, *, older_than: timedelta = RETIRED_GRACE, now: datetime | None = None
    ) -> list[TableEntry]:
        """Tables no longer live for longer than `older_than`: safe to drop."""
        cutoff = (now or datetime.now(UTC)) - older_than
        return [e for e in self.entries() if not e.live and e.changed_at <= cutoff]

    def swap(
        self, stream: str, *, table_name: str, model_name: str, model_version: str, dimension: int
    ) -> None:
        """Make `table_name` the stream's live table (and retire the previous one) in one commit."""
        now = datetime.now(UTC)
        rows = [
            {
                "stream": stream,
                "table_name": table_name,
                "model_name": model_name,
                "model_version": model_version,
                "dimension": dimension,
                "live": True,
                "changed_at": now,
            }
        ]
        rows += [
            {**e.__dict__, "live": False, "changed_at": now}
            for e in self.entries(stream)
            if e.live and e.table_name != table_name
        ]
        data = pa.Table.from_pylist(rows, schema=SCHEMA)
        self._table().merge_insert(
            "table_name"
        ).when_matched_update_all().when_not_matched_insert_all().execute(data)

    def forget(self, table_name: str) -> None:
        """Drop a retired table and its entry (maintenance, after the grace period)."""
        db = self._connect()
        if any(e.live and e.table_name == table_name for e in self.entries()):
            msg = f"{table_name} is live: swap another table in before dropping it"
            raise ValueError(msg)
        if table_name in self._names():
            db.drop_table(table_name)
        quoted = table_name.replace("'", "''")
        self._table().delete(f"table_name = '{quoted}'")


def live_store(*, uri: str, spec, storage_options: Mapping[str, str] | None = None, registry=None):
    """The ChunkStore searches read for `spec` (a StreamSpec), or None before the first swap."""
    from freshlake.lance.store import ChunkStore

    entry = (registry or TableRegistry(uri=uri, storage_options=storage_options)).live(spec.name)
    if entry is None:
        return None
    return ChunkStore(
        uri=uri,
        table_name=entry.table_name,
        dimension=entry.dimension,
        attribute_fields=spec.document.attributes if spec.document else (),
        storage_options=storage_options,
    )


def space_store(
    *,
    uri: str,
    spec,
    model_name: str,
    model_version: str,
    dimension: int,
    storage_options: Mapping[str, str] | None = None,
):
    """The ChunkStore of `spec`'s documents in one vector space (what a writer fills)."""
    from freshlake.lance.store import ChunkStore

    return ChunkStore(
        uri=uri,
        table_name=space_table_name(spec.name, model_name=model_name, model_version=model_version),
        dimension=dimension,
        attribute_fields=spec.document.attributes if spec.document else (),
        storage_options=storage_options,
    )


def live_table_name(*, uri: str, stream: str, storage_options: Mapping[str, str] | None = None) -> str | None:
    """The physical table searches read for `stream`, or None before its first embeddings run."""
    entry = TableRegistry(uri=uri, storage_options=storage_options).live(stream)
    return None if entry is None else entry.table_name
