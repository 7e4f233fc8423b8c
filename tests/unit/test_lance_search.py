"""Vector, full-text and hybrid search over real LanceDB tables, with freshness on every hit."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest

from freshlake.chunks import Chunk, Provenance
from freshlake.embed.models import HashEmbedder
from freshlake.lance.search import Document, Hit, search
from freshlake.lance.store import ChunkStore, ModelMismatchError
from freshlake.ordering import version_of

DIM = 64
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def make_embedder() -> HashEmbedder:
    return HashEmbedder(dimension=DIM)


FLIGHTS = [  # key, text, status, event age
    (
        "UA101",
        "Flight UA101 from Chicago to New York is cancelled due to a winter storm.",
        "cancelled",
        timedelta(seconds=4),
    ),
    (
        "DL202",
        "Flight DL202 from Atlanta to Boston is delayed 45 minutes because of crew.",
        "delayed",
        timedelta(minutes=3),
    ),
    (
        "AA303",
        "Flight AA303 from Dallas to Miami is on time, gate B12.",
        "on time",
        timedelta(hours=2),
    ),
    (
        "UA404",
        "Flight UA404 from Denver to Seattle is boarding at gate C3.",
        "boarding",
        timedelta(days=1, hours=1),
    ),
]
POLICIES = [
    (
        "baggage",
        "Economy fares include one carry-on bag and one personal item; checked bags cost 35 dollars.",
    ),
    ("refunds", "A cancelled flight entitles you to a full refund to the original payment method."),
    ("pets", "Small pets may travel in the cabin in an approved carrier under the seat."),
]


def provenance(version: int, event_time: datetime | None) -> Provenance:
    return Provenance(
        source_topic="t",
        source_partition=0,
        source_offset=version,
        source_version=version_of(f"{version:016x}", partition=0, offset=version),
        raw_delta_version=1,
        current_delta_version=1,
        event_time=event_time,
        ingested_at=event_time,
    )


def fill(store: ChunkStore, chunks: list[Chunk], embedder) -> None:
    store.apply(
        upserts=chunks,
        vectors=embedder.embed([c.text for c in chunks]),
        deletes_keys={},
        keep_counts={},
        embedder_name=embedder.model_name,
        embedder_version=embedder.model_version,
    )


@pytest.fixture
def embedder():
    return make_embedder()


@pytest.fixture
def stores(tmp_path, embedder) -> tuple[ChunkStore, ChunkStore]:
    uri = str(tmp_path / "lance")
    flights = ChunkStore(uri=uri, table_name="flights", dimension=DIM, attribute_fields=["status"])
    policies = ChunkStore(uri=uri, table_name="policies", dimension=DIM)
    fill(
        flights,
        [
            Chunk(
                stream="flights",
                key=key,
                chunk_index=0,
                text=text,
                attributes={"status": status},
                provenance=provenance(i + 1, NOW - age),
            )
            for i, (key, text, status, age) in enumerate(FLIGHTS)
        ],
        embedder,
    )
    fill(
        policies,
        [
            Chunk(
                stream="policies",
                key=key,
                chunk_index=0,
                text=text,
                provenance=provenance(i + 1, None),
            )
            for i, (key, text) in enumerate(POLICIES)
        ],
        embedder,
    )
    return flights, policies


@pytest.mark.parametrize("mode", ["vector", "fts", "hybrid"])
@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("is flight UA101 to New York cancelled", "UA101"),
        ("how much are checked bags on economy fares", "baggage"),
        ("can my pets travel in the cabin", "pets"),
    ],
)
def test_expected_document_first(stores, embedder, mode: str, query: str, expected: str) -> None:
    hits = search(stores=stores, embedder=embedder, query=query, mode=mode, k=3, now=NOW)
    assert hits and hits[0].key == expected
    assert all(isinstance(h, Document) for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_hybrid_fuses_across_tables(stores, embedder) -> None:
    hits = search(stores=stores, embedder=embedder, query="cancelled flight refund", k=5, now=NOW)
    assert {"UA101", "refunds"} <= {h.key for h in hits[:3]}
    assert {h.stream for h in hits} == {"flights", "policies"}
    assert len({h.chunk_id for h in hits}) == len(hits)


@pytest.mark.parametrize("mode", ["vector", "fts", "hybrid"])
def test_where_is_a_prefilter(stores, embedder, mode: str) -> None:
    flights, _ = stores
    hits = search(
        stores=[flights],
        embedder=embedder,
        query="flight cancelled winter storm New York",
        mode=mode,
        k=5,
        where="status = 'delayed'",
        now=NOW,
    )
    assert [h.key for h in hits] == ["DL202"]
    assert hits[0].attributes == {"status": "delayed"}


def test_hits_carry_provenance_and_age(stores, embedder) -> None:
    hits = search(stores=stores, embedder=embedder, query="flight", mode="vector", k=10, now=NOW)
    by_key = {h.key: h for h in hits}
    assert by_key["UA101"].age_seconds == pytest.approx(4.0)
    assert by_key["UA101"].as_of == "as of 4 s ago"
    assert by_key["DL202"].as_of == "as of 3 min ago"
    assert by_key["AA303"].as_of == "as of 2 h ago"
    assert by_key["UA404"].as_of == "as of 1 d ago"
    policy = by_key["pets"]  # no event time: age from embedded_at (real clock, so in the past)
    assert policy.age_seconds is not None and policy.provenance["event_time"] is None
    prov = by_key["UA101"].provenance
    assert prov["source_topic"] == "t" and prov["source_version"] == version_of(
        f"{1:016x}", partition=0, offset=1
    )
    assert prov["model_name"] == embedder.model_name
    assert prov["model_version"] == embedder.model_version
    assert prov["embedded_at"] is not None
    assert Hit(**{**by_key["UA101"].best.__dict__, "age_seconds": None}).as_of.startswith("as of")


def test_model_mismatch_is_refused(stores, embedder) -> None:
    class Other(HashEmbedder):
        model_version = "2"

    other = Other(dimension=DIM)
    with pytest.raises(ModelMismatchError, match="re-embed"):
        search(stores=stores, embedder=other, query="flight", mode="vector")
    with pytest.raises(ModelMismatchError):
        search(stores=stores, embedder=other, query="flight", mode="hybrid")


def test_missing_fts_index_falls_back_to_vector(stores, embedder, caplog) -> None:
    flights, _ = stores
    fts = next(ix for ix in flights.table.list_indices() if ix.index_type == "FTS")
    flights.table.drop_index(fts.name)
    fresh = ChunkStore(uri=flights.uri, table_name="flights", dimension=DIM)
    with caplog.at_level(logging.WARNING, logger="freshlake.lance.search"):
        hits = search(stores=[fresh], embedder=embedder, query="winter storm", k=2, now=NOW)
    assert hits and hits[0].key == "UA101"
    assert "no FTS index" in caplog.text
    assert search(stores=[fresh], embedder=embedder, query="storm", mode="fts") == []
    fresh.ensure_indexes()
    hits = search(stores=[fresh], embedder=embedder, query="winter storm", mode="fts", now=NOW)
    assert hits[0].key == "UA101"


def test_fresh_rows_are_searchable_without_optimize(stores, embedder) -> None:
    flights, _ = stores
    flights.ensure_indexes(min_rows_for_vector_index=1)
    reader = ChunkStore(uri=flights.uri, table_name="flights", dimension=DIM)
    assert search(stores=[reader], embedder=embedder, query="volcanic ash", mode="fts") == []
    fill(
        flights,
        [
            Chunk(
                stream="flights",
                key="BA909",
                chunk_index=0,
                text="Flight BA909 is diverted because of volcanic ash.",
                provenance=provenance(9, NOW),
            )
        ],
        embedder,
    )
    for mode in ("vector", "fts", "hybrid"):
        hits = search(stores=[reader], embedder=embedder, query="volcanic ash", mode=mode, k=1)
        assert hits[0].key == "BA909", mode


def test_empty_table_and_quotes_in_query(tmp_path, embedder) -> None:
    store = ChunkStore(uri=str(tmp_path / "lance"), table_name="empty", dimension=DIM)
    assert search(stores=[store], embedder=embedder, query='what\'s "up": (x)', k=3) == []
    with pytest.raises(ValueError, match="mode"):
        search(stores=[store], embedder=embedder, query="x", mode="semantic")  # type: ignore[arg-type]
