"""A local HTTP receiver that stands in for PagerDuty or a Slack webhook in tests.

Records every JSON body POSTed to it; can be told to answer with given statuses first (e.g. 500
twice) to exercise retries.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    """What the receiver has seen: every request (path, JSON body) and the statuses it answered."""

    url: str
    requests: list[tuple[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    script: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def bodies(self) -> list[Any]:
        """Bodies of the requests answered with 2xx, in order."""
        with self.lock:
            return [b for (_, b), s in zip(self.requests, self.statuses, strict=True) if s < 300]

    def fail_next(self, statuses: Iterable[int]) -> None:
        """Answer the next requests with these statuses, then 202 again."""
        with self.lock:
            self.script.extend(statuses)


@contextmanager
def local_receiver(*, fail_first: Iterable[int] = ()) -> Iterator[Received]:
    """Serve on 127.0.0.1 on a free port in a thread; yields the record, with its `url`."""
    received: Received

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
            with received.lock:
                status = received.script.pop(0) if received.script else 202
                received.requests.append((self.path, body))
                received.statuses.append(status)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"status":"success"}' if status < 300 else b'{"status":"error"}')

        def log_message(self, format: str, *args: object) -> None:  # quiet
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    host, port = server.server_address[:2]
    received = Received(url=f"http://{host}:{port}/", script=list(fail_first))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="alert-receiver", daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
