"""`Searcher`: the processed store opened once, searched with freshness on every answer."""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from freshlake.errors import FreshlakeConfigError, FreshlakeError
from freshlake.lance.search import CANDIDATES, MODES, Document, FreshlakeSearchError, Hit, SearchMode
from freshlake.retrieval.freshness import (
    Marks,
    StreamFreshness,
    ingested_offsets,
    newest_time,
    raw_version_folded,
)

if TYPE_CHECKING:
    from freshlake.config import StreamsConfig
    from freshlake.embed.base import Embedder
    from freshlake.lance.store import ChunkStore
    from freshlake.lance.tables import TableEntry
    from freshlake.streams import StreamSpec

Staleness = Literal["report", "fail"]
MAX_K = 1_000  # documents (or chunks) per search
MAX_QUERY_CHARS = 4_096
MAX_TIMEOUT_S = 300.0
DEFAULT_TIMEOUT_S = 10.0
POLL_S = 0.025  # how often a read-your-writes wait re-reads the progress marks
ALIAS_TTL_S = 1.0  # how long a resolved live table is reused (retired tables live an hour)


class StaleDataError(FreshlakeError):
    """`staleness="fail"` and a searched stream is older than `max_staleness_s`."""

    def __init__(self, message: str, *, freshness: Mapping[str, StreamFreshness], stale: Sequence[str]):
        super().__init__(message)
        self.freshness = dict(freshness)
        self.stale = tuple(stale)


@dataclass(frozen=True, kw_only=True)
class Position:
    """A Kafka position asked for in `after`, and how far the stream's searchable data reaches."""

    stream: str
    partition: int
    offset: int
    searchable: int | None  # last searchable offset of the partition; None: nothing yet


@dataclass(frozen=True, kw_only=True)
class ReadYourWrites:
    satisfied: bool  # every position in `after` was searchable when the search ran
    waited_s: float
    pending: tuple[Position, ...] = ()  # positions still not searchable after the timeout


@dataclass(frozen=True, kw_only=True)
class SearchResult:
    query: str
    mode: SearchMode
    k: int
    documents: list[Document] = field(default_factory=list)  # empty with chunks=True
    hits: list[Hit] = field(default_factory=list)  # chunk hits, only with chunks=True
    freshness: dict[str, StreamFreshness] = field(default_factory=dict)  # per searched stream
    stale: tuple[str, ...] = ()  # streams older than max_staleness_s (or with no data)
    read_your_writes: ReadYourWrites | None = None  # set when `after` was given
    took_s: float = 0.0


class Searcher:
    """The live embeddings tables of some streams, with their query encoders, kept warm.

    Thread-safe: one instance serves concurrent searches. Each search resolves the stream's live
    table (the rollout alias of `freshlake.lance.tables`, re-read at most every second) and reads
    the newest committed LanceDB version, so new data and swapped-in tables are searched without
    a restart. The query is embedded in the live table's vector space: with `embedder`'s when it
    matches, else with the packaged model at the table's precision (a precision rollout).
    """

    def __init__(
        self,
        *,
        streams: Sequence[StreamSpec],
        delta_root: str,
        lance_root: str,
        storage_options: Mapping[str, str] | None = None,
        embedder: Embedder | Sequence[Embedder] | None = None,
        chunker=None,  # freshlake.embed.chunking.ChunkerSettings: names the progress marks
        alias_ttl_s: float = ALIAS_TTL_S,
    ) -> None:
        from freshlake.embed.chunking import ChunkerSettings
        from freshlake.lance.tables import TableRegistry

        self.specs: dict[str, StreamSpec] = {s.name: s for s in streams}
        self.delta_root = delta_root.rstrip("/")
        self.lance_root = lance_root.rstrip("/")
        self.storage_options = dict(storage_options or {})
        if embedder is None:
            self._embedders: list[Embedder] | None = None  # from the environment, on first use
        else:
            self._embedders = list(embedder) if isinstance(embedder, Sequence) else [embedder]
        self._chunker = chunker or ChunkerSettings()
        self._alias_ttl_s = alias_ttl_s
        self._registry = TableRegistry(uri=self.lance_root, storage_options=self.storage_options or None)
        self._marks = Marks(uri=self.lance_root, storage_options=self.storage_options or None)
        self._lock = threading.RLock()
        self._delta_lock = threading.Lock()
        self._facts_lock = threading.Lock()
        self._aliases: tuple[float, dict[str, TableEntry]] = (-math.inf, {})
        self._stores: dict[str, ChunkStore] = {}
        self._table_facts: dict[tuple[str, int], tuple[int, datetime | None]] = {}

    @classmethod
    def open(
        cls,
        *,
        streams: StreamsConfig | Sequence[StreamSpec] | str | os.PathLike[str] | None = None,
        delta_root: str | None = None,
        lance_root: str | None = None,
        storage_options: Mapping[str, str] | None = None,
        embedder: Embedder | Sequence[Embedder] | None = None,
        chunker=None,
    ) -> Searcher:
        """A searcher over the embedded streams of `streams` (a loaded config, specs, or a
        streams file; default `$FRESHLAKE_STREAMS` or ./streams.yaml).

        Roots default to `$FRESHLAKE_DELTA_URI` / `$FRESHLAKE_LANCE_URI` / `$FRESHLAKE_HOME`; the
        embedder to `freshlake.embed.factory.embedder_from_env()` (made on the first vector
        search, or by `warm()`).
        """
        from freshlake.settings import store_roots

        if streams is None or isinstance(streams, str | os.PathLike):
            from freshlake.config import load_streams

            specs: Sequence[StreamSpec] = load_streams(None if streams is None else Path(streams)).streams
        elif hasattr(streams, "streams"):
            specs = streams.streams  # type: ignore[union-attr]
        else:
            specs = streams  # type: ignore[assignment]
        documents = [s for s in specs if s.document is not None]
        if not documents:
            msg = "no stream has a `document` section: nothing is embedded, so nothing is searchable"
            raise FreshlakeConfigError(msg)
        from freshlake.settings import storage_options as configured_options

        env_delta, env_lance = store_roots()
        return cls(
            streams=documents,
            delta_root=delta_root or env_delta,
            lance_root=lance_root or env_lance,
            storage_options=configured_options() if storage_options is None else storage_options,
            embedder=embedder,
            chunker=chunker,
        )

    @property
    def streams(self) -> tuple[str, ...]:
        """The searchable (embedded) streams."""
        return tuple(self.specs)

    # -- searching --------------------------------------------------------------------------

    def search(
        self,
        query: str,
        *,
        streams: Sequence[str] | None = None,
        mode: SearchMode = "hybrid",
        k: int = 10,
        where: str | None = None,
        chunks: bool = False,
        max_staleness_s: float | None = None,
        staleness: Staleness = "report",
        after: Mapping[str, Mapping[int, int]] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        candidates: int = CANDIDATES,
        now: datetime | None = None,
    ) -> SearchResult:
        """Up to `k` documents (or chunk hits) for `query`, with each stream's freshness.

        See `freshlake.retrieval` for the freshness semantics of `max_staleness_s`,
        `staleness` and `after`; `timeout_s` bounds the wait for `after` only.

        Raises:
            FreshlakeSearchError: the request is malformed (the message says the fix).
            StaleDataError: `staleness="fail"` and a stream is older than `max_staleness_s`.
        """
        from freshlake.lance.search import search as search_tables

        started = time.perf_counter()
        names = self._check(
            query=query,
            streams=streams,
            mode=mode,
            k=k,
            where=where,
            max_staleness_s=max_staleness_s,
            staleness=staleness,
            after=after,
            timeout_s=timeout_s,
        )
        wanted = _positions(after)
        ryw = self._wait(wanted, timeout_s=timeout_s) if after is not None else None
        freshness = self.freshness(names, max_staleness_s=max_staleness_s)
        stale = tuple(n for n, f in freshness.items() if f.stale)
        if stale and staleness == "fail":
            lags = ", ".join(f"{n}: {_lag_text(freshness[n])}" for n in stale)
            msg = (
                f"searchable data is older than max_staleness_s={max_staleness_s:g} for {lags}; "
                'retry later, raise max_staleness_s, or use staleness="report" to get the answer anyway'
            )
            raise StaleDataError(msg, freshness=freshness, stale=stale)
        stores = [self._stores[f.table] for f in freshness.values() if f.table is not None and f.rows > 0]
        embedders = self._embedders_for(stores) if mode != "fts" and stores else []
        found = search_tables(
            stores=stores,
            embedder=embedders,
            query=query,
            mode=mode,
            k=k,
            where=where,
            now=now,
            chunks=chunks,
            candidates=candidates,
        )
        return SearchResult(
            query=query,
            mode=mode,
            k=k,
            documents=[] if chunks else found,  # type: ignore[arg-type]
            hits=found if chunks else [],  # type: ignore[arg-type]
            freshness=freshness,
            stale=stale,
            read_your_writes=ryw,
            took_s=time.perf_counter() - started,
        )

    def freshness(
        self, streams: Sequence[str] | None = None, *, max_staleness_s: float | None = None
    ) -> dict[str, StreamFreshness]:
        """Per stream: the live table, its rows and version, the `current` and raw versions it
        holds, the searchable offset per partition and the newest searchable event time."""
        names = list(streams) if streams is not None else list(self.specs)
        marks = self._marks.read()  # before the table versions: marks never overstate them
        aliases = self._aliases_now()
        now = datetime.now(UTC)
        out = {}
        for name in names:
            fresh = self._stream_freshness(self.specs[name], aliases.get(name), marks, now)
            if max_staleness_s is not None:
                lag = fresh.event_time_lag_s
                fresh = replace(fresh, stale=lag is None or lag > max_staleness_s)
            out[name] = fresh
        return out

    def warm(self) -> None:
        """Open every live table and load the query encoder(s) now, not on the first request."""
        freshness = self.freshness()
        stores = [self._stores[f.table] for f in freshness.values() if f.table is not None]
        for embedder in self._embedders_for(stores) if stores else self._default_embedders():
            embedder.embed(["warm up"])

    # -- internals --------------------------------------------------------------------------

    def _check(
        self,
        *,
        query: object,
        streams: Sequence[str] | None,
        mode: object,
        k: object,
        where: object,
        max_staleness_s: object,
        staleness: object,
        after: Mapping[str, Mapping[int, int]] | None,
        timeout_s: object,
    ) -> list[str]:
        def fail(msg: str) -> None:
            raise FreshlakeSearchError(msg)

        if not isinstance(query, str) or not query.strip():
            fail("the query is empty: pass the question or keywords to search for, as text")
        if len(query) > MAX_QUERY_CHARS:  # type: ignore[arg-type]
            fail(f"the query has {len(query)} characters: keep it under {MAX_QUERY_CHARS}")  # type: ignore[arg-type]
        if mode not in MODES:
            fail(f"unknown search mode {mode!r}: use 'vector', 'fts' or 'hybrid'")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            fail(f"k must be an integer from 1 to {MAX_K}, got {k!r}: page with a narrower where instead")
        if where is not None and (not isinstance(where, str) or not where.strip()):
            fail(f"where must be a non-empty SQL condition such as \"status = 'delayed'\", got {where!r}")
        if max_staleness_s is not None and not _number(max_staleness_s, low=0.0):
            fail(f"max_staleness_s must be a number of seconds >= 0, got {max_staleness_s!r}")
        if staleness not in ("report", "fail"):
            fail(f"staleness must be 'report' or 'fail', got {staleness!r}")
        if not _number(timeout_s, low=0.0, high=MAX_TIMEOUT_S):
            fail(f"timeout_s must be a number of seconds from 0 to {MAX_TIMEOUT_S:g}, got {timeout_s!r}")
        if isinstance(streams, str):
            fail(f"streams must be a list of stream names, got the string {streams!r}: use [{streams!r}]")
        names = list(dict.fromkeys(streams)) if streams is not None else list(self.specs)
        for name in [*names, *(after or {})]:
            self._known(name)
        if streams is not None and not names:
            fail(f"streams is empty: name at least one of {', '.join(self.specs)}, or leave it out")
        _positions(after)  # checks its shape
        return names

    def _known(self, name: object) -> None:
        if isinstance(name, str) and name in self.specs:
            return
        known = ", ".join(self.specs) or "(none)"
        msg = f"unknown stream {name!r}: searchable streams are {known}"
        raise FreshlakeSearchError(msg)

    def _wait(self, wanted: Sequence[Position], *, timeout_s: float) -> ReadYourWrites:
        """Poll the progress marks until every wanted position is searchable, or the timeout."""
        started = time.monotonic()
        streams = list(dict.fromkeys(p.stream for p in wanted))
        while True:
            freshness = self.freshness(streams)
            pending = tuple(
                replace(p, searchable=freshness[p.stream].searchable_offsets.get(p.partition))
                for p in wanted
                if not freshness[p.stream].covers(p.partition, p.offset)
            )
            waited = time.monotonic() - started
            if not pending or waited >= timeout_s:
                return ReadYourWrites(satisfied=not pending, waited_s=waited, pending=pending)
            time.sleep(min(POLL_S, max(0.0, timeout_s - waited)))

    def _aliases_now(self) -> dict[str, TableEntry]:
        with self._lock:
            read_at, aliases = self._aliases
            if time.monotonic() - read_at < self._alias_ttl_s:
                return aliases
        fresh = {e.stream: e for e in self._registry.entries() if e.live and e.stream in self.specs}
        with self._lock:
            self._aliases = (time.monotonic(), fresh)
        return fresh

    def _store(self, spec: StreamSpec, entry: TableEntry) -> ChunkStore:
        with self._lock:
            store = self._stores.get(entry.table_name)
            if store is None:
                from freshlake.lance.store import ChunkStore

                store = ChunkStore(
                    uri=self.lance_root,
                    table_name=entry.table_name,
                    dimension=entry.dimension,
                    attribute_fields=spec.document.attributes if spec.document else (),
                    storage_options=self.storage_options or None,
                )
                store.table  # noqa: B018  (opened once, under the lock)
                self._stores[entry.table_name] = store
            return store

    def _stream_freshness(
        self, spec: StreamSpec, entry: TableEntry | None, marks: Mapping[str, int | None], now: datetime
    ) -> StreamFreshness:
        if entry is None:
            return StreamFreshness(
                stream=spec.name,
                topic=spec.topic,
                table=None,
                model=None,
                rows=0,
                lance_version=None,
                current_version=None,
                raw_version=None,
                measured_at=now,
            )
        from freshlake.lance.sync import follow_marks

        store = self._store(spec, entry)
        version = store.version
        rows, newest = self._facts(store, version)
        current = marks.get(follow_marks(spec, table_name=entry.table_name, chunker=self._chunker)[spec.name])
        raw = offsets = None
        with self._delta_lock:  # one reader loads a new version; concurrent searches reuse it
            if current is not None:
                raw = raw_version_folded(
                    self._delta_uri(spec, "current"), version=current, storage_options=self.storage_options
                )
            if raw is not None:
                offsets = ingested_offsets(
                    self._delta_uri(spec, "raw"),
                    version=raw,
                    topic=spec.topic,
                    partitions=spec.partitions,
                    storage_options=self.storage_options,
                )
        return StreamFreshness(
            stream=spec.name,
            topic=spec.topic,
            table=entry.table_name,
            model=(entry.model_name, entry.model_version),
            rows=rows,
            lance_version=version,
            current_version=current,
            raw_version=raw,
            searchable_offsets=offsets or {},
            newest_event_time=newest,
            measured_at=now,
        )

    def _facts(self, store: ChunkStore, version: int) -> tuple[int, datetime | None]:
        """(rows, newest event time) of a table version: computed once per version."""
        key = (store.table_name, version)
        with self._facts_lock:  # one scan per new version, not one per concurrent search
            facts = self._table_facts.get(key)
            if facts is None:
                table = store.table
                facts = (table.count_rows(), newest_time(table))
                self._table_facts = {
                    k: v for k, v in self._table_facts.items() if k[0] != store.table_name
                } | {key: facts}
        return facts

    def _delta_uri(self, spec: StreamSpec, layer: str) -> str:
        return f"{self.delta_root}/{spec.name}/{layer}"

    def _default_embedders(self) -> list[Embedder]:
        with self._lock:
            if self._embedders is None:
                from freshlake.embed.factory import embedder_from_env

                self._embedders = [embedder_from_env()]
            return list(self._embedders)

    def _embedders_for(self, stores: Sequence[ChunkStore]) -> list[Embedder]:
        """The encoders of the stores' vector spaces: the configured ones, plus the packaged
        model at another precision for a table of a precision rollout in progress."""
        from freshlake.embed.models import MODEL_NAME, PRECISIONS, SentenceTransformerEmbedder

        embedders = self._default_embedders()
        have = {(e.model_name, e.model_version) for e in embedders}
        wanted = {store.model() for store in stores} - have - {None}
        extra = []
        for model_name, model_version in wanted:  # type: ignore[misc]
            if model_name != MODEL_NAME:
                continue  # ModelMismatchError from the search names the table and the fix
            for precision in PRECISIONS:
                candidate = SentenceTransformerEmbedder(precision=precision)  # type: ignore[arg-type]
                if candidate.model_version == model_version:
                    extra.append(candidate)
        if extra:
            with self._lock:
                assert self._embedders is not None
                self._embedders += [e for e in extra if (e.model_name, e.model_version) not in have]
                return list(self._embedders)
        return embedders


def _number(value: object, *, low: float, high: float = math.inf) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and low <= value <= high


def _positions(after: Mapping[str, Mapping[int, int]] | None) -> list[Position]:
    if after is None:
        return []
    if not isinstance(after, Mapping):
        msg = f"after must map stream -> {{partition: offset}}, e.g. {{'flights': {{0: 41}}}}, got {after!r}"
        raise FreshlakeSearchError(msg)
    out = []
    for stream, positions in after.items():
        if not isinstance(positions, Mapping):
            msg = f"after[{stream!r}] must map partition -> offset, e.g. {{0: 41}}, got {positions!r}"
            raise FreshlakeSearchError(msg)
        for key, offset in positions.items():
            partition = _int_key(key)
            if partition is None or isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
                msg = (
                    f"after[{stream!r}] must map a partition number to a Kafka offset (integers >= 0, "
                    f"as the producer's delivery report gives them), got {key!r}: {offset!r}"
                )
                raise FreshlakeSearchError(msg)
            out.append(Position(stream=stream, partition=partition, offset=offset, searchable=None))
    return out


def _int_key(value: object) -> int | None:
    """A partition number, also from a JSON object key ("0")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    return value if isinstance(value, int) and value >= 0 else None


def _lag_text(fresh: StreamFreshness) -> str:
    lag = fresh.event_time_lag_s
    return "no searchable data" if lag is None else f"event-time lag {lag:.1f} s"
