"""Child processes that cannot outlive freshlake."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


def die_with_parent(*, sig: signal.Signals = signal.SIGKILL) -> Callable[[], None]:
    """A `preexec_fn` asking Linux to send `sig` to the child when this process dies."""
    parent_pid = os.getpid()

    def _preexec() -> None:
        if sys.platform.startswith("linux"):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)

    return _preexec


def stop_process(process: subprocess.Popen[bytes], *, sig: signal.Signals, timeout: float) -> None:
    """`sig`, then SIGKILL if it has not exited within `timeout`."""
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def stop_group(process: subprocess.Popen[bytes], *, sig: signal.Signals, timeout: float) -> bool:
    """`sig` to the process group `process` leads (started with `start_new_session`), then
    SIGKILL to whatever of the group is left after `timeout`. True when the group is gone."""
    pgid = process.pid
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return True
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    _wait_group(pgid, seconds=5)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if process.poll() is None:
        process.wait(timeout=5)
    return _wait_group(pgid, seconds=5)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_group(pgid: int, *, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while group_alive(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True
