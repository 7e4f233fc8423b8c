"""The `<stream>_streaming` job in process: one materialization per layer per batch, with metadata."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import Counter

import dagster as dg
import pytest

from freshlake.assets.keys import current_key, embeddings_key, quarantine_key, raw_key
from freshlake.assets.streaming import build_streaming_job
from tests.integration.test_processed import World

pytestmark = pytest.mark.integration


@pytest.mark.timeout(180)
def test_every_batch_is_a_materialization_of_every_layer(kafka_config, tmp_path) -> None:
    world = World(kafka_config, tmp_path)
    spec = world.specs["flights"]
    spec = dataclasses.replace(spec, batching=dataclasses.replace(spec.batching, idle_seconds=3))

    def produce() -> None:
        time.sleep(3)  # the run is up and idle first
        for n in range(60):
            world.flight(f"JB{n:03d}-today", "boarding", 1, gate=f"C{n}")
            time.sleep(0.05)

    producer = threading.Thread(target=produce)
    producer.start()
    with dg.DagsterInstance.ephemeral() as instance:
        result = build_streaming_job(spec).execute_in_process(resources=world.resources, instance=instance)
    producer.join()

    assert result.success
    events = result.get_asset_materialization_events()
    counts = Counter(e.asset_key for e in events)
    batches = counts[current_key(spec)]
    assert batches >= 2  # the events arrived over ~3 s: more than one batch
    assert counts == {
        raw_key(spec): batches,
        quarantine_key(spec): batches,
        current_key(spec): batches,
        embeddings_key(spec): batches,
    }
    raw = [e.materialization.metadata for e in events if e.asset_key == raw_key(spec)]
    assert sum(m["rows_written"].value for m in raw) == 60
    assert [m["batch"].value for m in raw] == list(range(1, batches + 1))
    for m in raw:
        assert m["delta_version"].value >= 0 and m["offset_ranges"].value != "none"
        assert {"consumer_lag", "batch_seconds", "stage_raw_seconds", "stage_embeddings_seconds"} <= set(m)
    embedded = [e.materialization.metadata for e in events if e.asset_key == embeddings_key(spec)]
    assert sum(m["chunks_embedded"].value for m in embedded) == 60
    assert all(m["lance_version"].value >= 0 and "event_time_lag_seconds" in m for m in embedded)
    checks = [e for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    names = {e.event_specific_data.check_name for e in checks}
    assert names == {"consumer_lag", "event_time_lag", "quarantine"}
    assert len(world.rows("flights")) == 60
