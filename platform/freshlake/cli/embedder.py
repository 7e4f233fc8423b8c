"""`freshlake embedder`: load the model once, warm it, and serve it until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time

from freshlake.cli.args import positive_int, tcp_port
from freshlake.errors import FreshlakeConfigError

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("embedder", help="serve the embedding model warm over HTTP")
    parser.add_argument("--host", default="127.0.0.1", help="bind address")
    parser.add_argument("--port", type=tcp_port, default=8765, help="port (default 8765)")
    parser.add_argument(
        "--precision",
        choices=("float32", "bfloat16"),
        default=None,
        help="default: float32 (see freshlake.embed.models)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=64, help="encode batch")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.set_defaults(
        func=lambda args: run_embedder(
            host=args.host,
            port=args.port,
            precision=args.precision,
            batch_size=args.batch_size,
            device=args.device,
        )
    )


def run_embedder(*, host: str, port: int, precision: str | None, batch_size: int, device: str) -> int:
    """Serve the packaged model on http://HOST:PORT; prints one `embedder=...` line when ready.

    Args:
        precision: float32 or bfloat16; None means the measured default (see embed.models).
    """
    from freshlake.embed.models import SentenceTransformerEmbedder
    from freshlake.embed.service import make_server

    try:
        embedder = SentenceTransformerEmbedder(
            device=device,
            precision=precision or None,  # type: ignore[arg-type]  # None: this CPU's default
            batch_size=batch_size,
        )
    except ValueError as exc:
        raise FreshlakeConfigError(f"freshlake embedder: {exc}") from None
    server = make_server(host=host, port=port, embedder=embedder)  # fail on a busy port first
    try:
        started = time.perf_counter()
        embedder.embed(["warm up: load the weights and run one forward pass"])
        bound_host, bound_port = server.server_address[:2]
        log.info(
            "embedder warm",
            extra={"seconds": round(time.perf_counter() - started, 2), "device": embedder.device},
        )
        print(
            f"embedder=http://{bound_host}:{bound_port} model={embedder.model_name} "
            f"precision={embedder.precision}",
            flush=True,
        )
        stop = threading.Event()
        previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in _SIGNALS}
        try:
            worker = threading.Thread(target=server.serve_forever, name="embedder-http")
            worker.start()
            while not stop.wait(0.5):  # a short wait keeps the main thread signal-responsive
                pass
            server.shutdown()
            worker.join()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        server.server_close()
    return 0


_SIGNALS = (signal.SIGINT, signal.SIGTERM)
