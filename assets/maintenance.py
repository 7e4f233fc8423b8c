"""Delta maintenance: compaction and checkpoints of the primary store, one writer at a time."""

from collections.abc import Sequence

import dagster as dg

from assets.raw import quarantine_key, raw_key
from freshlake.streams import StreamSpec
from resources.storage import StorageResource

MAINTENANCE_TAG = "freshlake/maintenance"


def build_maintenance_definitions(streams: Sequence[StreamSpec]) -> dg.Definitions:
    @dg.op(description="Compact small files and checkpoint every raw and quarantine table.")
    def compact_delta_tables(context: dg.OpExecutionContext, storage: StorageResource) -> None:
        from freshlake.delta.maintenance import compact

        for spec in streams:
            for key, layer in ((raw_key(spec), "raw"), (quarantine_key(spec), "quarantine")):
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

    schedule = dg.ScheduleDefinition(
        job=delta_maintenance,
        cron_schedule="17 * * * *",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    return dg.Definitions(jobs=[delta_maintenance], schedules=[schedule])
