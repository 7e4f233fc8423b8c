"""The time partitions every asset of a stream shares (raw, quarantine, current, embeddings)."""

from datetime import UTC, datetime

import dagster as dg

from freshlake.partitions import key_for
from freshlake.streams import StreamSpec

BACKFILL_TAG = "dagster/backfill"


def partitions_def(spec: StreamSpec) -> dg.TimeWindowPartitionsDefinition:
    """Daily (or hourly) on Kafka message time, UTC; the partition in progress exists
    (`end_offset=1`) because streaming runs write into it."""
    if spec.partitioning.cadence == "hourly":
        return dg.HourlyPartitionsDefinition(start_date=spec.partitioning.start, end_offset=1, timezone="UTC")
    return dg.DailyPartitionsDefinition(start_date=spec.partitioning.start, end_offset=1, timezone="UTC")


def current_partition(spec: StreamSpec, *, now: datetime | None = None) -> str:
    """The partition streaming runs write into."""
    return key_for(now or datetime.now(UTC), cadence=spec.partitioning.cadence)
