"""`freshlake embedder`: load the model once, warm it, and serve it until SIGINT/SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading
import time

from freshlake.errors import FreshlakeConfigError

log = logging.getLogger(__name__)


def run_embedder(*, host: str, port: int, precision: str | None, batch_size: int, device: str) -> int:
    """Serve the packaged model on http://HOST:PORT; prints one `embedder=...` line when ready.

    Args:
        precision: float32 or bfloat16; None means the measured default (see embed.models).
    """
    from freshlake.embed.models import DEFAULT_PRECISION, SentenceTransformerEmbedder
    from freshlake.embed.service import make_server

    try:
        embedder = SentenceTransformerEmbedder(
            device=device,
            precision=precision or DEFAULT_PRECISION,  # type: ignore[arg-type]
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
