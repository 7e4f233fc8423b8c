"""LanceDB maintenance: compaction, old versions, index upkeep and rebuilds, measured before/after."""

from __future__ import annotations

from datetime import timedelta

import pytest

from freshlake.chunks import Chunk, Provenance
from freshlake.embed.models import HashEmbedder
from freshlake.errors import FreshlakeConfigError
from freshlake.lance.store import ChunkStore

EMBEDDER = HashEmbedder(dimension=64)


def provenance(version: int) -> Provenance:
    return Provenance(
        source_topic="flights",
        source_partition=0,
        source_offset=version,
        source_version=f"{version:016x}",  # a sortable version string
        raw_delta_version=0,
        current_delta_version=0,
        event_time=None,
        ingested_at=None,
    )


def write(store: ChunkStore, first: int, count: int, *, per_doc: int = 1) -> None:
    """`count` documents from key `first` in one apply: one new fragment."""
    chunks = [
        Chunk(
            stream="flights",
            key=f"UA{key}",
            chunk_index=i,
            text=f"flight UA{key} to city {key % 37} gate {key % 11} part {i}",
            provenance=provenance(key),
        )
        for key in range(first, first + count)
        for i in range(per_doc)
    ]
    store.apply(
        upserts=chunks,
        vectors=EMBEDDER.embed([c.text for c in chunks]),
        deletes_keys={},
        keep_counts={},
        embedder_name=EMBEDDER.model_name,
        embedder_version=EMBEDDER.model_version,
    )


@pytest.fixture
def store(tmp_path) -> ChunkStore:
    return ChunkStore(uri=str(tmp_path / "lance"), table_name="flights", dimension=EMBEDDER.dimension)


def test_maintain_compacts_cleans_up_and_measures(store: ChunkStore) -> None:
    for batch in range(30):
        write(store, batch * 2, 2)
    ids_before = sorted(store.table.search().select(["chunk_id"]).to_arrow().column("chunk_id").to_pylist())

    result = store.maintain(cleanup_older_than=timedelta(0), force_cleanup=True, sample_queries=12)

    assert result["rows"] == 60
    assert result["fragments_before"] == 30 and result["fragments_after"] == 1
    assert result["versions_after"] < result["versions_before"]
    assert result["search_p95_ms_before"] > 0 and result["search_p95_ms_after"] > 0
    assert result["recall_at_10"] is None and result["index_rebuilt"] is None  # no vector index yet
    assert sum(result["unindexed_rows_before"].values()) > 0 and result["unindexed_rows"] == {}
    assert "chunk_id:BTREE" in result["indexes_created"]
    ids_after = sorted(store.table.search().select(["chunk_id"]).to_arrow().column("chunk_id").to_pylist())
    assert ids_after == ids_before


def test_cleanup_below_the_floor_is_refused(store: ChunkStore) -> None:
    write(store, 0, 2)
    write(store, 2, 2)
    with pytest.raises(FreshlakeConfigError, match="below the 1:00:00 floor"):
        store.maintain(cleanup_older_than=timedelta(minutes=5))
    assert store.table.stats()["fragment_stats"]["num_fragments"] == 2


def test_vector_index_is_rebuilt_when_many_rows_are_unindexed(store: ChunkStore) -> None:
    write(store, 0, 300)
    first = store.maintain(min_rows_for_vector_index=200, sample_queries=10)
    assert "vector:IVF_SQ" in first["indexes_created"]
    assert first["recall_at_10"] >= 0.9 and first["index_rebuilt"] is None

    write(store, 300, 200)  # 40 % of the rows are not in the index
    second = store.maintain(min_rows_for_vector_index=200, sample_queries=10)

    assert second["unindexed_rows_before"]["vector_idx"] == 200
    assert second["index_rebuilt"] == "unindexed"
    assert store.table.index_stats("vector_idx").num_indexed_rows == 500
    assert second["recall_at_10"] >= 0.9


def test_vector_index_is_rebuilt_when_recall_is_low(store: ChunkStore) -> None:
    write(store, 0, 300)
    store.maintain(min_rows_for_vector_index=200, sample_queries=10)
    write(store, 300, 10)  # 3 % new rows: folded in incrementally, no rebuild for that

    result = store.maintain(min_rows_for_vector_index=200, sample_queries=10, min_recall=1.01)

    assert result["index_rebuilt"] == "recall"
    assert result["recall_at_10"] is not None
