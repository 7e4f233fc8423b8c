"""A streaming run and a 3-day processed backfill of the same stream, at the same time.

The streaming job runs in a thread (real broker, Delta, LanceDB, hash embedder) while new events
arrive, some of them newer versions of flights from the backfilled days; the backfill (one run
over three partitions, as a single-run backfill launches it) re-derives current and embeddings
from raw meanwhile. Nothing may be lost, doubled or regressed, and both runs succeed.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import dagster as dg
import pytest

from freshlake.assets.keys import current_key, embeddings_key, raw_key
from freshlake.assets.streaming import build_streaming_job
from freshlake.delta.tables import open_table
from tests.integration.test_backfills import KEYS, coordinates, current_rows, three_days_of_flights
from tests.integration.test_processed import World

pytestmark = pytest.mark.integration


@pytest.fixture
def world(kafka_config, tmp_path) -> World:
    return World(kafka_config, tmp_path)


@pytest.mark.timeout(300)
def test_streaming_run_beside_a_three_day_processed_backfill(world: World) -> None:
    three_days_of_flights(world)  # 60 events over three past days
    world.run()
    spec = world.specs["flights"]
    spec = dataclasses.replace(spec, batching=dataclasses.replace(spec.batching, idle_seconds=4))
    storage = world.resources["storage"]
    current_uri = storage.delta_uri(spec, "current")
    folded = open_table(current_uri).version()

    outcome: dict[str, dg.ExecuteInProcessResult] = {}

    def stream() -> None:
        with dg.DagsterInstance.ephemeral() as instance:
            outcome["streaming"] = build_streaming_job(spec).execute_in_process(
                resources=world.resources, instance=instance, raise_on_error=False
            )

    runner = threading.Thread(target=stream, name="streaming-run")
    runner.start()
    sent = 60
    # Newer versions of backfilled days' flights and new flights of today, while both run.
    stop = threading.Event()

    def produce() -> None:
        nonlocal sent
        n = 0
        while not stop.is_set() and n < 200:
            day = n % 3
            world.flight(f"UA{day}{n % 10:02d}-{KEYS[day]}", "cancelled", 3 + n // 10, reason=f"storm {n}")
            world.flight(f"NEW{n:03d}-today", "scheduled", 1)
            sent += 2
            n += 1
            time.sleep(0.05)

    producer = threading.Thread(target=produce, name="producer")
    producer.start()
    deadline = time.monotonic() + 90
    while open_table(current_uri).version() == folded:  # the streaming run's first fold
        assert time.monotonic() < deadline and runner.is_alive(), outcome
        time.sleep(0.1)

    metadata = world.run(backfill=(KEYS[0], KEYS[-1]), layers=("current", "embeddings"))

    assert world.last_result.dagster_run.tags["dagster/asset_partition_range_start"] == KEYS[0]
    assert metadata["flights"]["backfill_keys"] == 30
    assert runner.is_alive()  # the two overlapped
    stop.set()
    producer.join()
    runner.join(timeout=120)
    assert not runner.is_alive()
    streaming = outcome["streaming"]
    errors = [e.event_specific_data.error for e in streaming.all_events if e.is_step_failure]
    assert streaming.success, "\n".join(f.to_string() for f in errors)
    batches = [m for m in streaming.get_asset_materialization_events() if m.asset_key == current_key(spec)]
    assert len(batches) >= 2
    assert {m.asset_key for m in streaming.get_asset_materialization_events()} >= {
        raw_key(spec),
        embeddings_key(spec),
    }

    # Nothing lost or doubled in raw, nothing regressed in current or LanceDB.
    positions = coordinates(world)
    assert len(positions) == len(set(positions)) == sent
    raw = open_table(storage.delta_uri(spec, "raw")).to_pyarrow_table(
        columns=["key", "version", "status", "reason"]
    )
    newest: dict[str, dict] = {}
    for r in raw.to_pylist():
        if r["key"] not in newest or r["version"] > newest[r["key"]]["version"]:
            newest[r["key"]] = r
    rows = {r["key"]: r for r in current_rows(world)}
    assert {k: (r["status"], r["reason"]) for k, r in rows.items()} == {
        k: (r["status"], r["reason"]) for k, r in newest.items()
    }
    documents = world.rows("flights")
    assert sorted(r["key"] for r in documents) == sorted(rows)  # one chunk per flight, none twice
    for document in documents:
        row = rows[document["key"]]
        assert row["status"] in document["text"], document
        assert row["reason"] is None or row["reason"] in document["text"], document
