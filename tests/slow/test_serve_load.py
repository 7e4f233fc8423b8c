"""Loopback load: concurrent HTTP searches against `freshlake serve`'s app on uvicorn while a
thread produces flight events to the real broker and materializes them (raw -> current ->
embeddings). Reports searches/s, p50/p95/p99 and errors; bounded to LOAD_SECONDS."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import socket
import threading
import time
import uuid
from datetime import UTC, datetime

import httpx
import numpy as np
import pytest

from freshlake.embed.models import HashEmbedder
from freshlake.kafka.topics import ensure_topics
from freshlake.serve.app import create_app
from tests.demo_streams import demo_stream
from tests.integration.test_serve_read_your_writes import Materializer

pytestmark = [pytest.mark.slow, pytest.mark.integration]

LOAD_SECONDS = float(os.environ.get("FRESHLAKE_LOAD_SECONDS", "30"))
CLIENTS = 8
EVENTS_PER_S = 20
QUERIES = [
    "my flight to New York was cancelled, can I get a refund",
    "flight delayed because of crew",
    "boarding gate for SFO to JFK",
    "diverted flight",
]


def serve(spec, delta: str, lance: str, port: int) -> None:
    """The service in its own process, as `freshlake serve` runs it (hash embedder)."""
    from freshlake.serve import run

    app = create_app(streams=[spec], delta_root=delta, lance_root=lance, embedder=HashEmbedder(), token="")
    run(app, host="127.0.0.1", port=port)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_concurrent_searches_while_ingesting(kafka_config, tmp_path) -> None:
    from confluent_kafka import Producer

    spec = dataclasses.replace(demo_stream("flights"), topic=f"load-{uuid.uuid4().hex[:8]}")
    ensure_topics(kafka_config, topics={spec.topic: 3})
    delta, lance = str(tmp_path / "delta"), str(tmp_path / "lance")
    producer = Producer({**kafka_config, "enable.idempotence": True})
    stop = threading.Event()
    produced = [0]

    def produce() -> None:
        while not stop.is_set():
            i = produced[0]
            flight_id = f"LD{i % 500}"  # updates as well as new keys, as a live feed sends
            status = ("scheduled", "boarding", "delayed", "cancelled", "diverted")[i % 5]
            value = {
                "flight_id": flight_id,
                "flight_number": flight_id,
                "airline": "United",
                "origin": "SFO",
                "destination": "JFK",
                "status": status,
                "version": i,
                "event_time": datetime.now(UTC).isoformat(),
            }
            producer.produce(spec.topic, key=flight_id.encode(), value=json.dumps(value).encode())
            producer.poll(0)
            produced[0] += 1
            time.sleep(1 / EVENTS_PER_S)
        producer.flush()

    port = free_port()
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(spec, delta, lance, port))
    server.start()
    worker = Materializer(spec=spec, kafka_config=kafka_config, delta=delta, lance=lance)
    producing = threading.Thread(target=produce, daemon=True)
    producing.start()
    worker.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the first events searchable, the service ready
        try:
            streams = httpx.get(f"{base}/v1/streams").json()["streams"]
            if httpx.get(f"{base}/readyz").status_code == 200 and streams[0]["rows"] > 0:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.2)

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as http:
            i = n
            end = time.monotonic() + LOAD_SECONDS
            while time.monotonic() < end:
                body = {
                    "query": QUERIES[i % len(QUERIES)],
                    "k": 5,
                    "mode": ("hybrid", "vector", "fts")[i % 3],
                }
                t0 = time.perf_counter()
                try:
                    response = http.post("/v1/search", json=body)
                    ok = response.status_code == 200 and response.json()["documents"]
                    failure = None if ok else f"{response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as exc:
                    failure = repr(exc)
                with lock:
                    latencies.append(time.perf_counter() - t0)
                    if failure:
                        errors.append(failure)
                i += 1

    started = time.monotonic()
    clients = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in clients:
        t.start()
    for t in clients:
        t.join()
    elapsed = time.monotonic() - started
    passes_during = worker.passes
    metrics = httpx.get(f"{base}/metrics").text
    stop.set()
    worker.stop.set()
    worker.join(timeout=60)
    producing.join(timeout=10)
    server.terminate()
    server.join(timeout=10)

    ms = np.array(latencies) * 1000
    report = {
        "clients": CLIENTS,
        "seconds": round(elapsed, 1),
        "searches": len(latencies),
        "searches_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p95_ms": round(float(np.percentile(ms, 95)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "errors": len(errors),
        "events_produced": produced[0],
        "materializer_passes": passes_during,
        "rows": next(
            (
                float(line.split()[-1])
                for line in metrics.splitlines()
                if line.startswith("freshlake_stream_rows{")
            ),
            None,
        ),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    print("serve load:", json.dumps(report))
    assert worker.error is None
    assert errors == [], errors[:5]
    assert len(latencies) > CLIENTS and passes_during > 2  # ingestion really ran alongside
