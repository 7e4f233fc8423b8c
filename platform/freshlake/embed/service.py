"""The warm embedding service: one loaded model behind stdlib HTTP, and its client.

A Dagster run is a new process; importing sentence-transformers alone costs ~7 s of the 10 s
produce -> searchable budget. The service keeps one model warm; runs embed through
`EmbeddingServiceClient`, which needs only numpy and the stdlib (this module never imports torch).

Wire format: `POST /embed` with JSON `{"texts": [...]}` answers raw little-endian float32 bytes,
row-major (rows x dimension), described by the `X-Rows`/`X-Dimension`/`X-Model-*` headers.
"""

from __future__ import annotations

import json
import logging
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
_WIRE_DTYPE = np.dtype("<f4")


def describe(embedder: Embedder) -> dict[str, Any]:
    """What `/health` answers: enough to record provenance and to spot a precision mix-up."""
    return {
        "model_name": embedder.model_name,
        "model_version": embedder.model_version,
        "dimension": embedder.dimension,
        "device": getattr(embedder, "device", None),
        "precision": getattr(embedder, "precision", None),
    }


def make_server(*, host: str = "127.0.0.1", port: int, embedder: Embedder) -> ThreadingHTTPServer:
    """A bound (not yet serving) server; port 0 picks a free port (see `server_address`)."""
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
) -> None:
    """Serve `embedder` until `stop` is set (or KeyboardInterrupt); sets `ready` once listening."""
    server = make_server(host=host, port=port, embedder=embedder)
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
    """

    def __init__(self, *, url: str, timeout: float = 60) -> None:
        if not url.startswith(("http://", "https://")):
            msg = f"embedding service URL must start with http:// or https://, got {url!r}"
            raise FreshlakeConfigError(msg)
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._health: dict[str, Any] | None = None

    def health(self) -> dict[str, Any]:
        """The service's `/health`, fetched once (raises FreshlakeError when it is down)."""
        if self._health is None:
            _, body = self._fetch(urllib.request.Request(f"{self.url}/health"))
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
        request = urllib.request.Request(
            f"{self.url}/embed",
            data=json.dumps({"texts": texts}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
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

    def _fetch(self, request: urllib.request.Request) -> tuple[Message, bytes]:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.headers, response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            msg = f"embedding service at {self.url} answered {exc.code}: {detail}"
            raise FreshlakeError(msg) from exc
        except (urllib.error.URLError, OSError) as exc:
            msg = (
                f"embedding service at {self.url} is not answering ({exc}): start it with "
                "`freshlake embedder` or unset FRESHLAKE_EMBEDDER_URL"
            )
            raise FreshlakeConfigError(msg) from exc
