"""`make run`, Ctrl-C, `make run` again, then SIGKILL of the whole stack and `make run` once
more: every start continues ingesting where the last stopped, and raw (with quarantine) holds
every offset of the topic exactly once. The broker's log lives under FRESHLAKE_HOME."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import polars as pl
import pytest

from freshlake.kafka.consumer import watermarks
from tests.e2e.devproc import freshlake_dev

pytestmark = pytest.mark.e2e

STREAM, TOPIC = "flights", "flights"
PRODUCER = f"{sys.executable} -m examples.flight_assistant.producer --rate 20 --streams flights"


def ingested(home: Path) -> list[tuple[int, int]]:
    """(partition, offset) of every message raw and quarantine hold for the stream."""
    found: list[tuple[int, int]] = []
    for table in ("raw", "quarantine"):
        uri = home / "delta" / STREAM / table
        if (uri / "_delta_log").is_dir():
            rows = pl.read_delta(str(uri), columns=["kafka_partition", "kafka_offset"])
            found += list(zip(rows["kafka_partition"].to_list(), rows["kafka_offset"].to_list(), strict=True))
    return found


def wait_for_more(home: Path, *, than: int, dev, within: float = 150) -> int:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        count = len(ingested(home))
        if count > than:
            return count
        assert dev.process.poll() is None, dev.log_tail()
        time.sleep(2)
    raise AssertionError(f"raw did not grow past {than} in {within:.0f}s\n{dev.log_tail()}")


def assert_exactly_once_up_to_the_topic(home: Path, bootstrap: str, *, dev, within: float = 120) -> None:
    """Once the producer is quiet, raw + quarantine = every offset of the topic, each once."""
    deadline = time.monotonic() + within
    while True:
        high = watermarks({"bootstrap.servers": bootstrap}, topic=TOPIC).high
        coords = ingested(home)
        expected = {(p, o) for p, end in high.items() for o in range(end)}
        if set(coords) == expected or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert len(coords) == len(set(coords)), "an offset twice in raw"
    missing = sorted(expected - set(coords))
    assert not missing, f"{len(missing)} offsets never ingested, e.g. {missing[:5]}\n{dev.log_tail()}"
    assert set(coords) == expected


def test_restart_after_ctrl_c_and_after_sigkill_continues_exactly_once(tmp_path) -> None:
    home = tmp_path / "home"
    env = {"FRESHLAKE_HOME": str(home)}
    args = ["--producer", PRODUCER]
    (tmp_path / "1").mkdir()
    with freshlake_dev(tmp_path / "1", args=args, env=env) as dev:
        first = wait_for_more(home, than=20, dev=dev)
    # Ctrl-C (the fixture's exit); the second start finds its topics, offsets and runs.
    (tmp_path / "2").mkdir()
    with freshlake_dev(tmp_path / "2", args=args, env=env) as dev:
        second = wait_for_more(home, than=first + 20, dev=dev)
        text = dev.log_path.read_text()
        assert "backwards" not in text and "recreated" not in text, dev.log_tail()
        dev.kill_all()  # SIGKILL of every process of the stack at once
    (tmp_path / "3").mkdir()
    with freshlake_dev(tmp_path / "3", env=env) as dev:  # no producer: the topic stands still
        text = dev.log_path.read_text()
        assert "backwards" not in text, dev.log_tail()
        wait_for_more(home, than=second, dev=dev, within=180)  # what arrived before the kill
        assert_exactly_once_up_to_the_topic(home, dev.bootstrap, dev=dev)
