"""The search core on real LanceDB tables: documents by default, k only extends the list, RRF."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from freshlake.chunks import Chunk, Provenance
from freshlake.embed.models import HashEmbedder
from freshlake.lance.search import (
    CANDIDATES,
    RRF_K,
    Document,
    FreshlakeSearchError,
    Hit,
    search,
)
from freshlake.lance.store import ChunkStore
from freshlake.ordering import version_of

DIM = 64
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
WORDS = (
    "flight delayed cancelled refund baggage gate boarding storm crew voucher hotel seat upgrade "
    "lounge meal pets cabin passport visa compensation connection miles fare economy business"
).split()


def provenance(offset: int) -> Provenance:
    return Provenance(
        source_topic="t",
        source_partition=offset % 3,
        source_offset=offset,
        source_version=version_of(f"{offset:016x}", partition=offset % 3, offset=offset),
        raw_delta_version=1,
        current_delta_version=1,
        event_time=NOW - timedelta(seconds=offset),
        ingested_at=NOW,
    )


def fill(store: ChunkStore, chunks: list[Chunk], embedder: HashEmbedder) -> None:
    store.apply(
        upserts=chunks,
        vectors=embedder.embed([c.text for c in chunks]),
        deletes_keys={},
        keep_counts={},
        embedder_name=embedder.model_name,
        embedder_version=embedder.model_version,
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[list[ChunkStore], HashEmbedder]:
    """Two streams, 150 documents each of 1-4 chunks of random words (~750 chunks)."""
    embedder = HashEmbedder(dimension=DIM)
    uri = str(tmp_path_factory.mktemp("lance"))
    rng = random.Random(3)
    stores = []
    for stream in ("alpha", "beta"):
        store = ChunkStore(uri=uri, table_name=stream, dimension=DIM, attribute_fields=["kind"])
        chunks = [
            Chunk(
                stream=stream,
                key=f"{stream}-{d}",
                chunk_index=i,
                text=" ".join(rng.choices(WORDS, k=rng.randint(4, 12))),
                attributes={"kind": "even" if d % 2 == 0 else "odd"},
                provenance=provenance(d),
            )
            for d in range(150)
            for i in range(rng.randint(1, 4))
        ]
        fill(store, chunks, embedder)
        stores.append(store)
    return stores, embedder


def units(results) -> list[tuple[str, str]]:
    return [(r.stream, r.key) if isinstance(r, Document) else (r.stream, r.chunk_id) for r in results]


@pytest.mark.parametrize("mode", ["vector", "fts", "hybrid"])
@pytest.mark.parametrize("chunks", [False, True])
def test_a_larger_k_only_extends_the_list(corpus, mode: str, chunks: bool) -> None:
    stores, embedder = corpus
    for query in ("cancelled flight refund", "pets in the cabin", "storm delayed crew hotel voucher"):
        lists = {
            k: units(
                search(stores=stores, embedder=embedder, query=query, mode=mode, k=k, chunks=chunks, now=NOW)
            )
            for k in (1, 5, 10, 20, 60, 120, 250)
        }
        longest = lists[250]
        assert len(set(longest)) == len(longest)  # distinct documents (or chunks)
        assert len(longest) > 60  # the deep case reads past the first CANDIDATES rows
        for k, got in lists.items():
            assert got == longest[: len(got)], (query, mode, k)
            assert len(got) == min(k, len(longest))


def test_k_counts_documents_and_each_carries_its_matching_chunks(corpus) -> None:
    stores, embedder = corpus
    docs = search(stores=stores, embedder=embedder, query="refund baggage voucher", k=10, now=NOW)
    assert len(docs) == 10 and len({(d.stream, d.key) for d in docs}) == 10
    assert all(isinstance(d, Document) and d.passages[0] is d.best for d in docs)
    assert any(len(d.passages) > 1 for d in docs)  # multi-chunk documents come back whole
    for d in docs:
        assert {(p.stream, p.key) for p in d.passages} == {(d.stream, d.key)}
        assert [p.score for p in d.passages] == sorted((p.score for p in d.passages), reverse=True)
        assert d.score == d.best.score and d.text == d.best.text and d.chunk_id == d.best.chunk_id
        assert d.provenance["source_topic"] == "t" and d.age_seconds == d.best.age_seconds
        assert d.as_of.startswith("as of")
    assert [d.score for d in docs] == sorted((d.score for d in docs), reverse=True)
    hits = search(stores=stores, embedder=embedder, query="refund baggage voucher", k=60, chunks=True)
    assert len(hits) == 60 and all(isinstance(h, Hit) for h in hits)
    by_document = list(dict.fromkeys((h.stream, h.key) for h in hits))
    assert len(by_document) < 60  # chunk hits repeat documents...
    assert by_document[:10] == [(d.stream, d.key) for d in docs]  # ...ranked where their best chunk is


def test_rrf_is_one_over_sixty_plus_rank_from_one(tmp_path) -> None:
    embedder = HashEmbedder(dimension=DIM)
    store = ChunkStore(uri=str(tmp_path), table_name="one", dimension=DIM)
    texts = ["volcanic ash diverted", "gate change boarding", "meal voucher hotel"]
    fill(
        store,
        [
            Chunk(stream="one", key=str(i), chunk_index=0, text=t, provenance=provenance(i))
            for i, t in enumerate(texts)
        ],
        embedder,
    )
    assert RRF_K == 60 and CANDIDATES == 100
    (top,) = search(stores=[store], embedder=embedder, query="volcanic ash diverted", k=1, chunks=True)
    assert top.key == "0" and top.score == pytest.approx(2 / (RRF_K + 1))  # first in both lists


def test_candidates_is_a_setting_not_k(corpus) -> None:
    stores, embedder = corpus
    shallow = search(stores=stores, embedder=embedder, query="seat upgrade lounge", k=5, candidates=5)
    assert len(shallow) == 5  # read deeper when 5 rows per list hold fewer than 5 documents
    with pytest.raises(FreshlakeSearchError, match="candidates"):
        search(stores=stores, embedder=embedder, query="seat", candidates=0)


@pytest.mark.parametrize("mode", ["vector", "fts", "hybrid"])
def test_a_bad_where_names_the_columns(corpus, mode: str) -> None:
    stores, embedder = corpus
    for where in ("kind = ", "nope = 1", "kind"):
        with pytest.raises(FreshlakeSearchError, match=r"where .* cannot be evaluated.*kind"):
            search(stores=stores, embedder=embedder, query="flight", mode=mode, where=where)
    docs = search(stores=stores, embedder=embedder, query="flight", mode=mode, k=50, where="kind = 'odd'")
    assert docs and all(d.attributes["kind"] == "odd" for d in docs)
