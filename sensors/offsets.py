"""`<stream>_offsets`: watches watermarks against the raw table's commits and launches runs."""

import time

import dagster as dg

from freshlake.assets.partitions import RANGES_TAG, current_partition
from freshlake.errors import FreshlakeConfigError
from freshlake.resources.kafka import KafkaResource
from freshlake.resources.storage import StorageResource
from freshlake.streams import StreamSpec

STREAM_TAG = "freshlake/stream"
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]
WAITING = {dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED}
FAILED = [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


def build_offsets_sensor(
    spec: StreamSpec, *, job: dg.JobDefinition | object, interval_seconds: int = 2
) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{spec.name}_offsets",
        job=job,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Launches `{spec.name}` ingestion when `{spec.topic}` has new offsets.",
    )
    def _offsets(context: dg.SensorEvaluationContext, kafka: KafkaResource, storage: StorageResource):
        return evaluate(context, spec=spec, kafka=kafka, storage=storage, now=time.time())

    return _offsets


def evaluate(
    context: dg.SensorEvaluationContext,
    *,
    spec: StreamSpec,
    kafka: KafkaResource,
    storage: StorageResource,
    now: float,
) -> dg.SensorResult | dg.SkipReason:
    from freshlake.delta.tables import committed_offsets
    from freshlake.ingest.plan import next_offsets, parse_run_key
    from freshlake.ingest.trigger import SensorCursor, decide
    from freshlake.kafka.consumer import topic_partitions, watermarks

    # One run executing and one waiting behind it (the per-stream concurrency limit keeps them
    # serial): the next run is ready the moment the current one ends, instead of a sensor tick
    # and a queue check later.
    in_flight = context.instance.get_runs(
        filters=dg.RunsFilter(tags={STREAM_TAG: spec.name}, statuses=IN_FLIGHT)
    )
    waiting = [r for r in in_flight if r.status in WAITING]
    if waiting:
        return dg.SkipReason(f"run {waiting[0].run_id[:8]} for {spec.name} is already waiting to start")
    try:
        config = kafka.client_config()
        partitions = topic_partitions(config, topic=spec.topic, timeout=5)
        marks = watermarks(config, topic=spec.topic, partitions=partitions, timeout=5)
    except FreshlakeConfigError as exc:
        # A broker outage is a reason to wait, not to crash-loop the tick.
        return dg.SkipReason(f"Kafka unavailable, will retry: {exc}")
    tables = storage.raw_tables(spec)
    committed = committed_offsets(
        tables.raw, topic=spec.topic, partitions=partitions, storage_options=tables.storage_options
    )
    start = next_offsets(committed=committed, low=marks.low, high=marks.high, topic=spec.topic)
    # Plan after what the executing run will write. If it fails, the next run still starts from
    # the committed offsets (runs clip their ranges to them), so nothing is skipped.
    for run in in_flight:
        for r in parse_run_key(run.tags.get(RANGES_TAG, "")):
            end = min(r.end, marks.high.get(r.partition, r.end))
            start[r.partition] = max(start.get(r.partition, end), end)
    decision = decide(
        topic=spec.topic,
        start=start,
        high=marks.high,
        batching=spec.batching,
        cursor=SensorCursor.loads(context.cursor),
        now=now,
    )
    if decision.run_key is None:
        return dg.SensorResult(skip_reason=decision.skip_reason, cursor=decision.cursor.dumps())
    failed = context.instance.get_runs(
        filters=dg.RunsFilter(tags={RANGES_TAG: decision.run_key}, statuses=FAILED)
    )
    # A failed run's range is asked for again under a new key, never lost behind de-duplication.
    key = decision.run_key if not failed else f"{decision.run_key}#retry{len(failed)}"
    request = dg.RunRequest(
        run_key=key,
        partition_key=current_partition(spec),
        run_config={
            "ops": {
                f"{spec.name}_raw": {
                    "config": {
                        "offset_ranges": [
                            {"partition": r.partition, "start": r.start, "end": r.end}
                            for r in decision.ranges
                        ]
                    }
                }
            }
        },
        tags={
            STREAM_TAG: spec.name,
            RANGES_TAG: decision.run_key,
            "freshlake/lag": str(decision.lag),
        },
    )
    return dg.SensorResult(run_requests=[request], cursor=decision.cursor.dumps())
