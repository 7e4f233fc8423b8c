"""Small real pieces the prod tests share: a flight producer with its model, and table readers."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid

from freshlake.delta.tables import open_table
from freshlake.ingest.raw import RawTables
from freshlake.kafka.topics import ensure_topics
from freshlake.profiles.prod import LAKE_BUCKET
from freshlake.streams import StreamSpec
from tests.demo_streams import demo_stream

KEYS = 50


def flights_spec(config, *, partitions: int = 3) -> StreamSpec:
    topic = f"prod-{uuid.uuid4().hex[:8]}-flights"
    ensure_topics(config, topics={topic: partitions})
    return dataclasses.replace(demo_stream("flights"), topic=topic)


def event(n: int) -> tuple[bytes, dict]:
    """The n-th event: flight F<n % KEYS> at version n (so the newest per key is the largest n)."""
    flight = f"F{n % KEYS:03d}"
    return flight.encode(), {
        "flight_id": flight,
        "flight_number": flight,
        "airline": "United",
        "origin": "SFO",
        "destination": "JFK",
        "status": f"status-{n}",
        "version": n,
        "event_time": "2026-11-21T10:00:00+00:00",
    }


class Producer:
    """Produces events 0..count-1 (idempotent, acks=all) and records every delivery report."""

    def __init__(self, config, topic: str) -> None:
        from confluent_kafka import Producer as Kafka

        self.topic, self.delivered, self.failed = topic, [], []
        self._kafka = Kafka({**config, "enable.idempotence": True, "linger.ms": 5, "log_level": 0})

    def _report(self, err, msg) -> None:
        (self.failed if err else self.delivered).append(err or (msg.partition(), msg.offset(), msg.key()))

    def produce(self, numbers, *, pause: float = 0.0) -> None:
        for n in numbers:
            key, value = event(n)
            self._kafka.produce(
                self.topic, key=key, value=json.dumps(value).encode(), on_delivery=self._report
            )
            self._kafka.poll(0)
            if pause:
                time.sleep(pause)

    def flush(self, timeout: float = 60) -> int:
        return self._kafka.flush(timeout)

    def in_thread(self, numbers, *, pause: float) -> threading.Thread:
        thread = threading.Thread(target=self.produce, args=(numbers,), kwargs={"pause": pause}, daemon=True)
        thread.start()
        return thread


def model(numbers) -> dict[str, int]:
    """key -> newest version, of events `numbers`."""
    out: dict[str, int] = {}
    for n in numbers:
        key = event(n)[0].decode()
        out[key] = max(out.get(key, -1), n)
    return out


def lake_tables(spec: StreamSpec, options: dict[str, str]) -> tuple[RawTables, str]:
    root = f"s3://{LAKE_BUCKET}/delta/{spec.topic}"
    return RawTables(
        raw=f"{root}/raw", quarantine=f"{root}/quarantine", storage_options=options
    ), f"{root}/current"


def raw_rows(tables: RawTables) -> list[tuple[int, int, int]]:
    table = open_table(tables.raw, storage_options=tables.storage_options)
    rows = table.to_pyarrow_table(columns=["kafka_partition", "kafka_offset", "version"]).to_pylist()
    return [(r["kafka_partition"], r["kafka_offset"], r["version"]) for r in rows]


def current_state(uri: str, options: dict[str, str]) -> dict[str, tuple[int, int]]:
    """key -> the (partition, offset) its `current` row came from (`version` there is
    freshlake's ordering key, not the event's field)."""
    table = open_table(uri, storage_options=options)
    columns = ["key", "source_partition", "source_offset"]
    return {
        r["key"]: (r["source_partition"], r["source_offset"])
        for r in table.to_pyarrow_table(columns=columns).to_pylist()
    }


def log_events(config, topic: str) -> dict[tuple[int, int], int]:
    """(partition, offset) -> event version of everything the broker holds for `topic`, read
    from offset 0 to freshlake's fetch-derived watermarks (Tansu's ListOffsets lags on S3)."""
    from confluent_kafka import TopicPartition

    from freshlake.kafka.consumer import reader, watermarks

    marks = watermarks(config, topic=topic)
    pending = {p: high for p, high in marks.high.items() if high > marks.low[p]}
    consumer = reader({**config, "group.id": "freshlake-prod-check"})
    out: dict[tuple[int, int], int] = {}
    try:
        consumer.assign([TopicPartition(topic, p, marks.low[p]) for p in pending])
        deadline = time.monotonic() + 60
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=1000, timeout=0.5):
                if message.error() is not None:
                    continue
                p, offset = message.partition(), message.offset()
                out[(p, offset)] = json.loads(message.value())["version"]
                if p in pending and offset + 1 >= pending[p]:
                    del pending[p]
        assert not pending, f"could not read {topic} to its watermarks {marks.high}: {pending}"
        return out
    finally:
        consumer.close()
