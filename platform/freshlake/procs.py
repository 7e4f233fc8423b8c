"""Child processes that cannot outlive freshlake."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
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
