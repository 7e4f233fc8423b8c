"""The offsets sensor sees runs of `<stream>/raw` from every launch path, CANCELING included.

Runs are added to a real (ephemeral) instance as the UI, the CLI, a backfill and the sensor
create them; the sensor ticks against the real broker and a real Delta table.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import dagster as dg
import pytest

from freshlake.assets.keys import current_key, quarantine_key, raw_key
from freshlake.assets.partitions import BACKFILL_TAG, current_partition
from freshlake.resources.kafka import KafkaResource
from freshlake.resources.storage import StorageResource
from freshlake.sensors.offsets import RANGES_TAG, STREAM_TAG, evaluate, ingest_runs
from tests.demo_streams import demo_stream

pytestmark = pytest.mark.integration

Status = dg.DagsterRunStatus


@pytest.fixture
def instance():
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


@pytest.fixture
def stream(kafka_config, unique_topic, tmp_path):
    from examples.flight_assistant.producer import produce_demo

    produce_demo(
        config=kafka_config,
        count=30,
        streams=("flights",),
        topic_prefix=unique_topic + "-",
        start=datetime(2026, 11, 21, tzinfo=UTC),
        partitions=3,
    )
    spec = dataclasses.replace(demo_stream("flights"), topic=f"{unique_topic}-flights")
    kafka = KafkaResource(bootstrap_servers=str(kafka_config["bootstrap.servers"]))
    return spec, kafka, StorageResource(delta_root=str(tmp_path / "delta"))


def tick(instance, stream):
    spec, kafka, storage = stream
    return evaluate(
        dg.build_sensor_context(instance=instance), spec=spec, kafka=kafka, storage=storage, now=0.0
    )


def add_run(instance, *, status, job="__ASSET_JOB", selection=None, tags=None) -> str:
    run_id = str(uuid.uuid4())
    instance.add_run(
        dg.DagsterRun(job_name=job, run_id=run_id, status=status, asset_selection=selection, tags=tags or {})
    )
    return run_id


@pytest.mark.parametrize("status", [Status.STARTED, Status.CANCELING, Status.STARTING])
@pytest.mark.parametrize(
    ("job", "selection", "tags"),
    [
        ("__ASSET_JOB", "raw", {}),  # UI asset graph / `dagster asset materialize --select x/raw`
        ("__ASSET_JOB", "quarantine", {}),  # the same op, selected by its other asset
        ("flights_ingest", None, {}),  # the stream's job, launched from the UI or `dg launch`
        ("any_job", None, {STREAM_TAG: "flights"}),  # a job of the user's that carries the tag
    ],
    ids=["ui-asset", "ui-quarantine", "stream-job", "tagged"],
)
def test_an_executing_run_from_any_launch_path_holds_the_sensor_back(
    instance, stream, status, job, selection, tags
) -> None:
    spec = stream[0]
    keys = {"raw": {raw_key(spec)}, "quarantine": {quarantine_key(spec)}, None: None}[selection]
    run_id = add_run(instance, status=status, job=job, selection=keys, tags=tags)
    assert [r.run_id for r in ingest_runs(instance, spec=spec)] == [run_id]
    result = tick(instance, stream)
    assert isinstance(result, dg.SkipReason) and run_id[:8] in result.skip_message


def test_a_ui_run_not_started_yet_is_waiting_and_a_new_one_is_not_requested(instance, stream) -> None:
    add_run(instance, status=Status.NOT_STARTED, selection={raw_key(stream[0])})  # queued
    result = tick(instance, stream)
    assert isinstance(result, dg.SkipReason) and "waiting" in result.skip_message


@pytest.mark.parametrize(
    ("selection", "tags"),
    [
        ("current", {}),  # downstream only: reads no Kafka
        ("raw", {BACKFILL_TAG: "abcd"}),  # a raw backfill re-reads committed offsets only
        ("raw", {"dagster/partition": "2026-01-02"}),  # a past partition: re-derived the same way
        ("other", {}),  # another stream
    ],
)
def test_runs_that_move_no_offsets_of_the_stream_do_not_hold_it_back(
    instance, stream, selection, tags
) -> None:
    spec = stream[0]
    keys = {
        "current": {current_key(spec)},
        "raw": {raw_key(spec)},
        "other": {dg.AssetKey(["bookings", "raw"])},
    }[selection]
    add_run(instance, status=Status.STARTED, selection=keys, tags=tags)
    assert ingest_runs(instance, spec=spec) == []
    assert len(tick(instance, stream).run_requests) == 1


def test_a_canceling_sensor_run_is_planned_after_not_overlapped(instance, stream) -> None:
    spec = stream[0]
    (first,) = tick(instance, stream).run_requests
    add_run(
        instance,
        status=Status.CANCELING,
        job="flights_ingest",
        tags={STREAM_TAG: "flights", RANGES_TAG: first.run_key},
    )
    result = tick(instance, stream)  # everything is in the canceling run, which may still commit it
    assert not result.run_requests and "no new messages" in result.skip_reason.skip_message
    # Today's partition, asked for by hand, follows the stream: it holds the sensor back too.
    add_run(
        instance,
        status=Status.STARTED,
        selection={raw_key(spec)},
        tags={"dagster/partition": current_partition(spec)},
    )
    assert len(ingest_runs(instance, spec=spec)) == 2
