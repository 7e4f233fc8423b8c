"""The HTTP service's request and response bodies: what its OpenAPI schema publishes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from freshlake.lance.search import Document, Hit
from freshlake.retrieval import MAX_K, Position, SearchResult, StreamFreshness
from freshlake.retrieval.searcher import MAX_QUERY_CHARS

PartitionKey = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,9}$")]  # JSON keys are text
Offset = Annotated[int, Field(ge=0, le=2**63 - 1)]
Query = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_QUERY_CHARS, pattern=r"\S"),
    Field(description="the question or keywords, as text"),
]


def search_request_model(streams: tuple[str, ...], *, max_timeout_s: float) -> type[BaseModel]:
    """The POST /v1/search body, with the searchable stream names as an enum."""
    name = Literal.__getitem__(streams) if streams else str  # type: ignore[attr-defined]
    fields: dict[str, Any] = {
        "query": (Query, ...),
        "k": (int, Field(10, ge=1, le=MAX_K, description="documents (or chunks) to return")),
        "mode": (Literal["vector", "fts", "hybrid"], "hybrid"),
        "streams": (
            list[name] | None,  # type: ignore[valid-type]
            Field(None, min_length=1, description="streams to search (default: every embedded one)"),
        ),
        "where": (
            Annotated[str, StringConstraints(min_length=1, max_length=2_000, pattern=r"\S")] | None,
            Field(None, description="SQL filter over the table columns, e.g. status = 'cancelled'"),
        ),
        "chunks": (bool, Field(False, description="return chunk hits instead of documents")),
        "max_staleness_s": (
            float | None,
            Field(None, ge=0, allow_inf_nan=False, description="mark (or fail) streams older than this"),
        ),
        "staleness": (
            Literal["report", "fail"],
            Field("report", description="report: answer and list stale streams; fail: 503 with the lag"),
        ),
        "after": (
            dict[name, dict[PartitionKey, Offset]] | None,  # type: ignore[valid-type]
            Field(None, description="read-your-writes: {stream: {partition: offset}} to wait for"),
        ),
        "timeout_s": (
            float,
            Field(
                min(5.0, max_timeout_s),
                ge=0,
                le=max_timeout_s,
                allow_inf_nan=False,
                description="how long to wait for `after`",
            ),
        ),
    }
    return create_model(
        "SearchRequest", __config__=ConfigDict(extra="forbid", title="SearchRequest"), **fields
    )


class Passage(BaseModel):
    chunk_id: str
    chunk_index: int
    text: str
    score: float


class ChunkHit(BaseModel):
    chunk_id: str
    stream: str
    key: str
    chunk_index: int
    text: str
    score: float
    attributes: dict[str, str | None]
    provenance: dict[str, Any]
    age_seconds: float | None
    as_of: str

    @classmethod
    def of(cls, hit: Hit) -> ChunkHit:
        return cls(**{**hit.__dict__, "as_of": hit.as_of})


class DocumentHit(BaseModel):
    stream: str
    key: str
    score: float
    text: str = Field(description="the best passage")
    chunk_id: str
    attributes: dict[str, str | None]
    provenance: dict[str, Any]
    age_seconds: float | None
    as_of: str
    passages: list[Passage] = Field(description="every matching chunk of the document, best first")

    @classmethod
    def of(cls, doc: Document) -> DocumentHit:
        return cls(
            stream=doc.stream,
            key=doc.key,
            score=doc.score,
            text=doc.text,
            chunk_id=doc.chunk_id,
            attributes=doc.attributes,
            provenance=doc.provenance,
            age_seconds=doc.age_seconds,
            as_of=doc.as_of,
            passages=[
                Passage(chunk_id=p.chunk_id, chunk_index=p.chunk_index, text=p.text, score=p.score)
                for p in doc.passages
            ],
        )


class Freshness(BaseModel):
    stream: str
    topic: str
    table: str | None = Field(description="live LanceDB table; null before the first embeddings run")
    model: list[str] | None = Field(description="[model name, model version] of its vectors")
    rows: int
    lance_version: int | None = Field(description="LanceDB version seen before the search")
    current_version: int | None = Field(description="`current` Delta version the table has read")
    raw_version: int | None = Field(description="raw Delta version folded into that version")
    searchable_offsets: dict[str, int] = Field(description="partition -> last searchable offset")
    newest_event_time: datetime | None
    event_time_lag_s: float | None
    stale: bool | None = Field(description="older than max_staleness_s; null when none was given")

    @classmethod
    def of(cls, fresh: StreamFreshness) -> Freshness:
        return cls(
            stream=fresh.stream,
            topic=fresh.topic,
            table=fresh.table,
            model=list(fresh.model) if fresh.model else None,
            rows=fresh.rows,
            lance_version=fresh.lance_version,
            current_version=fresh.current_version,
            raw_version=fresh.raw_version,
            searchable_offsets={str(p): o for p, o in sorted(fresh.searchable_offsets.items())},
            newest_event_time=fresh.newest_event_time,
            event_time_lag_s=fresh.event_time_lag_s,
            stale=fresh.stale,
        )


class PendingPosition(BaseModel):
    stream: str
    partition: int
    offset: int
    searchable: int | None = Field(description="last searchable offset of the partition")

    @classmethod
    def of(cls, p: Position) -> PendingPosition:
        return cls(**p.__dict__)


class ReadYourWritesOut(BaseModel):
    satisfied: bool
    waited_s: float
    pending: list[PendingPosition]


class SearchResponse(BaseModel):
    query: str
    mode: str
    k: int
    documents: list[DocumentHit] | None = Field(description="null with chunks=true")
    chunks: list[ChunkHit] | None = Field(description="set with chunks=true")
    freshness: dict[str, Freshness]
    stale_streams: list[str]
    read_your_writes: ReadYourWritesOut | None
    took_ms: float

    @classmethod
    def of(cls, result: SearchResult, *, chunks: bool) -> SearchResponse:
        ryw = result.read_your_writes
        return cls(
            query=result.query,
            mode=result.mode,
            k=result.k,
            documents=None if chunks else [DocumentHit.of(d) for d in result.documents],
            chunks=[ChunkHit.of(h) for h in result.hits] if chunks else None,
            freshness={n: Freshness.of(f) for n, f in result.freshness.items()},
            stale_streams=list(result.stale),
            read_your_writes=None
            if ryw is None
            else ReadYourWritesOut(
                satisfied=ryw.satisfied,
                waited_s=ryw.waited_s,
                pending=[PendingPosition.of(p) for p in ryw.pending],
            ),
            took_ms=round(result.took_s * 1000, 3),
        )


class StreamStatus(Freshness):
    watermarks: dict[str, int] | None = Field(description="Kafka high watermark per partition")
    committed: dict[str, int | None] | None = Field(description="last offset in raw, per partition")
    consumer_lag: int | None = Field(description="records in Kafka not yet in raw")
    unsearchable_records: int | None = Field(description="records in Kafka not yet searchable")
    kafka_error: str | None


class StreamsResponse(BaseModel):
    streams: list[StreamStatus]


class ErrorBody(BaseModel):
    detail: str


class StaleBody(BaseModel):
    detail: str
    stale_streams: list[str]
    freshness: dict[str, Freshness]


class Health(BaseModel):
    status: str
    detail: str | None = None
