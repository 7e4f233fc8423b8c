"""A streaming run killed anywhere in a batch: the next run continues, nothing lost or doubled.

The loop runs in a child process (`tests/integration/streaming_child.py`) against the real
broker, Delta and LanceDB (hash embedder); it is SIGKILLed while its raw commit is being written,
after raw committed but before `current`, and after `current` but before LanceDB; a SIGTERM ends
one between batches. Then raw, current and LanceDB must hold every offset exactly once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from freshlake.delta.tables import open_table
from freshlake.kafka.topics import ensure_topics
from freshlake.resources.storage import StorageResource
from tests.demo_streams import demo_stream

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


class Flights:
    """Flight events with unique keys; remembers each one's (partition, offset)."""

    def __init__(self, kafka_config, topic: str) -> None:
        from confluent_kafka import Producer

        self.topic = topic
        self.producer = Producer({**kafka_config, "enable.idempotence": True})
        self.position: dict[str, tuple[int, int]] = {}
        self.sent = 0

    def send(self, count: int) -> None:
        def delivered(err, message) -> None:
            assert err is None, err
            self.position[message.key().decode()] = (message.partition(), message.offset())

        for _ in range(count):
            self.sent += 1
            key = f"SK{self.sent:04d}"
            record = {
                "flight_id": key,
                "flight_number": "SK1",
                "airline": "Test Air",
                "origin": "OSL",
                "destination": "CPH",
                "status": "delayed",
                "event_time": datetime.now(UTC).isoformat(),
                "version": 1,
            }
            self.producer.produce(
                self.topic, key=key.encode(), value=json.dumps(record).encode(), on_delivery=delivered
            )
            self.producer.poll(0)
        assert self.producer.flush(10) == 0


class Child:
    def __init__(self, tmp_path: Path, *, bootstrap: str, topic: str, **settings) -> None:
        self.marker = tmp_path / f"marker-{time.monotonic_ns()}"
        config = {"bootstrap": bootstrap, "topic": topic, "root": str(tmp_path), "marker": str(self.marker)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.streaming_child", json.dumps({**config, **settings})],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def wait_for_marker(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not self.marker.exists():
            assert self.process.poll() is None, self.process.stdout.read()
            assert time.monotonic() < deadline, "the child never reached its pause"
            time.sleep(0.05)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def lines(self, timeout: float = 120) -> list[str]:
        out, _ = self.process.communicate(timeout=timeout)
        return out.splitlines()


def stores(tmp_path: Path, topic: str):
    spec = dataclasses.replace(demo_stream("flights"), topic=topic)
    return spec, StorageResource(delta_root=str(tmp_path / "delta"), lance_root=str(tmp_path / "lance"))


def assert_exactly_once(tmp_path: Path, topic: str, position: dict[str, tuple[int, int]]) -> None:
    spec, storage = stores(tmp_path, topic)
    raw = open_table(storage.delta_uri(spec, "raw")).to_pyarrow_table(
        columns=["kafka_partition", "kafka_offset"]
    )
    raw_positions = list(zip(*(raw.column(c).to_pylist() for c in raw.column_names), strict=True))
    assert sorted(raw_positions) == sorted(position.values())  # each offset once, none missing

    current = open_table(storage.delta_uri(spec, "current")).to_pyarrow_table().to_pylist()
    assert not [r for r in current if r["is_deleted"]]
    assert {r["key"]: (r["source_partition"], r["source_offset"]) for r in current} == position
    assert len(current) == len(position)

    rows = storage.live_store(spec).table.to_arrow().to_pylist()
    chunks = Counter((r["key"], r["chunk_index"]) for r in rows)
    assert max(chunks.values()) == 1  # no chunk written twice
    documents = {r["key"]: (r["source_partition"], r["source_offset"]) for r in rows if r["chunk_index"] == 0}
    assert documents == position


@pytest.mark.timeout(400)
def test_killed_mid_commit_and_mid_batch_then_restarted_holds_every_offset_once(
    kafka_config, unique_topic, tmp_path
) -> None:
    ensure_topics(kafka_config, topics={unique_topic: 3})
    flights = Flights(kafka_config, unique_topic)
    bootstrap = str(kafka_config["bootstrap.servers"])
    flights.send(60)
    for stage in ("commit", "fold", "embed"):
        child = Child(tmp_path, bootstrap=bootstrap, topic=unique_topic, pause_at=stage)
        child.wait_for_marker()
        flights.send(25)  # arrives while the batch hangs: the next run's to read
        child.kill()

    # SIGTERM: the batch in hand finishes, then the run ends cleanly.
    child = Child(tmp_path, bootstrap=bootstrap, topic=unique_topic, idle_seconds=60, slow_batches=0.5)
    deadline = time.monotonic() + 90
    first = child.process.stdout.readline()
    assert first.startswith('{"batch": 1'), first
    assert time.monotonic() < deadline
    flights.send(10)
    child.process.send_signal(signal.SIGTERM)
    lines = [first.strip(), *child.lines(timeout=60)]
    assert child.process.returncode == 0, lines
    assert lines[-1] == "ended stopped", lines

    flights.send(15)
    last = Child(tmp_path, bootstrap=bootstrap, topic=unique_topic, idle_seconds=2)
    lines = last.lines()
    assert last.process.returncode == 0 and lines[-1] == "ended idle", lines
    assert len(flights.position) == 60 + 3 * 25 + 10 + 15
    assert_exactly_once(tmp_path, unique_topic, flights.position)
