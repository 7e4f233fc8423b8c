"""Sensor runs, UI-style materializations and a raw backfill of one stream, all at once.

While messages keep arriving, three processes materialize `<stream>/raw` through Dagster on one
instance (SQLite under one DAGSTER_HOME): the offsets sensor's requests (run config with ranges,
the stream tags), plain materializations of today's partition with only raw selected (as the UI
or `dagster asset materialize --select` launch them) and backfills of a past day. No run
coordinator or tag limit keeps them apart. Afterwards raw and quarantine hold every (partition,
offset) exactly once, with no gap. Real broker, real Delta, real Dagster runs.
(Processes, not threads: Dagster's in-process execution reconfigures logging per run and
deadlocks when runs start on several threads of one process.)
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from freshlake.ingest.raw import ingest_stream
from freshlake.resources.storage import StorageResource
from freshlake.streams import Batching
from tests.demo_streams import demo_stream

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # ~50 s on 2 cores

LOOP_SECONDS = 20
REPO = Path(__file__).resolve().parents[2]

LAUNCHER = textwrap.dedent(
    """
    import dataclasses, json, sys, time
    import dagster as dg
    from freshlake.assets.keys import quarantine_key, raw_key
    from freshlake.assets.partitions import BACKFILL_TAG, current_partition
    from freshlake.assets.raw import build_raw_assets
    from freshlake.assets.topics import topic_asset_spec
    from freshlake.resources.kafka import KafkaResource
    from freshlake.resources.storage import StorageResource
    from freshlake.sensors.offsets import evaluate
    from freshlake.streams import Batching
    from tests.demo_streams import demo_stream

    mode, topic, bootstrap, delta_root, past_day, seconds = sys.argv[1:7]
    spec = dataclasses.replace(demo_stream("flights"), topic=topic,
                               batching=Batching(max_records_per_run=150))
    kafka, storage = KafkaResource(bootstrap_servers=bootstrap), StorageResource(delta_root=delta_root)
    assets = [topic_asset_spec(spec), build_raw_assets(spec)]
    both = [raw_key(spec), quarantine_key(spec)]
    runs, cursor, deadline = 0, None, time.time() + float(seconds)
    with dg.DagsterInstance.get() as instance:
        def materialize(**kwargs):
            global runs
            result = dg.materialize(assets, resources={"kafka": kafka, "storage": storage},
                                    instance=instance, **kwargs)
            assert result.success
            runs += 1
        while time.time() < deadline:
            if mode == "sensor":
                context = dg.build_sensor_context(instance=instance, cursor=cursor)
                result = evaluate(context, spec=spec, kafka=kafka, storage=storage, now=time.time())
                if isinstance(result, dg.SensorResult):
                    cursor = result.cursor
                    for r in result.run_requests:
                        materialize(selection=both, run_config=r.run_config, tags=r.tags,
                                    partition_key=r.partition_key)
                time.sleep(0.1)
            elif mode == "ui":
                materialize(selection=[raw_key(spec)], partition_key=current_partition(spec))
            else:
                materialize(selection=both, partition_key=past_day, tags={BACKFILL_TAG: "loop"})
    print(json.dumps({"runs": runs}))
    """
)


def test_sensor_ui_and_backfill_runs_at_once_hold_each_offset_once(
    kafka_config, unique_topic, tmp_path
) -> None:
    from examples.flight_assistant.producer import produce_demo

    past = datetime.now(UTC).replace(hour=6, minute=0, second=0, microsecond=0) - timedelta(days=2)
    prefix = unique_topic + "-"
    produce_demo(
        config=kafka_config,
        count=300,
        streams=("flights",),
        bad_ratio=0.03,
        start=past,
        topic_prefix=prefix,
        partitions=3,
    )
    spec = dataclasses.replace(
        demo_stream("flights"), topic=prefix + "flights", batching=Batching(max_records_per_run=150)
    )
    storage = StorageResource(delta_root=str(tmp_path / "delta"))
    tables = storage.raw_tables(spec)
    ingest_stream(spec=spec, kafka_config=kafka_config, tables=tables, max_records=100_000)  # the past day
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(home)) as instance:  # its storage made once, here
        instance.get_runs(limit=1)
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    args = [spec.topic, str(kafka_config["bootstrap.servers"]), storage.delta_root, past.strftime("%Y-%m-%d")]
    stop, produced = threading.Event(), [0]

    def produce() -> None:
        while not stop.is_set():
            delivered = produce_demo(
                config=kafka_config,
                count=40,
                streams=("flights",),
                bad_ratio=0.03,
                topic_prefix=prefix,
                create_topics=False,
                seed=produced[0],
            )
            produced[0] += sum(delivered.values())
            time.sleep(0.2)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        launchers = {
            mode: subprocess.Popen(
                [sys.executable, "-c", LAUNCHER, mode, *args, str(LOOP_SECONDS)],
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for mode in ("sensor", "ui", "backfill")
        }
        outputs = {mode: proc.communicate(timeout=LOOP_SECONDS + 120) for mode, proc in launchers.items()}
    finally:
        stop.set()
        producer.join(timeout=60)
    for mode, proc in launchers.items():
        assert proc.returncode == 0, f"{mode}: {outputs[mode][1][-3000:]}"
    runs = {mode: json.loads(out.strip().splitlines()[-1])["runs"] for mode, (out, _) in outputs.items()}
    assert all(runs.values()), runs  # every launch path ran, overlapping the others
    print(f"runs per launch path: {runs}; {produced[0]} messages produced meanwhile")

    final = ingest_stream(spec=spec, kafka_config=kafka_config, tables=tables, max_records=100_000)
    assert final.consumer_lag == 0
    raw = pl.read_delta(tables.raw).select("kafka_partition", "kafka_offset")
    bad = pl.read_delta(tables.quarantine).select("kafka_partition", "kafka_offset")
    raw_coords = [tuple(r) for r in raw.iter_rows()]
    bad_coords = [tuple(r) for r in bad.iter_rows()]
    assert len(raw_coords) == len(set(raw_coords)), f"{len(raw_coords) - len(set(raw_coords))} held twice"
    assert len(bad_coords) == len(set(bad_coords)) and not set(raw_coords) & set(bad_coords)
    held = set(raw_coords) | set(bad_coords)
    assert len(held) == 300 + produced[0]
    for p in {p for p, _ in held}:  # no gap: each partition holds 0..last
        offsets = sorted(o for q, o in held if q == p)
        assert offsets == list(range(len(offsets)))
