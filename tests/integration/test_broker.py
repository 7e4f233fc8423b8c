from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from freshlake.errors import BrokerStartError
from freshlake.kafka.broker import cluster_id_at, start_broker
from freshlake.kafka.topics import ensure_topics, existing_topics

pytestmark = pytest.mark.integration


def test_broker_answers_with_its_own_cluster_id(broker) -> None:
    assert broker.is_running()
    assert cluster_id_at(broker.bootstrap) == broker.cluster_id
    assert broker.cluster_id.startswith("freshlake-")


def test_stop_ends_the_process_and_the_port_goes_quiet(tmp_path) -> None:
    running = start_broker(log_path=tmp_path / "b.log")
    running.stop()
    assert running.process.returncode is not None
    assert cluster_id_at(running.bootstrap, timeout=0.5) is None


def test_busy_port_is_refused_with_a_clear_message(broker, tmp_path) -> None:
    with pytest.raises(BrokerStartError, match=f"port {broker.port} .* busy"):
        start_broker(port=broker.port, log_path=tmp_path / "b.log")
    assert broker.is_running()


def test_ensure_topics_uses_explicit_partition_counts(kafka_config, unique_topic) -> None:
    created = ensure_topics(kafka_config, topics={unique_topic: 3, f"{unique_topic}-b": 1})
    assert created == {unique_topic: 3, f"{unique_topic}-b": 1}
    # idempotent: a second call changes nothing
    assert ensure_topics(kafka_config, topics={unique_topic: 3})[unique_topic] == 3
    assert existing_topics(kafka_config)[unique_topic] == 3


def test_broker_dies_with_its_parent(tmp_path) -> None:
    """`kill -9` of the process that started the broker leaves no orphan broker behind."""
    script = (
        "import sys,time\n"
        "from freshlake.kafka.broker import start_broker\n"
        f"b = start_broker(log_path={str(tmp_path / 'b.log')!r})\n"
        "print(b.process.pid, b.bootstrap, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    line = parent.stdout.readline().split()
    child_pid, bootstrap = int(line[0]), line[1]
    assert cluster_id_at(bootstrap) is not None
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(child_pid):
        time.sleep(0.05)
    assert not _alive(child_pid)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False
