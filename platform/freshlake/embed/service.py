"""The warm embedding service: one loaded model behind stdlib HTTP, and its client.

A Dagster run is a new process; importing sentence-transformers alone costs ~7 s of the 10 s
produce -> searchable budget. The service keeps one model warm; runs embed through
`EmbeddingServiceClient`, which needs only numpy and the stdlib (this module never imports torch).

Wire format: `POST /embed` with JSON `{"texts": [...]}` answers raw little-endian float32 bytes,
row-major (rows x dimension), described by the `X-Rows`/`X-Dimension`/`X-Model-*` headers.

With `FRESHLAKE_EMBEDDER_TOKEN` set, `/embed` answers 401 unless the request carries
`Authorization: Bearer <token>` (the client sends it from the same variable); `/health` stays
open for liveness probes and reveals only the model's name. The client retries a service that
is down or restarting with backoff (0.5 s doubling to 5 s, `retry_seconds` in all).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from email.message import Message
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from freshlake.embed.base import Embedder
from freshlake.errors import FreshlakeConfigError, FreshlakeError

log = logging.getLogger(__name__)

MAX_TEXTS_PER_REQUEST = 256
TOKEN_ENV = "FRESHLAKE_EMBEDDER_TOKEN"
RETRY_SECONDS = 60.0
HEALTH_RETRY_SECONDS = 2.0
_WIRE_DTYPE = np.dtype("<f4")
_FROM_ENV = object()


def token_from_env() -> str | None:
    return (os.environ.get(TOKEN_ENV) or "").strip() or None


def describe(embedder: Embedder) -> dict[str, Any]:
    """What `/health` answers: enough to record provenance and to spot a precision mix-up."""
    return {
        "model_name": embedder.model_name,
        "model_version": embedder.model_version,
        "dimension": embedder.dimension,
        "device": getattr(embedder, "device", None),
        "precision": getattr(embedder, "precision", None),
    }


def make_server(
    *, host: str = "127.0.0.1", port: int, embedder: Embedder, token: str | object | None = _FROM_ENV
) -> ThreadingHTTPServer:
    """A bound (not yet serving) server; port 0 picks a free port (see `server_address`).

    Args:
        token: the bearer token `/embed` requires; default `$FRESHLAKE_EMBEDDER_TOKEN` (none
            when unset: the embedded default serves loopback only)."""
    required = token_from_env() if token is _FROM_ENV else token
    expected = f"Bearer {required}".encode() if required else None
    lock = threading.Lock()  # one model: concurrent requests queue instead of oversubscribing

    class Handler(BaseHTTPRequestHandler):
        server_version = "freshlake-embedder/1"

        def do_GET(self) -> None:
            if self.path.rstrip("/") != "/health":
                self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint {self.path}"})
                return
            self._send_json(HTTPStatus.OK, describe(embedder))

        def do_POST(self) -> None:
            if self.path.rstrip("/") != "/embed":
                self._send_json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint {self.path}"})
                return
            if expected is not None:
                given = (self.headers.get("Authorization") or "").encode()
                if not hmac.compare_digest(given, expected):
                    error = "a bearer token is required" if not given else "the bearer token is wrong"
                    self._send_json(
                        HTTPStatus.UNAUTHORIZED, {"error": f"{error}: set {TOKEN_ENV} to the service's token"}
                    )
                    return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                texts = json.loads(self.rfile.read(length))["texts"]
                if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                    raise TypeError("texts must be a list of strings")
            except (ValueError, KeyError, TypeError) as exc:
                msg = f'body must be JSON {{"texts": [str, ...]}}: {exc}'
                self._send_json(HTTPStatus.BAD_REQUEST, {"error": msg})
                return
            started = time.perf_counter()
            try:
                with lock:
                    vectors = embedder.embed(texts)
            except Exception as exc:
                log.exception("embedding failed", extra={"rows": len(texts)})
                self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": repr(exc)})
                return
            body = np.ascontiguousarray(vectors, dtype=_WIRE_DTYPE).tobytes()
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Rows", str(len(texts)))
            self.send_header("X-Dimension", str(embedder.dimension))
            self.send_header("X-Model-Name", embedder.model_name)
            self.send_header("X-Model-Version", embedder.model_version)
            self.end_headers()
            self.wfile.write(body)
            log.debug(
                "embedded",
                extra={"rows": len(texts), "seconds": round(time.perf_counter() - started, 4)},
            )

        def _send_json(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http " + format, *args)

    try:
        return ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        msg = f"cannot listen on {host}:{port} ({exc}): choose another port with --port"
        raise FreshlakeConfigError(msg) from exc


def serve(
    *,
    host: str = "127.0.0.1",
    port: int,
    embedder: Embedder,
    ready: threading.Event | None = None,
    stop: threading.Event | None = None,
    token: str | object | None = _FROM_ENV,
) -> None:
    """Serve `embedder` until `stop` is set (or KeyboardInterrupt); sets `ready` once listening."""
    server = make_server(host=host, port=port, embedder=embedder, token=token)
    if stop is not None:

        def stop_when_asked() -> None:
            stop.wait()
            server.shutdown()

        threading.Thread(target=stop_when_asked, name="embedder-stop", daemon=True).start()
    bound_host, bound_port = server.server_address[:2]
    log.info("embedding service listening", extra={"url": f"http://{bound_host}:{bound_port}"})
    if ready is not None:
        ready.set()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


class EmbeddingServiceClient:
    """An `Embedder` that asks the warm service; model name/version come from its `/health`.

    Args:
        url: the service root, e.g. http://127.0.0.1:8765.
        timeout: seconds per HTTP request (one request embeds up to 256 texts).
        token: sent as `Authorization: Bearer`; default `$FRESHLAKE_EMBEDDER_TOKEN`.
        retry_seconds: how long a service that does not answer is retried, with backoff.
    """

    def __init__(
        self,
        *,
        url: str,
        timeout: float = 60,
        token: str | object | None = _FROM_ENV,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            msg = f"embedding service URL must start with http:// or https://, got {url!r}"
            raise FreshlakeConfigError(msg)
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.token = token_from_env() if token is _FROM_ENV else token
        self.retry_seconds = retry_seconds
        self.retries = 0  # requests retried so far (visible in run metadata/logs)
        self._health: dict[str, Any] | None = None

    def health(self) -> dict[str, Any]:
        """The service's `/health`, fetched once (raises FreshlakeError when it is down)."""
        if self._health is None:  # asked when a run starts: a service that is not up fails it soon
            _, body = self._fetch(
                urllib.request.Request(f"{self.url}/health"), retry_seconds=HEALTH_RETRY_SECONDS
            )
            self._health = json.loads(body)
        return self._health

    @property
    def model_name(self) -> str:
        return str(self.health()["model_name"])

    @property
    def model_version(self) -> str:
        return str(self.health()["model_version"])

    @property
    def dimension(self) -> int:
        return int(self.health()["dimension"])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        dimension = self.dimension
        if not texts:
            return np.empty((0, dimension), dtype=np.float32)
        # Longest first across all requests, as one big `model.encode` would: each request then
        # holds texts of similar length, and the model pads less.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), dimension), dtype=np.float32)
        for i in range(0, len(order), MAX_TEXTS_PER_REQUEST):
            rows = order[i : i + MAX_TEXTS_PER_REQUEST]
            out[rows] = self._embed_batch([texts[r] for r in rows], dimension)
        return out

    def _embed_batch(self, texts: list[str], dimension: int) -> np.ndarray:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(
            f"{self.url}/embed", data=json.dumps({"texts": texts}).encode(), headers=headers, method="POST"
        )
        headers, body = self._fetch(request)
        version, rows = headers.get("X-Model-Version"), int(headers.get("X-Rows", -1))
        if version != self.model_version:  # restarted with another precision: vectors would mix
            msg = (
                f"embedding service at {self.url} switched model version from "
                f"{self.model_version} to {version}: rerun so all vectors come from one model"
            )
            raise FreshlakeError(msg)
        if rows != len(texts) or len(body) != rows * dimension * _WIRE_DTYPE.itemsize:
            msg = (
                f"embedding service at {self.url} answered {len(body)} bytes for "
                f"{len(texts)} texts of dimension {dimension} (X-Rows {rows})"
            )
            raise FreshlakeError(msg)
        return np.frombuffer(body, dtype=_WIRE_DTYPE).reshape(rows, dimension)

    def _fetch(
        self, request: urllib.request.Request, *, retry_seconds: float | None = None
    ) -> tuple[Message, bytes]:
        """One request; a refused or dropped connection (a restart) is retried with backoff."""
        budget = self.retry_seconds if retry_seconds is None else min(retry_seconds, self.retry_seconds)
        deadline = time.monotonic() + budget
        delay = 0.5
        while True:
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return response.headers, response.read()
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode(errors="replace")[:500]
                if exc.code == HTTPStatus.UNAUTHORIZED:
                    msg = (
                        f"embedding service at {self.url} refused the request (401: {detail}): "
                        f"set {TOKEN_ENV} to the token the service was started with"
                    )
                    raise FreshlakeConfigError(msg) from None
                msg = f"embedding service at {self.url} answered {exc.code}: {detail}"
                raise FreshlakeError(msg) from exc
            except (urllib.error.URLError, OSError) as exc:
                if time.monotonic() + delay > deadline:
                    msg = (
                        f"embedding service at {self.url} is not answering ({exc}) after "
                        f"{self.retries} retries over {budget:.0f}s: start it with "
                        "`freshlake embedder` or unset FRESHLAKE_EMBEDDER_URL"
                    )
                    raise FreshlakeConfigError(msg) from exc
                self.retries += 1
                log.warning(
                    "embedding service not answering; retrying",
                    extra={"url": self.url, "retry": self.retries, "wait_s": delay},
                )
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
