"""The offsets sensor with `build_sensor_context`, against the real broker and real Delta tables."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

import dagster as dg
import pytest

from freshlake.delta.schemas import raw_schema
from freshlake.delta.tables import append_offsets
from freshlake.ingest.plan import OffsetsWentBackwards
from freshlake.resources.kafka import KafkaResource
from freshlake.resources.storage import StorageResource
from freshlake.sensors.offsets import RANGES_TAG, STREAM_TAG, build_offsets_sensor, evaluate
from freshlake.streams import Batching
from tests.demo_streams import demo_stream

pytestmark = pytest.mark.integration


@pytest.fixture
def instance():
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


@pytest.fixture
def setup(kafka_config, unique_topic, tmp_path):
    from examples.flight_assistant.producer import produce_demo

    def make(*, count: int, batching: Batching | None = None):
        if count:
            produce_demo(
                config=kafka_config,
                count=count,
                streams=("flights",),
                topic_prefix=unique_topic + "-",
                start=datetime(2026, 11, 21, tzinfo=UTC),
                partitions=3,
            )
        spec = dataclasses.replace(demo_stream("flights"), topic=f"{unique_topic}-flights")
        if batching is not None:
            spec = dataclasses.replace(spec, batching=batching)
        kafka = KafkaResource(bootstrap_servers=str(kafka_config["bootstrap.servers"]))
        storage = StorageResource(delta_root=str(tmp_path / "delta"))
        return spec, kafka, storage

    return make


def tick(instance, spec, kafka, storage, *, cursor=None, now=1000.0):
    context = dg.build_sensor_context(instance=instance, cursor=cursor)
    return evaluate(context, spec=spec, kafka=kafka, storage=storage, now=now)


def test_new_offsets_request_a_run_with_ranges_and_a_deterministic_key(instance, setup) -> None:
    spec, kafka, storage = setup(count=90)
    result = tick(instance, spec, kafka, storage)
    (request,) = result.run_requests
    ranges = request.run_config["ops"]["flights_raw"]["config"]["offset_ranges"]
    assert sum(r["end"] - r["start"] for r in ranges) == 90
    assert all(r["start"] == 0 for r in ranges)
    expected = spec.topic + ":" + ",".join(f"p{r['partition']}=0-{r['end']}" for r in ranges)
    assert request.run_key == expected
    assert request.tags[STREAM_TAG] == "flights" and request.tags[RANGES_TAG] == expected
    # Same state, same key: Dagster de-duplicates it.
    assert tick(instance, spec, kafka, storage).run_requests[0].run_key == expected


def test_the_sensor_definition_evaluates_with_its_resources(instance, setup) -> None:
    spec, kafka, storage = setup(count=5)
    job = dg.define_asset_job("flights_ingest", selection=[dg.AssetKey(["flights", "raw"])])
    sensor = build_offsets_sensor(spec, job=job)
    context = dg.build_sensor_context(instance=instance, resources={"kafka": kafka, "storage": storage})
    result = sensor(context)
    assert len(result.run_requests) == 1


def test_nothing_new_is_a_skip(instance, setup) -> None:
    spec, kafka, storage = setup(count=0)
    from freshlake.kafka.topics import ensure_topics

    ensure_topics({"bootstrap.servers": kafka.bootstrap_servers}, topics={spec.topic: 3})
    result = tick(instance, spec, kafka, storage)
    assert not result.run_requests and "no new messages" in result.skip_reason.skip_message


def test_batching_waits_for_min_batch_or_max_wait(instance, setup) -> None:
    spec, kafka, storage = setup(count=20, batching=Batching(min_batch=1000, max_wait_seconds=5))
    first = tick(instance, spec, kafka, storage, now=1000.0)
    assert not first.run_requests and "min_batch" in first.skip_reason.skip_message
    second = tick(instance, spec, kafka, storage, cursor=first.cursor, now=1003.0)
    assert not second.run_requests
    due = tick(instance, spec, kafka, storage, cursor=second.cursor, now=1005.5)
    assert len(due.run_requests) == 1


def test_max_records_per_run_caps_the_request(instance, setup) -> None:
    spec, kafka, storage = setup(count=300, batching=Batching(max_records_per_run=100))
    (request,) = tick(instance, spec, kafka, storage).run_requests
    ranges = request.run_config["ops"]["flights_raw"]["config"]["offset_ranges"]
    assert sum(r["end"] - r["start"] for r in ranges) == 100


def test_broker_down_is_a_skip_reason_not_a_crash(instance, setup) -> None:
    spec, _, storage = setup(count=0)
    down = KafkaResource(bootstrap_servers="127.0.0.1:1")
    result = evaluate(
        dg.build_sensor_context(instance=instance), spec=spec, kafka=down, storage=storage, now=0
    )
    assert isinstance(result, dg.SkipReason)
    assert "Kafka unavailable" in result.skip_message and "127.0.0.1:1" in result.skip_message


def test_offsets_that_went_backwards_fail_the_tick_loudly(instance, setup) -> None:
    spec, kafka, storage = setup(count=30)
    tables = storage.raw_tables(spec)
    empty = raw_schema(spec).empty_table()
    append_offsets(tables.raw, empty, topic=spec.topic, last_offsets={0: 10_000, 1: 10_000, 2: 10_000})
    with pytest.raises(OffsetsWentBackwards, match="recreated or truncated"):
        tick(instance, spec, kafka, storage)


def test_next_run_waits_behind_the_executing_one_and_a_failed_run_is_re_requested(
    instance, setup, kafka_config
) -> None:
    from examples.flight_assistant.producer import produce_demo

    spec, kafka, storage = setup(count=12)
    first = tick(instance, spec, kafka, storage).run_requests[0]
    started = _add_run(
        instance, status=dg.DagsterRunStatus.STARTED, tags={STREAM_TAG: "flights", RANGES_TAG: first.run_key}
    )
    covered = tick(instance, spec, kafka, storage)  # everything is in the executing run
    assert not covered.run_requests and "no new messages" in covered.skip_reason.skip_message

    produce_demo(
        config=kafka_config,
        count=9,
        streams=("flights",),
        topic_prefix=spec.topic[: -len("flights")],
        start=datetime(2026, 11, 22, tzinfo=UTC),
        partitions=3,
        create_topics=False,
    )
    (behind,) = tick(instance, spec, kafka, storage).run_requests  # planned after the executing run
    first_ends = {r["partition"]: r["end"] for r in _ranges(first)}
    assert all(r["start"] == first_ends.get(r["partition"], 0) for r in _ranges(behind))
    assert sum(r["end"] - r["start"] for r in _ranges(behind)) == 9

    queued = _add_run(instance, status=dg.DagsterRunStatus.NOT_STARTED, tags={STREAM_TAG: "flights"})
    skipped = tick(instance, spec, kafka, storage)
    assert isinstance(skipped, dg.SkipReason) and "waiting" in skipped.skip_message
    instance.delete_run(queued)
    instance.delete_run(started)

    key = tick(instance, spec, kafka, storage).run_requests[0].run_key
    _add_run(instance, status=dg.DagsterRunStatus.FAILURE, tags={STREAM_TAG: "flights", RANGES_TAG: key})
    retried = tick(instance, spec, kafka, storage).run_requests[0]
    assert retried.run_key == f"{key}#retry1"
    assert retried.tags[RANGES_TAG] == key


def _ranges(request) -> list[dict]:
    return request.run_config["ops"]["flights_raw"]["config"]["offset_ranges"]


def _add_run(instance, *, status, tags) -> str:
    run_id = str(uuid.uuid4())
    instance.add_run(dg.DagsterRun(job_name="flights_ingest", run_id=run_id, status=status, tags=tags))
    return run_id
