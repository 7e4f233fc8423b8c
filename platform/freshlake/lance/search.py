"""Search one or more stream tables by vector, full text, or both (hybrid, fused by RRF).

Fusion is done here, over the global result lists, so a hybrid query across several stream
tables ranks all of them together. Every hit says how fresh it is (`age_seconds`, `as_of`).
A table without an FTS index contributes no full-text hits (logged), so hybrid degrades to
vector-only rather than failing; tables get their FTS index when created, so this is rare.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from freshlake.lance.store import PROVENANCE_COLUMNS, VECTOR_REFINE_FACTOR, ChunkStore

if TYPE_CHECKING:
    from freshlake.embed.base import Embedder

log = logging.getLogger(__name__)

SearchMode = Literal["vector", "fts", "hybrid"]
RRF_K = 60  # as in lancedb's RRFReranker: score = sum over lists of 1 / (RRF_K + rank0)
BASE_COLUMNS = ("chunk_id", "stream", "key", "chunk_index", "text")


@dataclass(frozen=True, kw_only=True)
class Hit:
    """One search result. `score` is comparable within a mode only: cosine similarity for
    vector, BM25 for fts, the RRF sum for hybrid."""

    chunk_id: str
    stream: str
    key: str
    chunk_index: int
    text: str
    score: float
    attributes: dict[str, str | None]
    provenance: dict[str, Any]
    age_seconds: float | None  # now - event_time, or - embedded_at when there is no event time

    @property
    def as_of(self) -> str:
        """Freshness for a prompt or a UI: "as of 4 s ago", "as of 3 min ago"."""
        if self.age_seconds is None:
            return "as of an unknown time"
        age = max(0.0, self.age_seconds)
        for unit, seconds in (("d", 86_400), ("h", 3_600), ("min", 60)):
            if age >= seconds:
                return f"as of {int(age // seconds)} {unit} ago"
        return f"as of {int(age)} s ago"


def search(
    *,
    stores: Sequence[ChunkStore],
    embedder: Embedder | Sequence[Embedder],
    query: str,
    mode: SearchMode = "hybrid",
    k: int = 5,
    where: str | None = None,
    now: datetime | None = None,
) -> list[Hit]:
    """The top `k` chunks across `stores`.

    Args:
        embedder: the query encoder, or several: each table is searched with the one whose
            model matches its vectors (during a model rollout, stream tables may differ).
            Distances of different vector spaces are never compared: lists are then fused by
            rank, as in hybrid.
        mode: `vector` (cosine), `fts` (LanceDB full text, BM25) or `hybrid` (both, RRF-fused).
        where: SQL filter over the table columns (e.g. `status = 'delayed'`), applied before
            ranking (prefilter), so it never starves the top k.
        now: reference time for `age_seconds` (default: the current UTC time).

    Raises:
        ModelMismatchError: a table holds vectors of a model other than `embedder`'s.
    """
    if mode not in ("vector", "fts", "hybrid"):
        msg = f"unknown search mode {mode!r}: use 'vector', 'fts' or 'hybrid'"
        raise ValueError(msg)
    if k < 1 or not stores:
        return []
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)  # naive times in freshlake are UTC
    depth = k if mode != "hybrid" else max(2 * k, 20)  # RRF needs candidates beyond the top k
    for store in stores:
        store.table  # noqa: B018  (open every table here, not racing inside the pool)
    jobs: list[tuple[str, ChunkStore, Callable[[], list[dict[str, Any]]]]] = []
    spaces = 1
    if mode in ("vector", "hybrid"):
        chosen = [_embedder_for(store, embedder) for store in stores]
        queries: dict[int, Any] = {}  # one query vector per embedder (vector space)
        for e in chosen:
            if id(e) not in queries:
                queries[id(e)] = e.embed([query])[0]
        spaces = len(queries)
        jobs += [
            ("vector", s, partial(_vector_rows, s, queries[id(e)], depth, where))
            for s, e in zip(stores, chosen, strict=True)
        ]
    if mode in ("fts", "hybrid"):
        jobs += [("fts", s, partial(_fts_rows, s, query, depth, where)) for s in stores]
    if len(jobs) == 1:
        results = [jobs[0][2]()]
    else:  # vector and FTS lists (and tables) in parallel: lancedb releases the GIL
        with ThreadPoolExecutor(max_workers=min(len(jobs), 8)) as pool:
            results = list(pool.map(lambda job: job[2](), jobs))
    if mode == "hybrid" or spaces > 1:
        # Every (table, retriever) list is one ranking: a stream with many near-duplicate
        # documents cannot crowd out the best hit of another stream.
        ranked = _rrf(
            [[(store, row) for row in rows] for (_, store, _), rows in zip(jobs, results, strict=True)]
        )
        return [_hit(store, row, score, now) for store, row, score in ranked[:k]]
    pairs = [(store, row) for (_, store, _), rows in zip(jobs, results, strict=True) for row in rows]
    if mode == "vector":
        pairs.sort(key=lambda sr: sr[1]["_distance"])
        ranked = [(s, r, 1.0 - float(r["_distance"])) for s, r in pairs]
    else:
        pairs.sort(key=lambda sr: -sr[1]["_score"])
        ranked = [(s, r, float(r["_score"])) for s, r in pairs]
    return [_hit(store, row, score, now) for store, row, score in ranked[:k]]


def _embedder_for(store: ChunkStore, embedder: Embedder | Sequence[Embedder]) -> Embedder:
    """The embedder whose vector space is the table's; ModelMismatchError if none is."""
    candidates = list(embedder) if isinstance(embedder, Sequence) else [embedder]
    stored = store.model()
    for e in candidates:
        if e.dimension == store.dimension and (stored is None or stored == (e.model_name, e.model_version)):
            return e
    first = candidates[0]
    store.check_model(
        model_name=first.model_name, model_version=first.model_version, dimension=first.dimension
    )
    return first  # not reached: check_model raised


def _columns(store: ChunkStore) -> list[str]:
    return [*BASE_COLUMNS, *store.attribute_fields, *PROVENANCE_COLUMNS]


def _vector_rows(store: ChunkStore, qv: Any, depth: int, where: str | None) -> list[dict]:
    q = store.table.search(qv, vector_column_name="vector").distance_type("cosine")
    q = q.refine_factor(VECTOR_REFINE_FACTOR)  # no-op while the table has no vector index
    if where:
        q = q.where(where, prefilter=True)
    return q.select([*_columns(store), "_distance"]).limit(depth).to_arrow().to_pylist()


def _fts_rows(store: ChunkStore, query: str, depth: int, where: str | None) -> list[dict]:
    if not store.has_fts_index():
        log.warning(
            "LanceDB table %s has no FTS index: no full-text hits from it until "
            "ChunkStore.ensure_indexes() runs",
            store.table_name,
        )
        return []
    q = store.table.search(query, query_type="fts", fts_columns="text")
    if where:
        q = q.where(where, prefilter=True)
    return q.select([*_columns(store), "_score"]).limit(depth).to_arrow().to_pylist()


def _rrf(lists: list[list[tuple[ChunkStore, dict]]]) -> list[tuple[ChunkStore, dict, float]]:
    """Reciprocal Rank Fusion over ranked lists; ties keep first-seen (vector) order."""
    fused: dict[tuple[int, str], list[Any]] = {}
    for results in lists:
        for rank, (store, row) in enumerate(results):
            entry = fused.setdefault((id(store), row["chunk_id"]), [store, row, 0.0])
            entry[2] += 1.0 / (RRF_K + rank)
    ranked = [(store, row, score) for store, row, score in fused.values()]
    ranked.sort(key=lambda srs: -srs[2])  # stable: first-seen (vector rank) wins ties
    return ranked


def _hit(store: ChunkStore, row: dict[str, Any], score: float, now: datetime) -> Hit:
    seen = row.get("event_time") or row.get("embedded_at")
    return Hit(
        chunk_id=row["chunk_id"],
        stream=row["stream"],
        key=row["key"],
        chunk_index=row["chunk_index"],
        text=row["text"],
        score=score,
        attributes={a: row.get(a) for a in store.attribute_fields},
        provenance={c: row.get(c) for c in PROVENANCE_COLUMNS},
        age_seconds=(now - seen).total_seconds() if seen is not None else None,
    )
