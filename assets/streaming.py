"""`<stream>_streaming`: one long-lived run following a stream in micro-batches.

Kafka -> raw -> current -> embeddings in one op that stays up (model and table handles warm),
yielding an `AssetMaterialization` per layer per batch as the batch lands (so the UI plots every
batch, with the same metadata a run per batch reports plus the batch's stage seconds) and, at
most every `CHECK_EVERY_S`, the lag checks' evaluations. The offsets sensor keeps one such run
going while the topic has traffic (`streaming_run_request`); runs end after `max_run_seconds` or
`idle_seconds`, and Dagster's terminate (SIGINT/SIGTERM) stops one between batches.
(No `from __future__ import annotations`: Dagster reads the resources from the annotations.)
"""

import time
from collections.abc import Iterator, Mapping

import dagster as dg

from freshlake.assets.checks import lag_evaluations, quarantine_evaluations
from freshlake.assets.keys import current_key, embeddings_key, quarantine_key, raw_key
from freshlake.assets.partitions import current_partition
from freshlake.assets.processed import fold_metadata, sync_metadata
from freshlake.assets.raw import ingest_metadata
from freshlake.resources.embedder import EmbedderResource
from freshlake.resources.kafka import KafkaResource
from freshlake.resources.storage import StorageResource
from freshlake.streams import StreamSpec

STAGES = ("read", "raw", "current", "embeddings")  # seconds per stage, in each batch's metadata

STREAMING_TAG = "freshlake/streaming"  # the stream a streaming run follows (not `freshlake/stream`:
# that tag's one-run limit would hold backfills and manual runs behind a run that lasts minutes)
STREAMING_FROM_TAG = "freshlake/streaming_from"  # its run key without the retry suffix
CHECK_EVERY_S = 5.0


def streaming_job_name(spec: StreamSpec) -> str:
    return f"{spec.name}_streaming"


def build_streaming_job(spec: StreamSpec) -> dg.JobDefinition:
    @dg.op(name=f"{spec.name}_stream", out={}, tags={"freshlake/stream": spec.name})
    def _stream(
        context: dg.OpExecutionContext,
        kafka: KafkaResource,
        storage: StorageResource,
        embedder: EmbedderResource,
    ) -> Iterator:
        from freshlake.streaming.loop import StreamRun
        from freshlake.streaming.signals import stop_on_signals
        from freshlake.streaming.stages import StreamStores

        model = embedder.get() if spec.document is not None else None
        stores = StreamStores(spec=spec, storage=storage, embedder=model)
        with stop_on_signals() as stop:
            run = StreamRun(spec=spec, kafka_config=kafka.client_config(), stores=stores, stop=stop)
            checked, last = 0.0, None
            for report in run.batches():
                yield from batch_materializations(spec, report, model=model)
                last = report
                if time.monotonic() - checked >= CHECK_EVERY_S:
                    yield from check_evaluations(spec, report, storage=storage)
                    checked, last = time.monotonic(), None
            if last is not None:  # the final state, whenever the run ends
                yield from check_evaluations(spec, last, storage=storage)
        context.log.info(f"{spec.name}: {run.batches_done} batches; ended: {run.stopped_by}")
        if run.stopped_by == "stopped":
            raise dg.DagsterExecutionInterruptedError(f"{spec.name}: stopped between batches")

    return dg.GraphDefinition(name=streaming_job_name(spec), node_defs=[_stream]).to_job(
        tags={STREAMING_TAG: spec.name},
        executor_def=dg.in_process_executor,
        description=(
            f"Follows Kafka `{spec.topic}` in micro-batches: {spec.name} raw -> current -> embeddings, "
            f"for up to {spec.batching.max_run_seconds:.0f}s (or {spec.batching.idle_seconds:.0f}s idle)."
        ),
    )


def batch_materializations(spec: StreamSpec, report, *, model) -> Iterator[dg.AssetMaterialization]:
    """One per layer for a `freshlake.streaming.loop.BatchReport`, with the batch's numbers."""
    ingest = report.ingest
    now = current_partition(spec)
    batch = {
        "batch": report.number,
        "consumer_lag": report.consumer_lag,
        "batch_seconds": report.seconds["total"],
        **{
            f"stage_{stage}_seconds": report.seconds[stage]
            for stage in ("read", "raw", "current", "embeddings")
        },
    }
    if report.event_time_lag_seconds is not None:
        batch["searchable_event_time_lag_seconds"] = round(report.event_time_lag_seconds, 3)
    layers: dict[dg.AssetKey, Mapping] = ingest_metadata(spec, ingest)
    raw_partitions = sorted({now, *ingest.partition_keys})
    for key in (raw_key(spec), quarantine_key(spec)):
        for partition in raw_partitions:
            yield dg.AssetMaterialization(
                asset_key=key, partition=partition, metadata={**layers[key], **batch}
            )
    offsets = {"offset_ranges": layers[raw_key(spec)]["offset_ranges"]}
    yield dg.AssetMaterialization(
        asset_key=current_key(spec),
        partition=now,
        metadata={**fold_metadata(report.fold), **offsets, **batch},
    )
    if report.sync is not None:
        yield dg.AssetMaterialization(
            asset_key=embeddings_key(spec),
            partition=now,
            metadata={**sync_metadata(report.sync, model=model), **offsets, **batch},
        )


def check_evaluations(
    spec: StreamSpec, report, *, storage: StorageResource | None = None
) -> Iterator[dg.AssetCheckEvaluation]:
    """The lag checks, judged on what the batch saw: no extra watermark read or table scan; with
    `storage`, the quarantine check too (a scan of the window's rows)."""
    from freshlake.lag import StreamLag

    ingest = report.ingest
    lag = StreamLag(
        stream=spec.name,
        topic=spec.topic,
        measured_at=report.finished_at,
        watermarks=dict(ingest.watermarks),
        committed=dict(ingest.committed),
        consumer_lag=report.consumer_lag,
        newest_event_time=report.newest_searchable,
        event_time_source=("lancedb" if spec.document is not None else "delta-current")
        if report.newest_searchable is not None
        else "none",
    )
    evaluations = lag_evaluations(spec, lag)
    if storage is not None:
        evaluations.update(quarantine_evaluations(spec, storage=storage, now=report.finished_at))
    for key, kwargs in evaluations.items():
        yield dg.AssetCheckEvaluation(asset_key=key.asset_key, check_name=key.name, blocking=False, **kwargs)


def streaming_run_request(
    instance: dg.DagsterInstance, *, spec: StreamSpec, start: Mapping[int, int], high: Mapping[int, int]
) -> dg.SensorResult | dg.SkipReason:
    """The offsets sensor's decision in streaming mode: one streaming run while there is lag.

    A run in flight (any status until it has ended, CANCELING included) is left alone; otherwise
    lag starts one from `start` (the raw table's txn versions). A run that ended from the same
    offsets (failed, killed, or stopped before committing) is followed under a new key.
    """
    from freshlake.ingest.plan import consumer_lag
    from freshlake.sensors.offsets import IN_FLIGHT
    from freshlake.streaming.trigger import retry_key, streaming_run_key

    lag = consumer_lag(start=start, high=high)
    running = instance.get_runs(
        filters=dg.RunsFilter(tags={STREAMING_TAG: spec.name}, statuses=IN_FLIGHT), limit=1
    )
    if running:
        return dg.SkipReason(
            f"streaming run {running[0].run_id[:8]} ({running[0].status.value}) follows {spec.name}; "
            f"lag {lag}"
        )
    if lag == 0:
        return dg.SkipReason("no new messages")
    key = streaming_run_key(topic=spec.topic, start=start)
    earlier = instance.get_runs(filters=dg.RunsFilter(tags={STREAMING_FROM_TAG: key}))
    request = dg.RunRequest(
        run_key=retry_key(key, earlier_runs=len(earlier)),
        partition_key=None,
        tags={STREAMING_TAG: spec.name, STREAMING_FROM_TAG: key, "freshlake/lag": str(lag)},
    )
    return dg.SensorResult(run_requests=[request])
