"""The offsets sensor in streaming mode: one long-lived run per stream while there is lag."""

from __future__ import annotations

import dataclasses
import uuid

import dagster as dg
import pytest

from freshlake.assets.streaming import STREAMING_FROM_TAG, STREAMING_TAG, build_streaming_job
from freshlake.sensors.offsets import RANGES_TAG, build_offsets_sensor, evaluate
from tests.integration.test_offsets_sensor import instance, setup  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration


def tick(on, spec, kafka, storage):
    context = dg.build_sensor_context(instance=on)
    return evaluate(context, spec=spec, kafka=kafka, storage=storage, now=1000.0, streaming=True)


def add_run(on, *, status, tags) -> str:
    run_id = str(uuid.uuid4())
    on.add_run(dg.DagsterRun(job_name="flights_streaming", run_id=run_id, status=status, tags=tags))
    return run_id


def test_lag_starts_one_streaming_run_and_a_run_in_flight_holds_the_next(instance, setup) -> None:  # noqa: F811
    spec, kafka, storage = setup(count=30)
    (request,) = tick(instance, spec, kafka, storage).run_requests
    key = f"{spec.topic}:stream@p0=0,p1=0,p2=0"
    assert request.run_key == key and request.run_config == {}  # it reads up to the watermark itself
    assert request.tags[STREAMING_TAG] == "flights" and request.tags[STREAMING_FROM_TAG] == key
    assert "freshlake/stream" not in request.tags  # that tag's one-run limit would hold backfills

    for status in (dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING):
        run_id = add_run(instance, status=status, tags=dict(request.tags))
        skipped = tick(instance, spec, kafka, storage)
        assert isinstance(skipped, dg.SkipReason) and run_id[:8] in skipped.skip_message
        instance.report_run_failed(instance.get_run_by_id(run_id))

    # Two runs from the same offsets ended: the next is asked for under a new key.
    (again,) = tick(instance, spec, kafka, storage).run_requests
    assert again.run_key == f"{key}#retry2" and again.tags[STREAMING_FROM_TAG] == key


def test_no_lag_no_run(instance, setup) -> None:  # noqa: F811
    spec, kafka, storage = setup(count=0)
    from freshlake.kafka.topics import ensure_topics

    ensure_topics({"bootstrap.servers": kafka.bootstrap_servers}, topics={spec.topic: 3})
    result = tick(instance, spec, kafka, storage)
    assert isinstance(result, dg.SkipReason) and result.skip_message == "no new messages"


def test_the_mode_picks_the_job(instance, setup) -> None:  # noqa: F811
    spec, kafka, storage = setup(count=5)
    ingest = dg.define_asset_job("flights_ingest", selection=[dg.AssetKey(["flights", "raw"])])
    streaming_job = build_streaming_job(spec)
    resources = {"kafka": kafka, "storage": storage}

    sensor = build_offsets_sensor(spec, job=ingest, streaming_job=streaming_job)
    assert sensor.job_name == "flights_streaming"
    (request,) = sensor(dg.build_sensor_context(instance=instance, resources=resources)).run_requests
    assert STREAMING_TAG in request.tags

    per_batch = dataclasses.replace(spec, batching=dataclasses.replace(spec.batching, mode="per_batch"))
    sensor = build_offsets_sensor(per_batch, job=ingest, streaming_job=build_streaming_job(per_batch))
    assert sensor.job_name == "flights_ingest"
    (request,) = sensor(dg.build_sensor_context(instance=instance, resources=resources)).run_requests
    assert RANGES_TAG in request.tags and request.run_config["ops"]["flights_raw"]["config"]["offset_ranges"]
