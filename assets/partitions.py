"""The time partitions every asset of a stream shares (raw, quarantine, current, embeddings)."""

from collections.abc import Sequence
from datetime import UTC, datetime

import dagster as dg

from freshlake.partitions import key_for, resolve_starts, start_key
from freshlake.resources.storage import StorageResource
from freshlake.streams import StreamSpec

BACKFILL_TAG = "dagster/backfill"
RANGES_TAG = "freshlake/ranges"  # set by the offsets sensor on streaming runs


def partitions_def(spec: StreamSpec) -> dg.TimeWindowPartitionsDefinition:
    """Daily (or hourly) on Kafka message time, UTC; the partition in progress exists
    (`end_offset=1`) because streaming runs write into it. Starts where `with_partition_starts`
    resolved (the code location does), else at the configured start or `UNRESOLVED_START`."""
    start = start_key(spec.partitioning)
    if spec.partitioning.cadence == "hourly":
        return dg.HourlyPartitionsDefinition(start_date=start, end_offset=1, timezone="UTC")
    return dg.DailyPartitionsDefinition(start_date=start, end_offset=1, timezone="UTC")


def with_partition_starts(specs: Sequence[StreamSpec], *, storage: StorageResource) -> list[StreamSpec]:
    """`specs` whose unset partition starts are their first data in `storage`'s raw and
    quarantine tables (today before any), read from the Delta logs when the location loads."""
    return resolve_starts(
        specs,
        table_uris=lambda spec: [storage.delta_uri(spec, "raw"), storage.delta_uri(spec, "quarantine")],
        storage_options=storage.storage_options,
    )


def current_partition(spec: StreamSpec, *, now: datetime | None = None) -> str:
    """The partition streaming runs write into."""
    return key_for(now or datetime.now(UTC), cadence=spec.partitioning.cadence)


def is_incremental(context: dg.AssetExecutionContext, spec: StreamSpec) -> bool:
    """Streaming (follow the stream from where it is) or re-derive the run's partitions?

    Sensor runs and a plain materialization of the partition in progress follow the stream; a
    backfill, or any run of other partitions, re-derives exactly the partitions it targets.
    """
    tags = context.run.tags
    if RANGES_TAG in tags or not (context.has_partition_key or context.has_partition_key_range):
        return True
    return BACKFILL_TAG not in tags and list(context.partition_keys) == [current_partition(spec)]
