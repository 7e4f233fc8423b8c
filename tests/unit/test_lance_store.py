"""The LanceDB chunk store: guarded upserts, guarded deletes, shrinking documents (invariant 4)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from freshlake.chunks import Chunk, Provenance
from freshlake.embed.models import HashEmbedder
from freshlake.errors import FreshlakeConfigError
from freshlake.lance.store import ChunkStore, ModelMismatchError, chunk_schema, sql_literal
from freshlake.ordering import split_version, version_of

DIM = 32
T0 = datetime(2025, 6, 1, 8, 15, tzinfo=UTC)


EMBEDDER = HashEmbedder(dimension=DIM)


def v(n: int) -> str:
    """The version string of revision `n` (tests speak in revisions)."""
    return version_of(f"{n:016x}", partition=0, offset=n)


def chunk(key: str, index: int, text: str, *, version: int, status: str = "on time") -> Chunk:
    return Chunk(
        stream="flights",
        key=key,
        chunk_index=index,
        text=text,
        attributes={"status": status},
        provenance=Provenance(
            source_topic="flights",
            source_partition=0,
            source_offset=version,
            source_version=v(version),
            raw_delta_version=1,
            current_delta_version=2,
            event_time=T0,
            ingested_at=T0,
        ),
    )


def doc(key: str, n: int, *, version: int, word: str = "text") -> list[Chunk]:
    return [chunk(key, i, f"{key} {word} part {i} v{version}", version=version) for i in range(n)]


@pytest.fixture
def store(tmp_path) -> ChunkStore:
    return ChunkStore(
        uri=str(tmp_path / "lance"),
        table_name="flights",
        dimension=DIM,
        attribute_fields=["status"],
    )


def apply(
    store: ChunkStore,
    upserts: Sequence[Chunk] = (),
    *,
    deletes: dict[str, int] | None = None,
    keep: dict[str, tuple[int, int]] | None = None,
):
    vectors = EMBEDDER.embed([c.text for c in upserts]).reshape(len(upserts), DIM)
    return store.apply(
        upserts=upserts,
        vectors=vectors,
        deletes_keys={k: v(n) for k, n in (deletes or {}).items()},
        keep_counts={k: (count, v(n)) for k, (count, n) in (keep or {}).items()},
        embedder_name=EMBEDDER.model_name,
        embedder_version=EMBEDDER.model_version,
    )


def rows(store: ChunkStore) -> dict[str, dict]:
    table = store.table.search().select(["chunk_id", "text", "source_version", "status"])
    out = {r["chunk_id"]: r for r in table.to_arrow().to_pylist()}
    for r in out.values():  # back to the revision number
        r["source_version"] = split_version(r["source_version"])[2]
    return out


def test_schema_has_provenance_and_typed_vector() -> None:
    schema = chunk_schema(dimension=DIM, attribute_fields=["status", "origin"])
    assert schema.field("vector").type == pa.list_(pa.float32(), DIM)
    assert not schema.field("chunk_id").nullable
    assert schema.field("status").type == pa.string() and schema.field("status").nullable
    for name in ("raw_delta_version", "current_delta_version", "source_offset"):
        assert schema.field(name).type == pa.int64()
    assert schema.field("source_version").type == pa.string()  # compared as text
    assert schema.field("embedded_at").type == pa.timestamp("us", tz="UTC")
    with pytest.raises(FreshlakeConfigError, match="key"):
        chunk_schema(dimension=DIM, attribute_fields=["key"])


def test_upsert_then_newer_replaces(store: ChunkStore) -> None:
    first = apply(store, doc("UA1", 2, version=1))
    assert (first.rows_upserted, first.rows_deleted) == (2, 0)
    second = apply(store, doc("UA1", 2, version=5, word="delayed"))
    assert second.rows_upserted == 2 and second.version > first.version
    assert store.count() == 2
    assert {r["source_version"] for r in rows(store).values()} == {5}
    assert all("delayed" in r["text"] for r in rows(store).values())
    assert store.version == second.version
    assert store.latest_embedded_at() is not None


def test_older_version_never_overwrites_newer(store: ChunkStore) -> None:
    apply(store, doc("UA1", 2, version=9, word="newest"))
    stale = apply(store, doc("UA1", 3, version=4, word="stale"))  # longer, older document
    assert stale.rows_upserted == 0 and stale.rows_skipped == 3
    assert set(rows(store)) == {"flights:UA1:0", "flights:UA1:1"}
    assert all(r["source_version"] == 9 for r in rows(store).values())
    # the merge guard itself, without the key-level pre-filter: same ids, older rows
    tbl = store.table
    vectors = np.ones((2, DIM), np.float32) / DIM**0.5
    data = store._to_arrow(doc("UA1", 2, version=3), vectors, EMBEDDER.model_name, EMBEDDER.model_version)
    (
        tbl.merge_insert("chunk_id")
        .when_matched_update_all(where="target.source_version <= source.source_version")
        .when_not_matched_insert_all()
        .execute(data)
    )
    assert all(r["source_version"] == 9 for r in rows(store).values())


def test_replaying_the_same_version_is_idempotent(store: ChunkStore) -> None:
    apply(store, doc("UA1", 3, version=2))
    again = apply(store, doc("UA1", 3, version=2))
    assert store.count() == 3 and again.rows_skipped == 0


def test_delete_removes_key_but_not_newer_recreation(store: ChunkStore) -> None:
    apply(store, doc("UA1", 3, version=1) + doc("UA2", 2, version=1))
    result = apply(store, deletes={"UA1": 2})
    assert result.rows_deleted == 3
    assert set(rows(store)) == {"flights:UA2:0", "flights:UA2:1"}
    apply(store, doc("UA2", 2, version=7))  # re-created after the delete below was issued
    late = apply(store, deletes={"UA2": 5})
    assert late.rows_deleted == 0 and store.count() == 2


def test_delete_and_recreate_in_one_apply(store: ChunkStore) -> None:
    apply(store, doc("UA1", 2, version=1))
    result = apply(store, doc("UA1", 1, version=3), deletes={"UA1": 2}, keep={"UA1": (1, 3)})
    assert result.rows_deleted == 1  # chunk 1 (v1) goes by the trim, chunk 0 was rewritten at v3
    assert {r["source_version"] for r in rows(store).values()} == {3}


def test_document_shrinking_leaves_exactly_its_chunks(store: ChunkStore) -> None:
    apply(store, doc("UA1", 5, version=1) + doc("UA2", 4, version=1))
    result = apply(store, doc("UA1", 3, version=2), keep={"UA1": (3, 2)})
    assert result.rows_deleted == 2
    assert sorted(c for c in rows(store) if ":UA1:" in c) == [f"flights:UA1:{i}" for i in range(3)]
    assert store.count() == 7
    # a stale shrink (older version) removes nothing from the newer document
    assert apply(store, keep={"UA1": (1, 1)}).rows_deleted == 0


def test_a_trim_at_the_stored_version_removes_only_the_surplus(store: ChunkStore) -> None:
    apply(store, doc("UA1", 5, version=1))
    assert apply(store, keep={"UA1": (3, 1)}).rows_deleted == 2
    assert store.count() == 3


def test_a_new_version_rewrites_unchanged_chunks_so_a_late_delete_spares_them(store: ChunkStore) -> None:
    apply(store, doc("UA1", 3, version=5))
    # v9 changes chunk 1 only: chunk 0 is written again at v9 (its stored vector, not re-embedded)
    carried = chunk("UA1", 0, doc("UA1", 1, version=5)[0].text, version=9)
    changed = chunk("UA1", 1, "UA1 text part 1 changed", version=9)
    result = apply(store, [carried, changed], keep={"UA1": (2, 9)})
    assert result.rows_deleted == 1  # chunk 2 (v5) trimmed
    late = apply(store, deletes={"UA1": 7}, keep={"UA1": (1, 7)})  # older than the v9 document
    assert late.rows_deleted == 0
    assert {c: r["source_version"] for c, r in rows(store).items()} == {
        "flights:UA1:0": 9,
        "flights:UA1:1": 9,
    }
    assert apply(store, deletes={"UA1": 9}).rows_deleted == 2


def test_nothing_to_embed_accepts_no_vectors(store: ChunkStore) -> None:
    apply(store, doc("UA1", 2, version=1))
    result = store.apply(
        upserts=[],
        vectors=None,
        deletes_keys={"UA1": v(3), "never-stored": v(3)},
        keep_counts={},
        embedder_name=EMBEDDER.model_name,
        embedder_version=EMBEDDER.model_version,
    )
    assert result.rows_deleted == 2 and result.rows_upserted == 0
    with pytest.raises(ValueError, match="shape"):
        store.apply(
            upserts=doc("UA2", 2, version=1),
            vectors=np.zeros((1, DIM), np.float32),
            deletes_keys={},
            keep_counts={},
            embedder_name=EMBEDDER.model_name,
            embedder_version=EMBEDDER.model_version,
        )


def test_existing_hashes(store: ChunkStore) -> None:
    chunks = doc("UA1", 2, version=3) + doc("UA2", 1, version=4)
    apply(store, chunks)
    got = store.existing_hashes(["UA1", "UA2", "missing"])
    assert got == {c.chunk_id: (c.content_hash, c.provenance.source_version) for c in chunks}
    assert store.existing_hashes([]) == {}


def test_existing_hashes_many_keys(store: ChunkStore) -> None:
    chunks = [chunk(f"K{i}", 0, f"text {i}", version=1) for i in range(2_500)]
    apply(store, chunks)
    got = store.existing_hashes([f"K{i}" for i in range(0, 2_500, 2)])
    assert len(got) == 1_250


def test_keys_with_quotes_and_backslashes(store: ChunkStore) -> None:
    keys = ["O'Hare", "it''s", "back\\slash", "x' OR '1'='1"]
    apply(store, [chunk(k, 0, f"airport {k}", version=1) for k in keys] + doc("UA1", 1, version=1))
    assert set(store.existing_hashes(["O'Hare"])) == {"flights:O'Hare:0"}
    assert len(store.existing_hashes(keys)) == 4
    result = apply(store, deletes={"x' OR '1'='1": 2, "O'Hare": 2})
    assert result.rows_deleted == 2
    assert set(rows(store)) == {"flights:it''s:0", "flights:back\\slash:0", "flights:UA1:0"}
    assert sql_literal("a'b") == "'a''b'"


def test_indexes_then_upserts_stay_unique(store: ChunkStore) -> None:
    apply(store, doc("UA1", 3, version=1))
    report = store.ensure_indexes(min_rows_for_vector_index=1_000_000)
    assert "key:BTREE" in report["present"] + report["created"]
    assert "text:FTS" in report["present"]
    apply(store, doc("UA1", 3, version=2) + doc("UA3", 1, version=1))
    assert store.count() == 4
    again = store.ensure_indexes(min_rows_for_vector_index=1_000_000)
    assert again["created"] == [] and again["replaced"] == []
    stats = store.optimize()
    assert stats["rows"] == 4 and stats["fragments_after"] <= stats["fragments_before"]


def test_model_change_is_refused(store: ChunkStore) -> None:
    apply(store, doc("UA1", 1, version=1))
    with pytest.raises(ModelMismatchError, match="re-embed"):
        store.apply(
            upserts=doc("UA2", 1, version=1),
            vectors=np.ones((1, DIM), np.float32) / DIM**0.5,
            deletes_keys={},
            keep_counts={},
            embedder_name=EMBEDDER.model_name,
            embedder_version="2",
        )


def test_reopen_with_other_dimension_is_refused(store: ChunkStore, tmp_path) -> None:
    apply(store, doc("UA1", 1, version=1))
    other = ChunkStore(uri=str(tmp_path / "lance"), table_name="flights", dimension=DIM * 2)
    with pytest.raises(FreshlakeConfigError, match="new table name"):
        other.count()


def test_new_attribute_field_is_added_to_existing_table(store: ChunkStore, tmp_path) -> None:
    apply(store, doc("UA1", 1, version=1))
    wider = ChunkStore(
        uri=str(tmp_path / "lance"),
        table_name="flights",
        dimension=DIM,
        attribute_fields=["status", "origin"],
    )
    assert "origin" in wider.table.schema.names
    assert wider.count() == 1


def test_a_table_with_offset_versions_is_refused_with_the_fix(tmp_path) -> None:
    import lancedb

    old = chunk_schema(dimension=DIM, attribute_fields=[])
    old = old.set(old.get_field_index("source_version"), pa.field("source_version", pa.int64()))
    lancedb.connect(str(tmp_path / "lance")).create_table("flights", schema=old)
    store = ChunkStore(uri=str(tmp_path / "lance"), table_name="flights", dimension=DIM)
    with pytest.raises(FreshlakeConfigError, match="drop the table"):
        store.count()
