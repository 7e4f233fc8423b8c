"""`freshlake dev` as a test fixture: started in a fresh home, stopped with Ctrl-C, and checked
to leave no process behind."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from freshlake.kafka.broker import free_port
from tests.demo_streams import EXAMPLE_FILE
from tests.e2e.test_dev import alive, descendants

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Dev:
    home: Path
    port: int
    log_path: Path
    process: subprocess.Popen
    bootstrap: str = ""
    embedder_url: str = ""
    family: set[int] = field(default_factory=set)
    killed: bool = False

    def kill_all(self) -> None:
        """SIGKILL every process of the stack at once: no clean path runs anywhere."""
        self.family |= descendants(self.process.pid) | {self.process.pid}
        for pid in self.family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.killed = True
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(pid) for pid in self.family):
            time.sleep(0.1)
        assert not [pid for pid in self.family if alive(pid)], "processes alive after SIGKILL"

    def log_tail(self, chars: int = 4000) -> str:
        return f"dev log tail:\n{self.log_path.read_text()[-chars:]}"


@contextmanager
def freshlake_dev(
    tmp_path: Path, *, args: Sequence[str] = (), env: Mapping[str, str] = (), up_within: float = 150
) -> Iterator[Dev]:
    """`freshlake dev ARGS` with FRESHLAKE_HOME under `tmp_path`, up (UI, broker, embedder); the
    streams are the example's unless `env` sets FRESHLAKE_STREAMS."""
    home = tmp_path / "home"
    port = free_port()
    environment = {
        k: v
        for k, v in os.environ.items()
        if k not in {"KAFKA_BOOTSTRAP_SERVERS", "DAGSTER_HOME", "FRESHLAKE_EMBEDDER_URL"}
    }
    environment.update(FRESHLAKE_HOME=str(home), FRESHLAKE_STREAMS=str(EXAMPLE_FILE), PYTHONUNBUFFERED="1")
    environment.update(env)
    log_path = tmp_path / "dev.log"
    with log_path.open("w+") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "freshlake.cli", "dev", *args, "--port", str(port)],
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        dev = Dev(home=home, port=port, log_path=log_path, process=process)
        try:
            deadline = time.monotonic() + up_within
            found = None
            while time.monotonic() < deadline and found is None:
                assert process.poll() is None, dev.log_tail()
                found = re.search(r"freshlake is up: .* broker (\S+)\s+embedder (\S+)", log_path.read_text())
                time.sleep(1)
            assert found, dev.log_tail()
            dev.bootstrap, dev.embedder_url = found.group(1), found.group(2)
            dev.family = descendants(process.pid)
            yield dev
        finally:
            dev.family |= descendants(process.pid)
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                raise
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(alive(p) for p in dev.family):
        time.sleep(0.5)
    assert not [p for p in dev.family if alive(p)], "processes left behind after Ctrl-C"
    assert dev.killed or "freshlake stopped" in log_path.read_text()
