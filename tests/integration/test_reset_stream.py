"""A topic recreated under a stream (its offsets went backwards): the offsets sensor's tick says
so and names `freshlake reset STREAM`; the command archives that stream's Delta and LanceDB tables
(nothing deleted, other streams untouched) after a confirmation, and the next tick ingests the
topic from its first offset. Real broker, real Delta, real LanceDB."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest

from freshlake.delta.schemas import raw_schema
from freshlake.delta.tables import append_offsets
from freshlake.dev import write_dev_state
from freshlake.embed.models import HashEmbedder
from freshlake.ingest.plan import OffsetsWentBackwards
from freshlake.lance.tables import TableRegistry
from freshlake.resources.kafka import KafkaResource
from freshlake.resources.storage import StorageResource
from freshlake.sensors.offsets import evaluate
from tests.demo_streams import EXAMPLE_FILE, demo_stream
from tests.retrieval_tables import demo_tables

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def reset(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "FRESHLAKE_"))}
    return subprocess.run(
        [sys.executable, "-m", "freshlake.cli", "reset", *args, "--streams", str(EXAMPLE_FILE)],
        cwd=ROOT,
        env={**env, "FRESHLAKE_HOME": str(home)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_recreated_topic_names_reset_which_archives_and_starts_over(
    kafka_config, unique_topic, tmp_path
) -> None:
    from examples.flight_assistant.producer import produce_demo

    produce_demo(
        config=kafka_config,
        count=20,
        streams=("flights",),
        topic_prefix=unique_topic + "-",
        start=datetime(2026, 11, 21, tzinfo=UTC),
        partitions=1,
    )
    home = tmp_path / "home"
    spec = dataclasses.replace(demo_stream("flights"), topic=f"{unique_topic}-flights")
    kafka = KafkaResource(bootstrap_servers=str(kafka_config["bootstrap.servers"]))
    storage = StorageResource(delta_root=str(home / "delta"), lance_root=str(home / "lance"))
    # raw already holds offsets the topic no longer has: as after a restart on an in-memory broker
    raw = storage.raw_tables(spec).raw
    append_offsets(raw, raw_schema(spec).empty_table(), topic=spec.topic, last_offsets={0: 700})
    demo_tables(str(home / "lance"), HashEmbedder(dimension=384))  # flights and policies

    with dg.DagsterInstance.ephemeral() as instance:
        with pytest.raises(OffsetsWentBackwards) as failed:
            evaluate(
                dg.build_sensor_context(instance=instance), spec=spec, kafka=kafka, storage=storage, now=0
            )
        message = str(failed.value)
        assert "ends at offset 20 but the raw table already holds up to 700" in message
        assert "`freshlake reset flights`" in message

        # No terminal, no --yes: one line, nothing moved. A running dev: refused.
        asked = reset(home, "flights")
        assert asked.returncode == 2 and "pass --yes" in asked.stderr, asked.stderr
        assert Path(raw).exists()
        write_dev_state(home, {"bootstrap": "x"})  # this test process plays the running dev
        refused = reset(home, "flights", "--yes")
        assert refused.returncode == 1 and "stop it (Ctrl-C) first" in refused.stderr
        (home / "dev.json").unlink()

        done = reset(home, "flights", "--yes")
        assert done.returncode == 0, done.stdout + done.stderr
        (archive,) = (home / "archive").iterdir()
        assert (archive / "flights" / "delta" / "raw" / "_delta_log").is_dir()
        moved = [p.name for p in (archive / "flights" / "lance").iterdir()]
        assert any(name.startswith("flights__") and name.endswith(".lance") for name in moved)
        aliases = json.loads((archive / "flights" / "lance" / "aliases.json").read_text())
        assert [a["stream"] for a in aliases] == ["flights"]
        assert not (home / "delta" / "flights").exists()
        assert not list((home / "lance").glob("flights__*"))
        registry = TableRegistry(uri=str(home / "lance"))
        assert registry.live("flights") is None and registry.live("policies") is not None
        assert list((home / "lance").glob("policies__*.lance"))

        again = reset(home, "flights", "--yes")
        assert again.returncode == 0 and "nothing to reset" in again.stdout

        result = evaluate(
            dg.build_sensor_context(instance=instance), spec=spec, kafka=kafka, storage=storage, now=0
        )
        assert isinstance(result, dg.SensorResult) and result.run_requests, result
        ranges = result.run_requests[0].run_config["ops"]["flights_raw"]["config"]["offset_ranges"]
        assert ranges == [{"partition": 0, "start": 0, "end": 20}]
