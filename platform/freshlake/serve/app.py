"""The FastAPI app of `freshlake serve`: search, stream status, probes and metrics.

Routes (bearer token required on /v1/* and /metrics when `FRESHLAKE_SERVE_TOKEN` is set):
  POST /v1/search   documents (or chunks) with per-stream freshness; see `freshlake.retrieval`
  GET  /v1/streams  per stream: rows, versions, watermarks, searchable offsets, lags
  GET  /healthz     the process answers
  GET  /readyz      503 until the embedder is loaded and the tables are open, then 200
  GET  /metrics     Prometheus text format
  GET  /openapi.json, /docs

Status codes: 400 a request the searcher cannot answer as asked (the body says the fix), 401 a
missing or wrong token, 422 a body that is not JSON or does not match the schema, 503 stale
data with `staleness: "fail"`, a store that cannot be read, or not ready yet.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from freshlake.errors import FreshlakeError
from freshlake.retrieval import FreshlakeSearchError, Searcher, StaleDataError
from freshlake.serve import schemas
from freshlake.serve.metrics import Metrics

if TYPE_CHECKING:
    from freshlake.embed.base import Embedder
    from freshlake.streams import StreamSpec

log = logging.getLogger(__name__)

TOKEN_ENV = "FRESHLAKE_SERVE_TOKEN"
MAX_TIMEOUT_S = 60.0  # the longest a request may wait for its `after` positions
KAFKA_TIMEOUT_S = 5.0


class Unavailable(Exception):
    """Not ready, or a store that cannot be read: 503 with the reason."""


def create_app(
    *,
    searcher: Searcher | None = None,
    streams: Any = None,
    delta_root: str | None = None,
    lance_root: str | None = None,
    storage_options: Mapping[str, str] | None = None,
    embedder: Embedder | Sequence[Embedder] | None = None,
    kafka_config: Mapping[str, object] | None = None,
    token: str | None = None,
    max_timeout_s: float = MAX_TIMEOUT_S,
    warm: bool = True,
) -> FastAPI:
    """The service app over `searcher` (or one opened with `Searcher.open(...)` arguments).

    Args:
        kafka_config: librdkafka settings; with them /v1/streams adds watermarks and lags.
        token: the bearer token clients must send (default `$FRESHLAKE_SERVE_TOKEN`; "" or unset:
            no authentication).
        max_timeout_s: the largest `timeout_s` a request may ask for.
        warm: load the embedder and open the tables at startup (in the background; /readyz
            answers 503 until done), so the first search does not pay for them.
    """
    searcher = searcher or Searcher.open(
        streams=streams,
        delta_root=delta_root,
        lance_root=lance_root,
        storage_options=storage_options,
        embedder=embedder,
    )
    token = (token if token is not None else os.environ.get(TOKEN_ENV) or "").strip() or None  # "": open
    metrics = Metrics(searcher)
    state: dict[str, Any] = {"ready": not warm, "error": None}

    def warm_up() -> None:
        try:
            started = time.perf_counter()
            searcher.warm()
            log.info("retrieval service warm", extra={"seconds": round(time.perf_counter() - started, 2)})
            state["ready"] = True
        except Exception as exc:  # reported by /readyz, which stays 503
            log.exception("warming the searcher failed")
            state["error"] = f"{type(exc).__name__}: {exc}"

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        if warm:
            threading.Thread(target=warm_up, name="freshlake-serve-warm", daemon=True).start()
        yield

    app = FastAPI(
        title="freshlake retrieval",
        version="1",
        description=__doc__,
        lifespan=lifespan,
    )
    app.state.searcher = searcher
    app.state.metrics = metrics
    bearer = HTTPBearer(auto_error=False, description=f"the token in ${TOKEN_ENV}, when it is set")

    def authorized(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        if token is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise _Unauthorized

    Request_ = schemas.search_request_model(searcher.streams, max_timeout_s=max_timeout_s)
    errors: dict[int | str, dict[str, Any]] = {
        400: {"model": schemas.ErrorBody, "description": "a request that cannot be answered as asked"},
        401: {"model": schemas.ErrorBody, "description": "missing or wrong bearer token"},
        503: {"model": schemas.StaleBody | schemas.ErrorBody, "description": "stale data or not ready"},
    }

    @app.exception_handler(_Unauthorized)
    async def _unauthorized(request: Request, exc: Exception) -> JSONResponse:
        metrics.requests.labels(request.url.path, "401").inc()
        return JSONResponse(
            {"detail": f"send Authorization: Bearer <token> with the token in ${TOKEN_ENV}"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    @app.exception_handler(Unavailable)
    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        metrics.requests.labels(request.url.path, "503").inc()
        return JSONResponse({"detail": str(exc)}, status_code=503)

    def search(body) -> Any:
        request: Any = body
        started = time.perf_counter()
        outcome, code = "ok", 200
        try:
            result = searcher.search(
                request.query,
                streams=request.streams,
                mode=request.mode,
                k=request.k,
                where=request.where,
                chunks=request.chunks,
                max_staleness_s=request.max_staleness_s,
                staleness=request.staleness,
                after=request.after,
                timeout_s=request.timeout_s,
            )
        except FreshlakeSearchError as exc:
            outcome, code = "bad_request", 400
            return JSONResponse({"detail": str(exc)}, status_code=400)
        except StaleDataError as exc:
            outcome, code = "stale", 503
            body_ = schemas.StaleBody(
                detail=str(exc),
                stale_streams=list(exc.stale),
                freshness={n: schemas.Freshness.of(f) for n, f in exc.freshness.items()},
            )
            return JSONResponse(body_.model_dump(mode="json"), status_code=503)
        except FreshlakeError as exc:  # a store that cannot be read, a model that does not fit
            outcome, code = "unavailable", 503
            log.warning("search failed: %s", exc)
            return JSONResponse({"detail": str(exc)}, status_code=503)
        finally:
            metrics.latency.labels(request.mode, outcome).observe(time.perf_counter() - started)
            metrics.requests.labels("/v1/search", str(code)).inc()
        count = len(result.hits if request.chunks else result.documents)
        metrics.results.labels(request.mode).observe(count)
        if result.read_your_writes is not None:
            ryw = result.read_your_writes
            metrics.waits.labels(str(ryw.satisfied).lower()).observe(ryw.waited_s)
        return schemas.SearchResponse.of(result, chunks=request.chunks)

    search.__annotations__["body"] = Request_  # a class, not a name: it exists only in here
    app.post(
        "/v1/search",
        response_model=schemas.SearchResponse,
        responses=errors,
        dependencies=[Depends(authorized)],
        summary="Search the processed store: documents with passages, provenance and freshness",
    )(search)

    @app.get(
        "/v1/streams",
        response_model=schemas.StreamsResponse,
        responses={401: errors[401], 503: errors[503]},
        dependencies=[Depends(authorized)],
        summary="Per stream: rows, versions, Kafka watermarks, searchable offsets, lags",
    )
    def streams_() -> Any:
        metrics.requests.labels("/v1/streams", "200").inc()
        try:
            freshness = searcher.freshness()
        except FreshlakeError as exc:
            raise Unavailable(str(exc)) from None
        return schemas.StreamsResponse(
            streams=[_status(searcher.specs[n], f, kafka_config, searcher) for n, f in freshness.items()]
        )

    @app.get("/healthz", response_model=schemas.Health, summary="The process answers")
    def healthz() -> Any:
        return schemas.Health(status="ok")

    @app.get(
        "/readyz",
        response_model=schemas.Health,
        responses={503: {"model": schemas.Health, "description": "warming up, or warming failed"}},
        summary="Ready once the embedder is loaded and the tables are open",
    )
    def readyz() -> Any:
        if state["ready"]:
            return schemas.Health(status="ready")
        status = "failed" if state["error"] else "warming"
        return JSONResponse(
            schemas.Health(status=status, detail=state["error"]).model_dump(), status_code=503
        )

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={
            200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
            401: errors[401],
        },
        dependencies=[Depends(authorized)],
        summary="Prometheus metrics: search latency, results, per-stream lag",
    )
    def metrics_() -> PlainTextResponse:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


class _Unauthorized(Exception):
    pass


def _status(spec: StreamSpec, fresh, kafka_config: Mapping[str, object] | None, searcher: Searcher):
    """A stream's freshness, plus its Kafka watermarks and lags when Kafka is configured."""
    base = schemas.Freshness.of(fresh).model_dump()
    extra: dict[str, Any] = {
        "watermarks": None,
        "committed": None,
        "consumer_lag": None,
        "unsearchable_records": None,
        "kafka_error": None,
    }
    if kafka_config is not None:
        from freshlake.delta.tables import committed_offsets
        from freshlake.kafka.consumer import topic_partitions, watermarks
        from freshlake.lag import consumer_lag

        try:
            partitions = topic_partitions(kafka_config, topic=spec.topic, timeout=KAFKA_TIMEOUT_S)
            marks = watermarks(kafka_config, topic=spec.topic, partitions=partitions, timeout=KAFKA_TIMEOUT_S)
            committed = committed_offsets(
                f"{searcher.delta_root}/{spec.name}/raw",
                topic=spec.topic,
                partitions=partitions,
                storage_options=searcher.storage_options or None,
            )
        except FreshlakeError as exc:
            extra["kafka_error"] = str(exc)
        else:
            high = dict(marks.high)
            extra.update(
                watermarks={str(p): o for p, o in sorted(high.items())},
                committed={str(p): committed.get(p) for p in sorted(high)},
                consumer_lag=consumer_lag(high=high, committed=committed, low=marks.low),
                unsearchable_records=sum(
                    max(0, h - max(fresh.searchable_offsets.get(p, -1) + 1, marks.low.get(p, 0)))
                    for p, h in high.items()
                ),
            )
    return schemas.StreamStatus(**base, **extra)
