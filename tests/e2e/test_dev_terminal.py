"""`freshlake dev` with the demo producer for ~60 s: the terminal stays readable (Dagster's event
stream and the services' output are in `$FRESHLAKE_HOME/logs`), the CLI finds the running stack
through dev.json with no variable set (status, search via the warm embedder), and Ctrl-C leaves
no run queued, started or failed by the stop.

Budget: the issue asks for under ~200 lines in 15 minutes. Routine output is the up line and the
stop lines only, so the lines printed after the up line in 60 s must stay under 200 / 15 = 13;
a healthy demo prints none (failed runs and pages are the only other lines)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.devproc import freshlake_dev

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
RUN_SECONDS = 60
LINES_PER_MINUTE = 200 / 15


def cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "FRESHLAKE_", "DAGSTER_HOME"))}
    env["FRESHLAKE_HOME"] = str(home)  # the only thing the user's shell would say (or the cwd)
    return subprocess.run(
        [sys.executable, "-m", "freshlake.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_terminal_stays_small_and_the_cli_finds_the_stack(tmp_path, monkeypatch) -> None:
    producer = f"{sys.executable} -m examples.flight_assistant.producer --rate 5"
    with freshlake_dev(tmp_path, args=["--producer", producer]) as dev:
        up_at = time.monotonic()
        state = json.loads((dev.home / "dev.json").read_text())
        assert state["bootstrap"] == dev.bootstrap and state["embedder_url"] == dev.embedder_url
        assert state["ui_url"] == f"http://127.0.0.1:{dev.port}"
        assert Path(state["dagster_home"]) == dev.home / "dagster"

        # No variable set: status reads the broker and DAGSTER_HOME from dev.json.
        status = cli("status", "--json", home=dev.home)
        rows = json.loads(status.stdout)
        assert rows and all(r["error"] is None for r in rows), status.stdout + status.stderr

        # Search embeds through the warm embedder found via dev.json.
        from freshlake.dev import apply_dev_state
        from freshlake.retrieval import Searcher

        env: dict[str, str] = {}
        apply_dev_state(env, home=dev.home)
        for name, value in {**env, "FRESHLAKE_HOME": str(dev.home)}.items():
            monkeypatch.setenv(name, value)
        from freshlake.config import load_streams

        searcher = Searcher.open(streams=load_streams(env["FRESHLAKE_STREAMS"]).document_streams)
        timings: list[float] = []
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            started = time.monotonic()
            result = searcher.search("delayed flight gate change", k=3)
            timings.append(time.monotonic() - started)
            if result.documents and len(timings) >= 4:
                break
            time.sleep(2)
        assert result.documents, dev.log_tail()
        # Reported, not asserted: speed is the benchmarks' job (a loaded CI box is slower).
        print(f"search via the warm embedder: {', '.join(f'{t:.2f}s' for t in timings[-3:])}")

        time.sleep(max(0.0, RUN_SECONDS - (time.monotonic() - up_at)))
        terminal = dev.log_path.read_text()
    after = dev.log_path.read_text()
    lines = terminal.splitlines()
    up = next(i for i, line in enumerate(lines) if line.startswith("freshlake is up:"))
    routine = lines[up + 1 :]
    assert len(routine) < RUN_SECONDS / 60 * LINES_PER_MINUTE, terminal
    assert up <= 2, terminal  # nothing but the up line before it (a warning at most)
    for noise in ("Traceback", "BetaWarning", "dg dev", "DEBUG", "BrokenPipe"):
        assert noise not in after, after
    assert len(after.splitlines()) < len(lines) + 5, after  # the stop: a few lines, no traceback
    logs = dev.home / "logs"
    assert (logs / "dagster.log").stat().st_size > 10_000  # the event stream went there
    assert {"dagster.log", "embedder.log", "producer.log", "broker.log"} <= {p.name for p in logs.iterdir()}
    assert not (dev.home / "dev.json").exists()  # removed at a clean stop

    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    with DagsterInstance.from_config(str(dev.home / "dagster")) as instance:
        stuck = instance.get_runs(
            filters=RunsFilter(
                statuses=[
                    DagsterRunStatus.QUEUED,
                    DagsterRunStatus.NOT_STARTED,
                    DagsterRunStatus.STARTING,
                    DagsterRunStatus.STARTED,
                ]
            )
        )
        failed = instance.get_runs(filters=RunsFilter(statuses=[DagsterRunStatus.FAILURE]))
        assert not stuck, [(r.job_name, r.status) for r in stuck]
        assert not failed, [(r.job_name, r.run_id) for r in failed]
        assert instance.get_runs(limit=1), "no run at all: the producer's messages were not ingested"
