"""SIGINT/SIGTERM as a request to stop between micro-batches, not an exception mid-commit.

A commit interrupted half-way is safe (the next run plans from the txn log), but it is wasted
work and a noisy failure; Dagster's `terminate` and a deployment's SIGTERM only ask the run to
end, so the loop finishes the batch in hand and returns.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_on_signals(stop: threading.Event | None = None) -> Iterator[threading.Event]:
    """Within the block, SIGINT and SIGTERM set the returned event; the old handlers come back
    after it. Off the main thread (where Python cannot install handlers) nothing is installed."""
    stop = stop or threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig in SIGNALS:
        signal.signal(sig, lambda *_: stop.set())
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
