"""Maintenance jobs: Delta compaction, checkpoints and vacuum; LanceDB indexes, optimize, rebuilds.

One maintenance writer per table: each op runs in a Dagster concurrency pool (limit 1 from the
instance's `concurrency.pools.default_limit`, enforced per op, whatever job or launcher runs it);
the run tag `freshlake/maintenance` also keeps the queue from launching a second run of a kind.
Streaming writes may commit at any time: conflicts are retried, the stream's commit wins.
Observations are table-wide (no partition): a compaction spans every day of a table.
"""

from collections.abc import Sequence
from datetime import timedelta

import dagster as dg
from pydantic import Field

from freshlake.assets.keys import current_key, embeddings_key, quarantine_key, raw_key
from freshlake.delta.maintenance import DEFAULT_RETENTION_HOURS, MIN_RETENTION_HOURS
from freshlake.lance.store import MAX_UNINDEXED_FRACTION, MIN_RECALL, SAMPLE_QUERIES
from freshlake.resources.storage import StorageResource
from freshlake.streams import StreamSpec

MAINTENANCE_TAG = "freshlake/maintenance"
DELTA_POOL = "freshlake/maintenance/delta"
LANCE_POOL = "freshlake/maintenance/lance"


class DeltaMaintenanceConfig(dg.Config):
    retention_hours: int = Field(
        default=DEFAULT_RETENTION_HOURS,
        description=f"vacuum deletes files removed longer ago than this (at least {MIN_RETENTION_HOURS} h)",
    )
    force_retention: bool = Field(
        default=False, description="allow a retention below the floor: only when no run reads the tables"
    )
    measure_reads: bool = Field(default=True, description="time a full scan before and after (<= 1 GiB)")


class LanceMaintenanceConfig(dg.Config):
    cleanup_older_than_minutes: int = Field(default=60, description="keep versions this recent (>= 60)")
    force_cleanup: bool = Field(default=False, description="allow a cleanup below the 60 min floor")
    min_rows_for_vector_index: int = 50_000
    max_unindexed_fraction: float = Field(
        default=MAX_UNINDEXED_FRACTION, description="rebuild the vector index past this share unindexed"
    )
    min_recall: float = Field(default=MIN_RECALL, description="rebuild below this estimated recall@10")
    sample_queries: int = Field(default=SAMPLE_QUERIES, description="vector queries for p95 and recall")


def _delta_metadata(result, config: DeltaMaintenanceConfig) -> dict[str, object]:
    compaction, vacuum = result.compaction, result.vacuum
    metadata: dict[str, object] = {
        "files_before": compaction.files_before,
        "files_after": compaction.files_after,
        "bytes_before": result.bytes_before,
        "bytes_after": result.bytes_after,
        "files_vacuumed": vacuum.files_vacuumed,
        "retention_hours": config.retention_hours,
        "compaction_seconds": round(compaction.seconds, 3),
        "vacuum_seconds": round(vacuum.seconds, 3),
    }
    if result.read_seconds_before is not None:
        metadata["read_seconds_before"] = round(result.read_seconds_before, 4)
        metadata["read_seconds_after"] = round(result.read_seconds_after, 4)
    if vacuum.version is not None:  # unknown: left out, never -1
        metadata["delta_version"] = vacuum.version
    if vacuum.skipped:
        metadata["vacuum_skipped"] = vacuum.skipped
    return metadata


def _lance_metadata(result: dict) -> dict[str, object]:
    metadata: dict[str, object] = {
        "rows": result["rows"],
        "fragments_before": result["fragments_before"],
        "fragments_after": result["fragments_after"],
        "bytes_before": result["bytes_before"],
        "bytes_after": result["bytes_after"],
        "versions_before": result["versions_before"],
        "versions_after": result["versions_after"],
        "unindexed_rows_before": sum(result["unindexed_rows_before"].values()),
        "unindexed_rows": sum(result["unindexed_rows"].values()),
        "indexes_created": ", ".join(result["indexes_created"]) or "none",
        "index_rebuilt": result["index_rebuilt"] or "no",
        "lance_version": result["version"],
        "seconds": round(result["seconds"], 3),
    }
    for name in ("search_p95_ms_before", "search_p95_ms_after", "recall_at_10"):
        if result[name] is not None:
            metadata[name] = round(result[name], 3)
    return metadata


def _refuse_on_config_error(check, *args, **kwargs) -> None:
    """Run a settings check before any table is touched; fail with its message, not a trace."""
    from freshlake.errors import FreshlakeConfigError

    try:
        check(*args, **kwargs)
    except FreshlakeConfigError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc


def build_maintenance_definitions(streams: Sequence[StreamSpec]) -> dg.Definitions:
    @dg.op(
        pool=DELTA_POOL, description="Compact, checkpoint and vacuum every raw, quarantine and current table."
    )
    def maintain_delta_tables(
        context: dg.OpExecutionContext, config: DeltaMaintenanceConfig, storage: StorageResource
    ) -> None:
        from freshlake.delta.current import last_folded_raw_version
        from freshlake.delta.maintenance import check_retention, maintain
        from freshlake.embed.chunking import ChunkerSettings
        from freshlake.lance.sync import oldest_unread_current_versions

        _refuse_on_config_error(check_retention, config.retention_hours, force=config.force_retention)
        options = storage.storage_options
        failed: list[str] = []
        # Embeddings tables follow `current`'s Change Data Feed: keep what they have yet to read.
        registry = storage.registry()
        live = {s.name: e.table_name for s in streams if (e := registry.live(s.name)) is not None}
        unread = oldest_unread_current_versions(
            streams, live=live, progress=storage.progress(), chunker=ChunkerSettings()
        )
        for spec in streams:
            folded = last_folded_raw_version(storage.delta_uri(spec, "current"), storage_options=options)
            # `current` follows raw's Change Data Feed: keep what it has yet to read.
            tables = ((raw_key(spec), "raw", 0 if folded is None else folded + 1),)
            tables += (
                (quarantine_key(spec), "quarantine", None),
                (current_key(spec), "current", unread.get(spec.name)),
            )
            for key, layer, keep_from in tables:
                try:
                    result = maintain(
                        storage.delta_uri(spec, layer),
                        retention_hours=config.retention_hours,
                        force=config.force_retention,
                        keep_from_version=keep_from,
                        measure_reads=config.measure_reads,
                        storage_options=options,
                    )
                except Exception as exc:  # one table's failure leaves the others maintained
                    context.log.error(f"maintenance of {key.to_user_string()} failed: {exc}")
                    failed.append(key.to_user_string())
                    continue
                context.log_event(
                    dg.AssetObservation(asset_key=key, metadata=_delta_metadata(result, config))
                )
        if failed:
            raise dg.Failure(description=f"Delta maintenance failed for {', '.join(failed)}; see the logs")

    @dg.job(
        name="delta_maintenance",
        tags={MAINTENANCE_TAG: "delta"},
        executor_def=dg.in_process_executor,
        description="Compaction, checkpoints, vacuum; safe beside streaming writes (conflicts retried).",
    )
    def delta_maintenance() -> None:
        maintain_delta_tables()

    @dg.op(
        pool=LANCE_POOL,
        description="Indexes, optimize (compaction, old versions, index update), vector index rebuilds.",
    )
    def maintain_lance_tables(
        context: dg.OpExecutionContext, config: LanceMaintenanceConfig, storage: StorageResource
    ) -> None:
        from freshlake.lance.store import check_cleanup_age

        cleanup = timedelta(minutes=config.cleanup_older_than_minutes)
        _refuse_on_config_error(check_cleanup_age, cleanup, force=config.force_cleanup)
        registry = storage.registry()
        retired = registry.retired()  # tables swapped out longer ago than their grace period
        failed: list[str] = []
        for spec in streams:
            if spec.document is None:
                continue
            try:
                dropped = [e.table_name for e in retired if e.stream == spec.name]
                for name in dropped:
                    registry.forget(name)
                store = storage.live_store(spec)  # the table searches read; no model needed
                if store is None:  # nothing embedded yet
                    continue
                result = store.maintain(
                    cleanup_older_than=cleanup,
                    force_cleanup=config.force_cleanup,
                    min_rows_for_vector_index=config.min_rows_for_vector_index,
                    max_unindexed_fraction=config.max_unindexed_fraction,
                    min_recall=config.min_recall,
                    sample_queries=config.sample_queries,
                )
            except Exception as exc:  # one table's failure leaves the others maintained
                context.log.error(f"maintenance of {spec.name} embeddings failed: {exc}")
                failed.append(spec.name)
                continue
            metadata = {**_lance_metadata(result), "retired_tables_dropped": ", ".join(dropped) or "none"}
            context.log_event(dg.AssetObservation(asset_key=embeddings_key(spec), metadata=metadata))
        if failed:
            raise dg.Failure(description=f"LanceDB maintenance failed for {', '.join(failed)}; see the logs")

    @dg.job(
        name="lance_maintenance",
        tags={MAINTENANCE_TAG: "lance"},
        executor_def=dg.in_process_executor,
        description="Index upkeep and compaction of the vector tables, beside streaming writes.",
    )
    def lance_maintenance() -> None:
        maintain_lance_tables()

    schedules = [
        dg.ScheduleDefinition(
            job=delta_maintenance, cron_schedule="17 * * * *", default_status=dg.DefaultScheduleStatus.RUNNING
        ),
        dg.ScheduleDefinition(
            job=lance_maintenance,
            cron_schedule="*/10 * * * *",
            default_status=dg.DefaultScheduleStatus.RUNNING,
        ),
    ]
    return dg.Definitions(jobs=[delta_maintenance, lance_maintenance], schedules=schedules)
