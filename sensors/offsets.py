"""`<stream>_offsets`: watches watermarks against the raw table's commits and launches runs.

It sees every in-flight run that ingests the stream, whatever launched it (this sensor, the UI,
the CLI, a backfill): by asset selection, by the stream's job, or by the stream tag. Overlapping
runs are safe (raw commits only on the offsets a run planned from); the sensor only avoids
launching runs that would read what another run is already reading.
"""

import time

import dagster as dg

from freshlake.assets.keys import quarantine_key, raw_key
from freshlake.assets.partitions import BACKFILL_TAG, RANGES_TAG, current_partition
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
    dg.DagsterRunStatus.CANCELING,  # still executing: it may yet commit its range
]
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
WAITING = {dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED}
FAILED = [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


def build_offsets_sensor(
    spec: StreamSpec,
    *,
    job: dg.JobDefinition | object,
    interval_seconds: int = 2,
    streaming_job: dg.JobDefinition | None = None,
) -> dg.SensorDefinition:
    """`streaming_job`: in streaming mode, keep one run of it going instead (`assets/streaming.py`)."""
    streaming = streaming_job is not None and spec.batching.mode == "streaming"

    @dg.sensor(
        name=f"{spec.name}_offsets",
        job=streaming_job if streaming else job,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Launches `{spec.name}` ingestion when `{spec.topic}` has new offsets.",
    )
    def _offsets(context: dg.SensorEvaluationContext, kafka: KafkaResource, storage: StorageResource):
        return evaluate(
            context, spec=spec, kafka=kafka, storage=storage, now=time.time(), streaming=streaming
        )

    return _offsets


def evaluate(
    context: dg.SensorEvaluationContext,
    *,
    spec: StreamSpec,
    kafka: KafkaResource,
    storage: StorageResource,
    now: float,
    streaming: bool = False,
) -> dg.SensorResult | dg.SkipReason:
    from freshlake.delta.tables import committed_offsets
    from freshlake.ingest.plan import OffsetsWentBackwards, next_offsets, parse_run_key
    from freshlake.ingest.trigger import SensorCursor, decide
    from freshlake.kafka.consumer import topic_partitions, watermarks

    # One run executing and one waiting behind it (the per-stream concurrency limit keeps them
    # serial): the next run is ready the moment the current one ends, instead of a sensor tick
    # and a queue check later.
    in_flight = ingest_runs(context.instance, spec=spec)
    waiting = [r for r in in_flight if r.status in WAITING]
    if waiting:
        return dg.SkipReason(f"run {waiting[0].run_id[:8]} for {spec.name} is already waiting to start")
    unplanned = [r for r in in_flight if RANGES_TAG not in r.tags]
    if unplanned:  # launched by hand: it reads up to the watermark; plan after it ends
        return dg.SkipReason(
            f"run {unplanned[0].run_id[:8]} ({unplanned[0].status.value}) is ingesting {spec.name}; "
            "the next tick after it ends plans from what it committed"
        )
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
    try:
        start = next_offsets(committed=committed, low=marks.low, high=marks.high, topic=spec.topic)
    except OffsetsWentBackwards as exc:  # fails the tick (loud in the UI), with the one way out
        msg = (
            f"{exc} To start {spec.name} over from the topic as it is now: stop freshlake dev, run "
            f"`freshlake reset {spec.name}` (archives its tables under $FRESHLAKE_HOME/archive), start again."
        )
        raise OffsetsWentBackwards(msg) from None
    if streaming:
        from freshlake.assets.streaming import streaming_run_request

        return streaming_run_request(context.instance, spec=spec, start=start, high=marks.high)
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


def ingest_runs(instance: dg.DagsterInstance, *, spec: StreamSpec) -> list[dg.DagsterRun]:
    """In-flight runs that read `spec`'s topic into raw, from any launch path.

    A run ingests when it materializes `<stream>/raw` or `<stream>/quarantine` (its asset
    selection, else the stream's job or tag) and follows the stream: a backfill or a run of
    past partitions re-reads a time window of committed offsets, which never moves them.
    """
    keys = {raw_key(spec), quarantine_key(spec)}
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT), limit=1000)
    return [
        run
        for run in runs
        if (
            keys & set(run.asset_selection)
            if run.asset_selection is not None
            else run.job_name == f"{spec.name}_ingest" or run.tags.get(STREAM_TAG) == spec.name
        )
        and _follows_stream(run.tags, spec=spec)
    ]


def _follows_stream(tags: dict[str, str], *, spec: StreamSpec) -> bool:
    """`is_incremental` as the run's tags tell it, before the run starts."""
    if RANGES_TAG in tags:
        return True
    if BACKFILL_TAG in tags:
        return False
    now = current_partition(spec)
    if RANGE_START_TAG in tags:
        return tags[RANGE_START_TAG] == tags.get(RANGE_END_TAG) == now
    return tags.get(PARTITION_TAG, now) == now
