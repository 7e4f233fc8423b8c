"""The selections users type: `<stream>/raw` alone, and the one that materializes a whole chain.

raw and quarantine are one op (they commit together); selecting either alone runs it and
writes both tables. Real broker, real Delta, the real `dagster asset materialize` CLI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from freshlake.assets.keys import current_key, embeddings_key, quarantine_key, raw_key
from freshlake.assets.partitions import current_partition
from freshlake.config import load_streams
from freshlake.resources.embedder import EmbedderResource
from freshlake.resources.kafka import KafkaResource
from freshlake.resources.storage import StorageResource

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

FIELDS = """\
    key_field: flight_id
    order_by: version
    event_time_field: event_time
    fields:
      flight_id: string
      flight_number: string
      airline: string
      origin: string
      origin_city: string
      destination: string
      destination_city: string
      status: string
      scheduled_departure: timestamp
      estimated_departure: timestamp
      gate: string
      delay_minutes: int
      reason: string
      event_time: timestamp
      version: int
    required: [flight_id, status, event_time, version]
"""
DOCUMENT = """\
    document:
      template: "Flight {flight_number} is {status}"
      attributes: [flight_id, status]
"""


def streams_file(tmp_path: Path, *, topic: str, document: bool) -> Path:
    path = tmp_path / "streams.yaml"
    path.write_text(f"streams:\n  - name: sel\n    topic: {topic}\n{FIELDS}{DOCUMENT if document else ''}")
    return path


def produce(kafka_config, unique_topic: str, *, bad_ratio: float) -> str:
    from examples.flight_assistant.producer import produce_demo

    produce_demo(
        config=kafka_config,
        count=120,
        streams=("flights",),
        bad_ratio=bad_ratio,
        partitions=2,
        topic_prefix=unique_topic + "-",
        start=datetime.now(UTC),
    )
    return f"{unique_topic}-flights"


def test_cli_materializes_raw_alone(kafka_config, unique_topic, tmp_path) -> None:
    topic = produce(kafka_config, unique_topic, bad_ratio=0.05)
    path = streams_file(tmp_path, topic=topic, document=False)
    (tmp_path / "dagster").mkdir()
    env = {
        **os.environ,
        "FRESHLAKE_STREAMS": str(path),
        "FRESHLAKE_HOME": str(tmp_path / "home"),
        "KAFKA_BOOTSTRAP_SERVERS": str(kafka_config["bootstrap.servers"]),
        "DAGSTER_HOME": str(tmp_path / "dagster"),
    }
    dagster = str(Path(sys.executable).parent / "dagster")
    partition = current_partition(load_streams(path).streams[0])  # the CLI asks for one
    done = subprocess.run(
        [
            dagster,
            "asset",
            "materialize",
            "-f",
            "definitions.py",
            "--select",
            "sel/raw",
            "--partition",
            partition,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    delta = tmp_path / "home" / "delta" / "sel"
    raw, quarantine = pl.read_delta(str(delta / "raw")), pl.read_delta(str(delta / "quarantine"))
    assert raw.height + quarantine.height == 120 and quarantine.height > 0  # both written, once
    assert not (delta / "current").exists()  # only what was selected ran
    with dg.DagsterInstance.from_config(str(tmp_path / "dagster")) as instance:
        (record,) = instance.get_run_records()
        assert record.dagster_run.asset_selection == {dg.AssetKey(["sel", "raw"])}
        # The quarantine table was written by the same op: its materialization is recorded too.
        assert instance.get_latest_materialization_event(dg.AssetKey(["sel", "quarantine"])) is not None


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        ("group:sel", {"raw", "quarantine", "current", "embeddings"}),  # the stream's own chain
        ('key:"sel/raw"+', {"raw", "current", "embeddings"}),  # all downstream (`+1` is one hop)
        ("sel/raw*", {"raw", "current", "embeddings"}),  # the same, in the older syntax
        ("sel/raw+", {"raw", "current"}),  # one hop: the embeddings are not selected
    ],
)
def test_selection_strings_of_a_stream_chain(
    kafka_config, unique_topic, tmp_path, selection, expected
) -> None:
    from freshlake.components.definitions import build_definitions

    topic = produce(kafka_config, unique_topic, bad_ratio=0.0)
    (spec,) = load_streams(streams_file(tmp_path, topic=topic, document=True)).streams
    defs = build_definitions(streams=[spec], model_code="hash@test")
    storage = StorageResource(delta_root=str(tmp_path / "delta"), lance_root=str(tmp_path / "lance"))
    result = dg.materialize(
        list(defs.assets),
        selection=selection,
        partition_key=current_partition(spec),
        resources={
            "kafka": KafkaResource(bootstrap_servers=str(kafka_config["bootstrap.servers"])),
            "storage": storage,
            "embedder": EmbedderResource(kind="hash"),
        },
    )
    assert result.success
    names = {
        raw_key(spec): "raw",
        quarantine_key(spec): "quarantine",
        current_key(spec): "current",
        embeddings_key(spec): "embeddings",
    }
    materialized = {names[e.asset_key] for e in result.get_asset_materialization_events()}
    # The raw op always writes quarantine too: an output when selected, else an event.
    assert materialized == expected | {"quarantine"}
    assert pl.read_delta(storage.delta_uri(spec, "raw")).height == 120
