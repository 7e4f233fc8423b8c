"""Read-your-writes through the service: an event produced to the real broker, searched with its
offset in `after` while a background thread materializes the stream, comes back in that call."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from freshlake.embed.models import HashEmbedder
from freshlake.kafka.topics import ensure_topics
from freshlake.serve.app import create_app
from tests.demo_streams import demo_stream

pytestmark = pytest.mark.integration

ROUNDS = 50


class Materializer(threading.Thread):
    """raw -> current -> embeddings in a loop, with the library calls the assets make."""

    def __init__(self, *, spec, kafka_config, delta: str, lance: str) -> None:
        super().__init__(daemon=True, name="materializer")
        self.spec, self.kafka_config, self.delta, self.lance = spec, kafka_config, delta, lance
        self.stop = threading.Event()
        self.passes = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        from freshlake.delta.current import fold_into_current
        from freshlake.embed.chunking import ChunkerSettings
        from freshlake.ingest.raw import RawTables, ingest_stream
        from freshlake.lance.progress import Progress
        from freshlake.lance.sync import sync_embeddings
        from freshlake.lance.tables import TableRegistry, space_store

        spec, embedder = self.spec, HashEmbedder()
        uri = lambda layer: f"{self.delta}/{spec.name}/{layer}"  # noqa: E731
        tables = RawTables(raw=uri("raw"), quarantine=uri("quarantine"))
        store = space_store(
            uri=self.lance,
            spec=spec,
            model_name=embedder.model_name,
            model_version=embedder.model_version,
            dimension=embedder.dimension,
        )
        try:
            while not self.stop.is_set():
                ingest_stream(spec=spec, kafka_config=self.kafka_config, tables=tables)
                fold_into_current(spec=spec, raw_uri=uri("raw"), current_uri=uri("current"))
                sync_embeddings(
                    spec=spec,
                    current_uris={spec.name: uri("current")},
                    store=store,
                    embedder=embedder,
                    chunker=ChunkerSettings(),
                    progress=Progress(uri=self.lance),
                    registry=TableRegistry(uri=self.lance),
                )
                self.passes += 1
        except BaseException as exc:
            self.error = exc


def test_an_event_is_searchable_in_the_call_that_names_its_offset(kafka_config, tmp_path) -> None:
    from confluent_kafka import Producer

    spec = dataclasses.replace(demo_stream("flights"), topic=f"ryw-{uuid.uuid4().hex[:8]}")
    ensure_topics(kafka_config, topics={spec.topic: 3})
    delta, lance = str(tmp_path / "delta"), str(tmp_path / "lance")
    producer = Producer({**kafka_config, "enable.idempotence": True})
    app = create_app(streams=[spec], delta_root=delta, lance_root=lance, embedder=HashEmbedder(), token="")
    worker = Materializer(spec=spec, kafka_config=kafka_config, delta=delta, lance=lance)
    waits, started = [], time.monotonic()
    with TestClient(app) as client:
        worker.start()
        try:
            for i in range(ROUNDS):
                flight_id = f"RY{i}-{uuid.uuid4().hex[:6]}"
                delivered: list[tuple[int, int]] = []
                producer.produce(
                    spec.topic,
                    key=flight_id.encode(),
                    value=json.dumps(
                        {
                            "flight_id": flight_id,
                            "flight_number": f"RY{i}",
                            "airline": "United",
                            "origin": "SFO",
                            "destination": "JFK",
                            "status": "diverted",
                            "version": 1,
                            "event_time": datetime.now(UTC).isoformat(),
                        }
                    ).encode(),
                    on_delivery=lambda err, msg, out=delivered: out.append((msg.partition(), msg.offset())),
                )
                producer.flush()
                partition, offset = delivered[0]
                response = client.post(
                    "/v1/search",
                    json={
                        "query": f"flight RY{i} diverted",
                        "k": 3,
                        "where": f"flight_id = '{flight_id}'",
                        "after": {spec.name: {str(partition): offset}},
                        "timeout_s": 30,
                    },
                )
                assert response.status_code == 200, response.text
                body = response.json()
                ryw = body["read_your_writes"]
                assert ryw["satisfied"] and ryw["pending"] == [], (i, ryw, worker.error)
                assert [d["key"] for d in body["documents"]] == [flight_id], (i, body, worker.error)
                doc = body["documents"][0]
                assert (doc["provenance"]["source_partition"], doc["provenance"]["source_offset"]) == (
                    partition,
                    offset,
                )
                assert body["freshness"][spec.name]["searchable_offsets"][str(partition)] >= offset
                waits.append(ryw["waited_s"])
        finally:
            worker.stop.set()
            worker.join(timeout=60)
    assert worker.error is None
    waits.sort()
    print(
        f"read-your-writes: {ROUNDS} rounds in {time.monotonic() - started:.1f} s, "
        f"{worker.passes} materializer passes, wait p50 {waits[len(waits) // 2]:.2f} s, "
        f"max {waits[-1]:.2f} s"
    )
