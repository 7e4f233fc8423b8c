"""The demo producer against the real embedded broker: what goes in comes back, byte for byte."""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from examples.flight_assistant import example_streams
from examples.flight_assistant.producer import produce_demo
from examples.flight_assistant.world import DemoWorld
from freshlake.errors import FreshlakeConfigError
from freshlake.kafka.topics import existing_topics

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 21, 20, 0, tzinfo=UTC)
TOPICS = ("flights", "bookings", "policies", "feedback")


@pytest.fixture
def prefix() -> str:
    return f"demo-{uuid.uuid4().hex[:8]}-"


def read_all(config: dict[str, object], topics: dict[str, int]) -> list:
    """Every message of `topics`, read with assign() from offset 0 until EOF on every partition."""
    consumer = Consumer(
        {
            **config,
            "group.id": f"test-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    parts = [TopicPartition(t, p, 0) for t, n in topics.items() for p in range(n)]
    consumer.assign(parts)
    pending = {(tp.topic, tp.partition) for tp in parts}
    out = []
    deadline = time.monotonic() + 30
    try:
        while pending and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                assert message.error().code() == KafkaError._PARTITION_EOF, message.error()
                pending.discard((message.topic(), message.partition()))
                continue
            out.append(message)
    finally:
        consumer.close()
    assert not pending, f"no EOF from {pending}"
    return out


def test_count_sends_exactly_the_worlds_first_messages(kafka_config, prefix) -> None:
    sent = produce_demo(config=kafka_config, seed=7, count=600, start=START, topic_prefix=prefix)
    expected = list(itertools.islice(DemoWorld(seed=7, start=START).messages(), 600))
    want = Counter(m.topic for m in expected)
    assert sent == {prefix + t: want[t] for t in TOPICS}
    assert sum(sent.values()) == 600
    have = existing_topics(kafka_config)
    assert {t: have[prefix + t] for t in TOPICS} == dict.fromkeys(TOPICS, 3)

    got = read_all(kafka_config, {prefix + t: 3 for t in TOPICS})
    assert len(got) == 600

    def shape(topic, key, value, headers, timestamp_ms):
        return (topic.removeprefix(prefix), key, value, tuple(headers or ()), timestamp_ms)

    received = [shape(m.topic(), m.key(), m.value(), m.headers(), m.timestamp()[1]) for m in got]
    assert Counter(received) == Counter(
        shape(m.topic, m.key, m.value, m.headers, m.timestamp_ms) for m in expected
    )
    # one key lives on one partition, in the order the world made its changes
    by_key, partitions = defaultdict(list), defaultdict(set)
    for m in got:
        by_key[(m.topic(), m.key())].append(m.value())
        partitions[(m.topic(), m.key())].add(m.partition())
    assert all(len(p) == 1 for p in partitions.values())
    for m in expected:
        assert by_key[(prefix + m.topic, m.key)].pop(0) == m.value


def test_rate_mode_paces_until_stopped(kafka_config, prefix) -> None:
    produce_demo(config=kafka_config, count=1, topic_prefix=prefix, streams=("flights",))
    stop = threading.Event()
    timer = threading.Timer(1.0, stop.set)
    before = datetime.now(UTC)
    timer.start()
    sent = produce_demo(
        config=kafka_config,
        rate=100,
        stop=stop,
        streams=("flights",),
        topic_prefix=prefix,
        create_topics=False,
    )
    timer.cancel()
    assert 60 <= sent[prefix + "flights"] <= 120
    newest = read_all(kafka_config, {prefix + "flights": 3})
    stamps = [m.timestamp()[1] for m in newest]
    assert max(stamps) >= int(before.timestamp() * 1000)  # real time, not the simulated start


def test_unreachable_broker_fails_fast_with_a_clear_message() -> None:
    began = time.monotonic()
    with pytest.raises(FreshlakeConfigError, match=re.escape("127.0.0.1:1")):
        produce_demo(config={"bootstrap.servers": "127.0.0.1:1"}, count=1, timeout=1.0)
    assert time.monotonic() - began < 5


def run_producer(*args: str, bootstrap: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "examples.flight_assistant.producer", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap},
    )


def test_the_examples_entry_point_counts_and_stops_at_ctrl_c(tmp_path) -> None:
    """`python -m examples.flight_assistant.producer`, as `freshlake dev --producer` starts it: the
    example's topics with its file's partitions; SIGINT flushes, prints the counts and exits 0."""
    from freshlake.kafka.broker import start_broker

    specs = {s.name: s for s in example_streams().streams}
    with start_broker(log_path=tmp_path / "broker.log") as own:  # the example's own topic names
        config = {"bootstrap.servers": own.bootstrap}
        counted = run_producer(
            "--count", "50", "--seed", "3", "--streams", "flights,policies", bootstrap=own.bootstrap
        )
        out, err = counted.communicate(timeout=60)
        assert counted.returncode == 0, err
        expected = Counter(
            m.topic
            for m in itertools.islice(
                DemoWorld(seed=3, start=START, streams=("flights", "policies")).messages(), 50
            )
        )
        assert dict(part.split("=") for part in out.split()) == {t: str(n) for t, n in expected.items()}
        have = existing_topics(config)
        assert {t: have[t] for t in expected} == {
            specs[n].topic: specs[n].partitions for n in ("flights", "policies")
        }

        paced = run_producer("--rate", "50", "--streams", "feedback", bootstrap=own.bootstrap)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not existing_topics(config).get(specs["feedback"].topic):
            time.sleep(0.2)
        time.sleep(1.0)
        paced.send_signal(signal.SIGINT)
        out, err = paced.communicate(timeout=30)
        assert paced.returncode == 0, err
        assert int(out.strip().removeprefix(f"{specs['feedback'].topic}=")) > 0
