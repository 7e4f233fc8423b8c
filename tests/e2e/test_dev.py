"""`freshlake dev` as `make run` starts it (the example's streams file and producer): UI up, topics
filling, raw tables filling by themselves through the daemon's sensors, every child reading the same
streams file, and nothing left running after Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from freshlake.delta.tables import committed_offsets
from freshlake.kafka.broker import free_port
from tests.demo_streams import DEMO_STREAMS, EXAMPLE_FILE

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_dev_runs_the_platform_and_stops_clean(tmp_path) -> None:
    port = free_port()
    drop = {"KAFKA_BOOTSTRAP_SERVERS", "DAGSTER_HOME", "FRESHLAKE_STREAMS"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(FRESHLAKE_HOME=str(tmp_path / "home"), PYTHONUNBUFFERED="1")
    log = (tmp_path / "dev.log").open("w+")
    producer = f"{sys.executable} -m examples.flight_assistant.producer --rate 40"
    streams = ["--streams", str(EXAMPLE_FILE.relative_to(ROOT))]  # relative: children get it resolved
    dev = subprocess.Popen(
        [sys.executable, "-m", "freshlake.cli", "dev", "--port", str(port), *streams, "--producer", producer],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        bootstrap = None
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and bootstrap is None:
            assert dev.poll() is None, Path(log.name).read_text()[-3000:]
            found = re.search(r"freshlake is up: .* broker (\S+)  embedder (\S+)", Path(log.name).read_text())
            bootstrap = found.group(1) if found else None
            embedder_url = found.group(2) if found else None
            time.sleep(1)
        assert bootstrap, Path(log.name).read_text()[-3000:]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=10) as reply:
            assert reply.status == 200

        # The sensors run by default: every demo stream's raw table fills with no manual action.
        config = {"bootstrap.servers": bootstrap}
        delta = tmp_path / "home" / "delta"
        deadline = time.monotonic() + 180
        filled: set[str] = set()
        while time.monotonic() < deadline and len(filled) < len(DEMO_STREAMS):
            for spec in DEMO_STREAMS:
                offsets = committed_offsets(
                    str(delta / spec.name / "raw"), topic=spec.topic, partitions=[0, 1, 2]
                )
                if any(v is not None for v in offsets.values()):
                    filled.add(spec.name)
            time.sleep(2)
        assert filled == {s.name for s in DEMO_STREAMS}, Path(log.name).read_text()[-4000:]
        import polars as pl

        from freshlake.kafka.consumer import watermarks

        assert pl.read_delta(str(delta / "flights" / "raw")).height > 0
        assert all(sum(watermarks(config, topic=s.topic).high.values()) > 0 for s in DEMO_STREAMS)

        # The same runs carried on to current and embeddings; search answers from them.
        search_env = {**env, "FRESHLAKE_EMBEDDER_URL": embedder_url}
        hits: list = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not {"flights", "policies"} <= {h["stream"] for h in hits}:
            found = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "freshlake.cli",
                    "search",
                    "cancelled flight refund",
                    "--k",
                    "10",
                    "--json",
                    *streams,
                ],
                cwd=ROOT,
                env=search_env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert found.returncode in (0, 1), found.stderr  # 1: no embedded data yet; 2: a usage error
            hits = json.loads(found.stdout) if found.returncode == 0 else []
            time.sleep(2)
        assert {"flights", "policies"} <= {h["stream"] for h in hits}, Path(log.name).read_text()[-4000:]
        assert all(
            h["as_of"].startswith("as of") and h["provenance"]["source_offset"] is not None for h in hits
        )

        family = descendants(dev.pid)
        assert len(family) >= 3  # broker, dagster dev, webserver/daemon
        # The code location, the daemon's sensors and the producer read the file dev was given.
        children = {pid: cmdline(pid) for pid in family}
        dagster = [pid for pid, line in children.items() if "dagster" in line]
        example = [pid for pid, line in children.items() if "examples.flight_assistant.producer" in line]
        assert dagster and example, children
        for pid in [*dagster, *example]:
            assert environ(pid).get("FRESHLAKE_STREAMS") == str(EXAMPLE_FILE), children[pid]
        assert environ(example[0]).get("KAFKA_BOOTSTRAP_SERVERS") == bootstrap
    finally:
        dev.send_signal(signal.SIGINT)
        try:
            dev.wait(timeout=60)
        except subprocess.TimeoutExpired:
            dev.kill()
            raise
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(alive(p) for p in family):
        time.sleep(0.5)
    assert not [p for p in family if alive(p)], "processes left behind after Ctrl-C"
    assert "freshlake stopped" in Path(log.name).read_text()
