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


def _produce(bootstrap: str, topic: str, values: range) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "log_level": 0})
    for value in values:
        producer.produce(topic, key=str(value % 5).encode(), value=str(value).encode())
    assert producer.flush(30) == 0


def _read_all(bootstrap: str, topic: str, *, partitions: int) -> dict[tuple[int, int], int]:
    """Every record of the topic by (partition, offset), read until nothing new comes."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "t", "enable.auto.commit": False, "log_level": 0}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    found: dict[tuple[int, int], int] = {}
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 2.0:
        message = consumer.poll(0.2)
        if message is not None and message.error() is None:
            found[(message.partition(), message.offset())] = int(message.value())
            quiet_since = time.monotonic()
    consumer.close()
    return found


def _offsets_are_dense(records: dict[tuple[int, int], int], *, partitions: int) -> bool:
    return all(
        sorted(o for p, o in records if p == part) == list(range(sum(1 for p, _ in records if p == part)))
        for part in range(partitions)
    )


@pytest.mark.parametrize("how", ["stop", "sigkill"])
def test_a_broker_with_a_data_dir_continues_after_a_restart(tmp_path, how) -> None:
    """Topics, records and offsets come back from disk, also after SIGKILL of broker and store."""
    data, topic = tmp_path / "broker", "durable"
    first = start_broker(log_path=tmp_path / "b.log", data_dir=data)
    try:
        ensure_topics({"bootstrap.servers": first.bootstrap}, topics={topic: 2})
        _produce(first.bootstrap, topic, range(300))
    finally:
        if how == "sigkill":
            first.process.kill()
            first.store.kill()
            first.process.wait()
            first.store.wait()
        first.stop()
    with start_broker(log_path=tmp_path / "b.log", data_dir=data) as second:
        assert second.cluster_id == first.cluster_id
        assert existing_topics({"bootstrap.servers": second.bootstrap})[topic] == 2
        _produce(second.bootstrap, topic, range(300, 500))
        records = _read_all(second.bootstrap, topic, partitions=2)
    assert sorted(records.values()) == list(range(500))  # every acknowledged record, once
    assert _offsets_are_dense(records, partitions=2)  # offsets continued, none reused


def test_a_second_broker_on_the_same_data_dir_is_refused(tmp_path) -> None:
    with start_broker(log_path=tmp_path / "a.log", data_dir=tmp_path / "broker") as running:
        with pytest.raises(BrokerStartError, match="another freshlake broker already uses"):
            start_broker(log_path=tmp_path / "b.log", data_dir=tmp_path / "broker")
        assert running.is_running()
