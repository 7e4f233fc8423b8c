"""How far each embeddings table has followed its `current` tables, kept next to the vectors.

It is a hint that saves work, not the truth: losing it (or a crash between the vector write and
this update) only re-reads changes, and their unchanged content hashes are not re-embedded.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

TABLE = "_freshlake_progress"
SCHEMA = pa.schema([pa.field("name", pa.string(), nullable=False), pa.field("version", pa.int64())])


class Progress:
    def __init__(self, *, uri: str, storage_options: Mapping[str, str] | None = None) -> None:
        self._uri = uri
        self._storage_options = dict(storage_options or {})
        self._table = None

    def _open(self):
        if self._table is None:
            import lancedb

            db = lancedb.connect(self._uri, storage_options=self._storage_options or None)
            self._table = db.create_table(TABLE, schema=SCHEMA, exist_ok=True)
        return self._table

    def get(self, name: str) -> int | None:
        table = self._open()
        quoted = name.replace("'", "''")
        rows = table.search().where(f"name = '{quoted}'").select(["version"]).limit(1).to_list()
        return rows[0]["version"] if rows else None

    def set(self, values: Mapping[str, int | None]) -> None:
        if not values:
            return
        data = pa.Table.from_pylist([{"name": k, "version": v} for k, v in values.items()], schema=SCHEMA)
        (
            self._open()
            .merge_insert("name")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute(data)
        )

    def clear(self) -> None:
        """Forget every mark: the next pass re-reads all of `current` (unchanged chunks are
        still not re-embedded)."""
        self._open().delete("true")
