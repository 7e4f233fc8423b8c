"""Retrieval for the LLM application: one typed API over the processed store, with freshness.

    from freshlake.retrieval import Searcher

    searcher = Searcher.open(streams="streams.yaml")  # roots and embedder from the environment
    result = searcher.search("my flight was cancelled, can I get a refund", k=5)
    for doc in result.documents:
        print(doc.stream, doc.key, doc.as_of, doc.text, len(doc.passages))

`freshlake.retrieval.search(query, ...)` does the same with a searcher opened once per process.

Results. Up to `k` documents (distinct stream + key), each with its best passage, the other
chunks of it that matched, its score, provenance and age; `chunks=True` returns chunk hits.
Ranking (vector, full text, hybrid by Reciprocal Rank Fusion `1 / (60 + rank)`, ranks from 1,
each list read `candidates=100` deep whatever `k`, so a larger `k` only extends the list) is
described in `freshlake.lance.search`. The query is embedded in the live table's vector space:
each stream's table is the one its rollout alias names (`freshlake.lance.tables`), re-resolved
at most every second, and the newest committed LanceDB version is read on every search.

Freshness, per searched stream, in every result (`SearchResult.freshness`):
- `lance_version`: the LanceDB table version seen just before the search; the search reads it or
  a newer one (a write may commit meanwhile).
- `current_version`: the `current` Delta version that table has read (its progress mark), and
  `raw_version`: the raw Delta version folded into that `current` version.
- `searchable_offsets`: partition -> the last Kafka offset of the stream's topic whose event is
  reflected in what the search read (derived from those three records, see
  `freshlake.retrieval.freshness`; a superseded or quarantined event counts as reflected once
  processed). These are lower bounds: the search may see more, never less.
- `newest_event_time` and `event_time_lag_s`: the newest event time among the table's rows
  (`embedded_at` for rows without one) and now minus it, as `freshlake.lag` defines event-time
  lag. A stream with no new events ages although nothing is pending: use `after` to wait for a
  write, `max_staleness_s` to bound age.

`max_staleness_s`: a stream is stale when its event-time lag exceeds it, or when it has no
searchable data (lag unknown). `staleness="report"` (default) answers and lists the stale
streams in `SearchResult.stale` (and `StreamFreshness.stale`); `staleness="fail"` raises
`StaleDataError` instead (the HTTP service answers 503 with every stream's lag), checked after
any `after` wait and before searching.

`after={stream: {partition: offset}}` (read-your-writes): the search first waits, up to
`timeout_s` seconds (polling the progress marks every 25 ms), until every named Kafka position
is searchable, i.e. `searchable_offsets[partition] >= offset`, and then searches, so an event
produced at that offset (or a newer state of its document) is in the answer. It answers in both
cases: `read_your_writes.satisfied` says whether all positions were reached, and `pending`
lists those that were not, with how far each partition has got. The position is judged on the
stream's own embeddings table: for a stream enriched by another (bookings joined to flights), an
offset of the other stream's topic is not a position of this one. `timeout_s` bounds the wait
only; 0 checks once without waiting.

Errors: a request that cannot be answered as asked (empty or over-long query, unknown stream,
unknown mode, k outside 1..1000, a `where` the tables cannot evaluate, a malformed `after`)
raises `FreshlakeSearchError`, whose message says the fix.
"""

from __future__ import annotations

import threading
from typing import Any

from freshlake.lance.search import (
    CANDIDATES,
    RRF_K,
    Document,
    FreshlakeSearchError,
    Hit,
    SearchMode,
)
from freshlake.retrieval.freshness import StreamFreshness
from freshlake.retrieval.searcher import (
    MAX_K,
    Position,
    ReadYourWrites,
    Searcher,
    SearchResult,
    StaleDataError,
)

__all__ = [
    "CANDIDATES",
    "MAX_K",
    "RRF_K",
    "Document",
    "FreshlakeSearchError",
    "Hit",
    "Position",
    "ReadYourWrites",
    "SearchMode",
    "SearchResult",
    "Searcher",
    "StaleDataError",
    "StreamFreshness",
    "default_searcher",
    "search",
]

_default: Searcher | None = None
_default_lock = threading.Lock()


def default_searcher() -> Searcher:
    """The process's searcher over `$FRESHLAKE_STREAMS` and the environment's roots, opened once."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Searcher.open()
        return _default


def search(query: str, **options: Any) -> SearchResult:
    """`default_searcher().search(query, **options)`: see `Searcher.search`."""
    return default_searcher().search(query, **options)
