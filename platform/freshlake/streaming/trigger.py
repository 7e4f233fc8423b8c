"""Which streaming run the offsets sensor asks for: pure, over offsets only."""

from __future__ import annotations

from collections.abc import Mapping


def streaming_run_key(*, topic: str, start: Mapping[int, int]) -> str:
    """Deterministic: the offsets the run starts from (`topic:stream@p0=12,p1=40`).

    A run that commits anything moves `start`, so its successor gets a new key; one that ended
    without committing (a failure, a kill) is followed under `key#retryN`, never de-duplicated.
    """
    return f"{topic}:stream@" + ",".join(f"p{p}={o}" for p, o in sorted(start.items()))


def retry_key(key: str, *, earlier_runs: int) -> str:
    return key if earlier_runs == 0 else f"{key}#retry{earlier_runs}"
