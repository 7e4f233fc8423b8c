"""Search stream tables by vector, full text, or both (hybrid), and return documents.

A search returns up to `k` documents: distinct (stream, key) pairs, each with its best passage
and the other chunks of it that matched, in rank order (`chunks=True` returns the raw chunk hits
instead). Every result says how fresh it is (`age_seconds`, `as_of`).

Ranking, precisely:
- Each table is read per retriever, vector (cosine distance) and full text (BM25), `candidates`
  rows deep (default `CANDIDATES` = 100), whatever `k`.
- `vector` and `fts` sort the rows of all tables by their score (cosine similarity
  `1 - distance`, or BM25). `hybrid` fuses rankings by Reciprocal Rank Fusion: score = sum over
  rankings of `1 / (RRF_K + rank)`, `RRF_K = 60`, ranks from 1 (Cormack et al., 2009); ties keep
  the first-seen order (vector first). The rankings: all tables' vector rows by distance (one
  vector space: distances compare across tables; after a model rollout, each space's tables
  rank apart), and each table's full-text rows by BM25 (its scores depend on that table's
  corpus statistics, so they compare only within it).
  Measured on the demo world with the real model: one ranking per table for vectors too lets a
  stream whose documents rank well in both of its lists (bookings repeating their flight's
  status) crowd out the flight itself; one full-text ranking over all tables lets many similar
  flights bury the refunds policy; this mix keeps the best of each.
- A document ranks where its best chunk ranks; its score is that chunk's score.
- When the lists at that depth hold fewer than `k` documents, they are read again `DEEPEN` times
  deeper (up to `MAX_CANDIDATES`) and the documents not yet listed are appended in the deeper
  ranking's order. So a larger `k` only extends the list: the top `k` is always a prefix of the
  top `k + n` (scores of appended documents come from the deeper ranking).

A table without an FTS index contributes no full-text hits (logged), so hybrid degrades to
vector-only rather than failing; tables get their FTS index when created, so this is rare.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, overload

from freshlake.errors import FreshlakeError
from freshlake.lance.store import PROVENANCE_COLUMNS, VECTOR_REFINE_FACTOR, ChunkStore

if TYPE_CHECKING:
    from freshlake.embed.base import Embedder

log = logging.getLogger(__name__)

SearchMode = Literal["vector", "fts", "hybrid"]
MODES: tuple[str, ...] = ("vector", "fts", "hybrid")
RRF_K = 60  # score = sum over ranked lists of 1 / (RRF_K + rank), rank from 1
CANDIDATES = 100  # rows read from each ranked list before fusion, independent of k
DEEPEN = 4  # when those hold fewer than k documents: read this many times deeper, append
MAX_CANDIDATES = 10_000  # the deepest a list is read
SEARCH_THREADS = 8  # ranked lists read at once, across all searches of the process
BASE_COLUMNS = ("chunk_id", "stream", "key", "chunk_index", "text")


class FreshlakeSearchError(FreshlakeError, ValueError):
    """A search that cannot be answered as asked (bad mode, filter, stream, k); the message
    says how to ask instead. A ValueError too, so callers that catch bad arguments keep working."""


@dataclass(frozen=True, kw_only=True)
class Hit:
    """One matching chunk. `score` is comparable within a mode only: cosine similarity for
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
        return as_of(self.age_seconds)


@dataclass(frozen=True, kw_only=True)
class Document:
    """One document (a stream's key): its matching chunks, best first. The text, provenance and
    age shown for the document are its best passage's."""

    stream: str
    key: str
    score: float
    passages: tuple[Hit, ...]

    @property
    def best(self) -> Hit:
        return self.passages[0]

    @property
    def text(self) -> str:
        return self.best.text

    @property
    def chunk_id(self) -> str:
        return self.best.chunk_id

    @property
    def chunk_index(self) -> int:
        return self.best.chunk_index

    @property
    def attributes(self) -> dict[str, str | None]:
        return self.best.attributes

    @property
    def provenance(self) -> dict[str, Any]:
        return self.best.provenance

    @property
    def age_seconds(self) -> float | None:
        return self.best.age_seconds

    @property
    def as_of(self) -> str:
        return self.best.as_of


def as_of(age_seconds: float | None) -> str:
    if age_seconds is None:
        return "as of an unknown time"
    age = max(0.0, age_seconds)
    for unit, seconds in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if age >= seconds:
            return f"as of {int(age // seconds)} {unit} ago"
    return f"as of {int(age)} s ago"


@overload
def search(
    *,
    stores: Sequence[ChunkStore],
    embedder: Embedder | Sequence[Embedder],
    query: str,
    mode: SearchMode = ...,
    k: int = ...,
    where: str | None = ...,
    now: datetime | None = ...,
    chunks: Literal[False] = ...,
    candidates: int = ...,
) -> list[Document]: ...


@overload
def search(
    *,
    stores: Sequence[ChunkStore],
    embedder: Embedder | Sequence[Embedder],
    query: str,
    mode: SearchMode = ...,
    k: int = ...,
    where: str | None = ...,
    now: datetime | None = ...,
    chunks: Literal[True],
    candidates: int = ...,
) -> list[Hit]: ...


def search(
    *,
    stores: Sequence[ChunkStore],
    embedder: Embedder | Sequence[Embedder],
    query: str,
    mode: SearchMode = "hybrid",
    k: int = 5,
    where: str | None = None,
    now: datetime | None = None,
    chunks: bool = False,
    candidates: int = CANDIDATES,
) -> list[Document] | list[Hit]:
    """The top `k` documents (or, with `chunks`, chunks) across `stores`; see the module doc.

    Args:
        embedder: the query encoder, or several: each table is searched with the one whose
            model matches its vectors (during a model rollout, stream tables may differ).
            Distances of different vector spaces are never compared: lists are then fused by
            rank, as in hybrid.
        mode: `vector` (cosine), `fts` (LanceDB full text, BM25) or `hybrid` (both, RRF-fused).
        where: SQL filter over the table columns (e.g. `status = 'delayed'`), applied before
            ranking (prefilter), so it never starves the top k.
        now: reference time for `age_seconds` (default: the current UTC time).
        candidates: rows read from each ranked list before fusion (a larger value trades
            latency for recall; `k` does not change it).

    Raises:
        ModelMismatchError: a table holds vectors of a model other than `embedder`'s.
        FreshlakeSearchError: an unknown mode, `candidates` below 1, or a `where` the tables
            cannot evaluate.
    """
    if mode not in MODES:
        msg = f"unknown search mode {mode!r}: use 'vector', 'fts' or 'hybrid'"
        raise FreshlakeSearchError(msg)
    if candidates < 1:
        msg = f"candidates must be at least 1, got {candidates}; the default is {CANDIDATES}"
        raise FreshlakeSearchError(msg)
    if k < 1 or not stores:
        return []
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)  # naive times in freshlake are UTC
    for store in stores:
        store.table  # noqa: B018  (open every table here, not racing inside the pool)
    lists = _Lists(stores=stores, embedder=embedder, query=query, mode=mode, where=where)
    found: dict[tuple[str, ...], list[tuple[ChunkStore, dict, float]]] = {}
    depth = min(candidates, MAX_CANDIDATES)
    while True:
        ranked, exhausted = lists.ranked(depth)
        stage: dict[tuple[str, ...], list[tuple[ChunkStore, dict, float]]] = {}
        for store, row, score in ranked:
            unit = (store.table_name, row["chunk_id"]) if chunks else (row["stream"], row["key"])
            stage.setdefault(unit, []).append((store, row, score))
        for unit, members in stage.items():  # in rank order of each unit's best chunk
            found.setdefault(unit, members)
        if len(found) >= k or exhausted or depth >= MAX_CANDIDATES:
            break
        depth = min(depth * DEEPEN, MAX_CANDIDATES)
    picked = list(found.values())[:k]
    if chunks:
        return [_hit(store, row, score, now) for (store, row, score), *_ in picked]
    return [
        Document(
            stream=members[0][1]["stream"],
            key=members[0][1]["key"],
            score=members[0][2],
            passages=tuple(_hit(store, row, score, now) for store, row, score in members),
        )
        for members in picked
    ]


class _Lists:
    """The ranked lists of one search (query embedded once), read to any depth and ranked."""

    def __init__(
        self,
        *,
        stores: Sequence[ChunkStore],
        embedder: Embedder | Sequence[Embedder],
        query: str,
        mode: SearchMode,
        where: str | None,
    ) -> None:
        self.jobs: list[tuple[ChunkStore, Callable[[int], list[dict[str, Any]]]]] = []
        self.kinds: list[str] = []  # "vector" | "fts", one per job
        spaces = 1
        if mode in ("vector", "hybrid"):
            chosen = [_embedder_for(store, embedder) for store in stores]
            queries: dict[int, Any] = {}  # one query vector per embedder (vector space)
            for e in chosen:
                if id(e) not in queries:
                    queries[id(e)] = e.embed([query])[0]
            spaces = len(queries)
            self.jobs += [
                (s, partial(_vector_rows, s, queries[id(e)], where=where))
                for s, e in zip(stores, chosen, strict=True)
            ]
            self.kinds += ["vector"] * len(stores)
        if mode in ("fts", "hybrid"):
            self.jobs += [(s, partial(_fts_rows, s, query, where=where)) for s in stores]
            self.kinds += ["fts"] * len(stores)
        self.mode = mode
        self.spaces = spaces
        self.fuse = mode == "hybrid" or spaces > 1

    def ranked(self, depth: int) -> tuple[list[tuple[ChunkStore, dict, float]], bool]:
        """(store, row, score) best first, and whether every list ended before `depth`."""
        if len(self.jobs) == 1:
            results = [self.jobs[0][1](depth)]
        else:  # vector and FTS lists (and tables) in parallel: lancedb releases the GIL
            results = list(_pool().map(lambda job: job[1](depth), self.jobs))
        exhausted = all(len(rows) < depth for rows in results)
        jobs = list(zip(self.kinds, self.jobs, results, strict=True))
        vector = [[(store, row) for row in rows] for kind, (store, _), rows in jobs if kind == "vector"]
        text = [[(store, row) for row in rows] for kind, (store, _), rows in jobs if kind == "fts"]
        if not self.fuse:
            if self.mode == "fts":
                pairs = sorted((pair for rows in text for pair in rows), key=lambda sr: -sr[1]["_score"])
                return [(s, r, float(r["_score"])) for s, r in pairs], exhausted
            pairs = sorted((pair for rows in vector for pair in rows), key=lambda sr: sr[1]["_distance"])
            return [(s, r, 1.0 - float(r["_distance"])) for s, r in pairs], exhausted
        if self.spaces == 1:  # one vector space: distances compare across tables, one ranking
            vector = [sorted((pair for rows in vector for pair in rows), key=lambda sr: sr[1]["_distance"])]
        return _rrf([*vector, *text]), exhausted


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    """One pool for every search of the process: no thread start per query, and a bound on the
    LanceDB reads in flight when a service runs many searches at once."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=SEARCH_THREADS, thread_name_prefix="freshlake-search")
        return _POOL


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


def columns(store: ChunkStore) -> list[str]:
    """The columns a search returns and a `where` can filter on."""
    return [*BASE_COLUMNS, *store.attribute_fields, *PROVENANCE_COLUMNS]


def _vector_rows(store: ChunkStore, qv: Any, depth: int, *, where: str | None) -> list[dict]:
    q = store.table.search(qv, vector_column_name="vector").distance_type("cosine")
    q = q.refine_factor(VECTOR_REFINE_FACTOR)  # no-op while the table has no vector index
    if where:
        q = q.where(where, prefilter=True)
    return _read(store, q.select([*columns(store), "_distance"]).limit(depth), where)


def _fts_rows(store: ChunkStore, query: str, depth: int, *, where: str | None) -> list[dict]:
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
    return _read(store, q.select([*columns(store), "_score"]).limit(depth), where)


def _read(store: ChunkStore, query: Any, where: str | None) -> list[dict]:
    try:
        return query.to_arrow().to_pylist()
    except ValueError as exc:  # lancedb: "Invalid input, ..." for a filter it cannot evaluate
        if not where:
            raise
        msg = (
            f"where {where!r} cannot be evaluated on the {store.table_name!r} table: {exc}. "
            f"Write an SQL condition over its columns ({', '.join(columns(store))}), e.g. "
            "status = 'delayed', and search only the streams that have those columns"
        )
        raise FreshlakeSearchError(msg) from None


def _rrf(lists: list[list[tuple[ChunkStore, dict]]]) -> list[tuple[ChunkStore, dict, float]]:
    """Reciprocal Rank Fusion, 1 / (RRF_K + rank) with ranks from 1; ties keep first-seen order."""
    fused: dict[tuple[int, str], list[Any]] = {}
    for results in lists:
        for rank, (store, row) in enumerate(results, start=1):
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
