"""Maintenance: Delta compaction + checkpoints, LanceDB indexes + optimize; one writer at a time."""

from collections.abc import Sequence

import dagster as dg

from assets.keys import current_key, embeddings_key, quarantine_key, raw_key
from freshlake.streams import StreamSpec
from resources.embedder import EmbedderResource
from resources.storage import StorageResource

MAINTENANCE_TAG = "freshlake/maintenance"


def build_maintenance_definitions(streams: Sequence[StreamSpec]) -> dg.Definitions:
    @dg.op(description="Compact small files and checkpoint every raw and quarantine table.")
    def compact_delta_tables(context: dg.OpExecutionContext, storage: StorageResource) -> None:
        from freshlake.delta.maintenance import compact

        for spec in streams:
            tables = (
                (raw_key(spec), "raw"),
                (quarantine_key(spec), "quarantine"),
                (current_key(spec), "current"),
            )
            for key, layer in tables:
                result = compact(storage.delta_uri(spec, layer), storage_options=storage.storage_options)
                context.log_event(
                    dg.AssetObservation(
                        asset_key=key,
                        metadata={
                            "files_before": result.files_before,
                            "files_after": result.files_after,
                            "delta_version": result.version if result.version is not None else -1,
                            "compaction_seconds": round(result.seconds, 3),
                        },
                    )
                )

    @dg.job(
        name="delta_maintenance",
        tags={MAINTENANCE_TAG: "delta"},
        description="Compaction + checkpoints; safe beside streaming writes (conflicts retried).",
    )
    def delta_maintenance() -> None:
        compact_delta_tables()

    @dg.op(description="Build missing indexes (FTS, BTREE, vector once large) and optimize tables.")
    def maintain_lance_tables(
        context: dg.OpExecutionContext, storage: StorageResource, embedder: EmbedderResource
    ) -> None:
        dimension = embedder.get().dimension
        for spec in streams:
            if spec.document is None:
                continue
            store = storage.chunk_store(spec, dimension=dimension)
            indexes = store.ensure_indexes()
            optimized = store.optimize()
            context.log_event(
                dg.AssetObservation(
                    asset_key=embeddings_key(spec),
                    metadata={
                        "indexes_created": ", ".join(indexes["created"]) or "none",
                        "rows": optimized["rows"],
                        "fragments_before": optimized["fragments_before"],
                        "fragments_after": optimized["fragments_after"],
                        "unindexed_rows": sum(optimized["unindexed_rows"].values()),
                        "lance_version": optimized["version"],
                        "seconds": round(indexes["seconds"] + optimized["seconds"], 3),
                    },
                )
            )

    @dg.job(
        name="lance_maintenance",
        tags={MAINTENANCE_TAG: "lance"},
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
