"""`feedback/finetuning`: rated answers with the chunk texts they cited at the time (Delta)."""

from collections.abc import Sequence
from datetime import timedelta

import dagster as dg

from freshlake.assets.keys import finetuning_key, raw_key
from freshlake.assets.partitions import partitions_def
from freshlake.assets.raw import column_schema
from freshlake.embed.chunking import ChunkerSettings
from freshlake.feedback import DATASET_SCHEMA, DATASET_VERSION
from freshlake.partitions import STEPS, key_for
from freshlake.resources.storage import StorageResource
from freshlake.streams import StreamSpec

LAYER = "finetuning"
# A day's rows read every earlier raw event of the cited documents (the as-of join), never a
# later one: each partition depends on the document streams' partitions up to its own.
HISTORY = dg.TimeWindowPartitionMapping(start_offset=-100_000, end_offset=0)


class FinetuningConfig(dg.Config):
    """`jsonl_dir`: also write `<jsonl_dir>/<YYYY-MM-DD>.jsonl` for each day the run touches."""

    jsonl_dir: str | None = None


def build_finetuning_asset(spec: StreamSpec, *, streams: Sequence[StreamSpec]) -> dg.AssetsDefinition:
    named = spec.feedback.documents if spec.feedback is not None else ()
    documents = [
        s
        for s in streams
        if s.document is not None and s.name != spec.name and (not named or s.name in named)
    ]
    joined = {s.document.enrich.stream for s in documents if s.document.enrich is not None}
    sources = [s for s in streams if s in documents or s.name in joined]  # raw tables read
    templates = ",".join(f"{s.name}-{s.document.version}" for s in documents)
    step = STEPS[spec.partitioning.cadence]

    @dg.asset(
        key=finetuning_key(spec),
        deps=[raw_key(spec), *[dg.AssetDep(raw_key(s), partition_mapping=HISTORY) for s in sources]],
        partitions_def=partitions_def(spec),
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name=spec.name,
        kinds={"delta"},
        description=(
            f"`{spec.name}` joined as of its time with the raw documents it cites: query, answer, "
            "label and the chunk texts then, one row per feedback (fine-tuning dataset)."
        ),
        metadata={"dagster/column_schema": column_schema(DATASET_SCHEMA)},
        freshness_policy=dg.FreshnessPolicy.time_window(
            fail_window=2 * step + timedelta(hours=2), warn_window=step + timedelta(hours=2)
        ),
        code_version=f"feedback-v{DATASET_VERSION}|{ChunkerSettings().version}|templates-{templates}",
        op_tags={"freshlake/stream": spec.name},
    )
    def _finetuning(
        context: dg.AssetExecutionContext, config: FinetuningConfig, storage: StorageResource
    ) -> dg.MaterializeResult:
        from freshlake.feedback import build_finetuning, export_jsonl
        from freshlake.partitions import window

        span = window(context.partition_keys, cadence=spec.partitioning.cadence)
        out_uri = storage.delta_uri(spec, LAYER)
        result = build_finetuning(
            feedback_uri=storage.delta_uri(spec, "raw"),
            raw_uris={s.name: storage.delta_uri(s, "raw") for s in sources},
            out_uri=out_uri,
            streams=sources,
            feedback=spec,
            window=span,
            chunker=ChunkerSettings(),
            storage_options=storage.storage_options,
        )
        dataset = result.dataset
        context.log.info(
            f"{spec.name}/{LAYER} {span.dates[0]}..{span.dates[-1]}: {dataset.rows.num_rows} rows, "
            f"{dataset.documents_missing} of {dataset.documents_referenced} cited documents missing"
        )
        metadata = {
            "rows": dataset.rows.num_rows,
            "up": dataset.count(1),
            "down": dataset.count(0),
            "other_ratings": dataset.count(None),
            "documents_referenced": dataset.documents_referenced,
            "documents_missing": dataset.documents_missing,
            "duplicates_dropped": dataset.duplicates_dropped,
            "feedback_rows_read": result.feedback_rows,
            "delta_version": result.delta_version,
            "dates": f"{span.dates[0]}..{span.dates[-1]}",
            "seconds": round(result.seconds, 3),
        }
        if config.jsonl_dir:
            files = export_jsonl(
                out_uri, directory=config.jsonl_dir, window=span, storage_options=storage.storage_options
            )
            metadata["jsonl_files"] = ", ".join(files)
        return dg.MaterializeResult(metadata=metadata)

    return _finetuning


def build_feedback_definitions(streams: Sequence[StreamSpec]) -> dg.Definitions:
    """The fine-tuning dataset of every stream declared with `feedback:`, each with a schedule
    building each finished partition shortly after it closes."""
    return dg.Definitions.merge(
        dg.Definitions(),
        *[_feedback_definitions(s, streams=streams) for s in streams if s.feedback is not None],
    )


def _feedback_definitions(spec: StreamSpec, *, streams: Sequence[StreamSpec]) -> dg.Definitions:
    asset = build_finetuning_asset(spec, streams=streams)
    job = dg.define_asset_job(
        name=f"{spec.name}_{LAYER}",
        selection=dg.AssetSelection.assets(finetuning_key(spec)),
        executor_def=dg.in_process_executor,
        description=f"Build the {spec.name} fine-tuning dataset for a partition (or a backfill).",
    )
    cadence = spec.partitioning.cadence
    step = STEPS[cadence]

    @dg.schedule(
        name=f"{spec.name}_{LAYER}_schedule",
        job=job,
        cron_schedule="30 0 * * *" if cadence == "daily" else "30 * * * *",
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="The partition that just closed, 30 minutes after (late raw data: backfill it).",
    )
    def _closed_partition(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        key = key_for(context.scheduled_execution_time - step, cadence=cadence)
        return dg.RunRequest(run_key=key, partition_key=key)

    return dg.Definitions(assets=[asset], jobs=[job], schedules=[_closed_partition])
