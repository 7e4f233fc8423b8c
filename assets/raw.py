"""`<stream>/raw` and `<stream>/quarantine`: the primary store, exactly once, nothing lost.

One op writes both tables (quarantine commits first, then raw), so selecting either asset alone
(`dagster asset materialize --select flights/raw`) runs the op and writes both: the unselected
one is reported as a materialization event rather than an output.
(No `from __future__ import annotations`: Dagster reads the config class from the annotation.)
"""

from datetime import UTC, datetime, timedelta

import dagster as dg
import pyarrow as pa

from freshlake.assets.keys import quarantine_key, raw_key, topic_key
from freshlake.assets.partitions import is_incremental, partitions_def
from freshlake.delta.schemas import quarantine_schema, raw_schema
from freshlake.ingest.plan import OffsetRange
from freshlake.resources.kafka import KafkaResource
from freshlake.resources.storage import StorageResource
from freshlake.streams import StreamSpec


class OffsetRangeConfig(dg.Config):
    partition: int
    start: int
    end: int


class IngestConfig(dg.Config):
    """Empty `offset_ranges`: everything from the committed offsets to the watermark, capped.

    A backfill (or a run of past partitions) instead re-reads its partitions' time window from
    Kafka and replaces those rows.
    """

    offset_ranges: list[OffsetRangeConfig] = []  # noqa: RUF012 - pydantic copies defaults
    max_records: int | None = None


def column_schema(schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name=f.name, type=str(f.type)) for f in schema])


def freshness_policy(spec: StreamSpec) -> dg.FreshnessPolicy:
    return dg.FreshnessPolicy.time_window(
        fail_window=timedelta(seconds=spec.freshness.fail_after_seconds),
        warn_window=timedelta(seconds=spec.freshness.warn_after_seconds),
    )


def build_raw_assets(spec: StreamSpec) -> dg.AssetsDefinition:
    topic = topic_key(spec)

    @dg.multi_asset(
        name=f"{spec.name}_raw",
        specs=[
            dg.AssetSpec(
                key=raw_key(spec),
                deps=[topic],
                group_name=spec.name,
                kinds={"delta"},
                description=f"Every `{spec.topic}` message exactly once, as it came.",
                metadata={"dagster/column_schema": column_schema(raw_schema(spec))},
                freshness_policy=freshness_policy(spec),
            ),
            dg.AssetSpec(
                key=quarantine_key(spec),
                deps=[topic],
                group_name=spec.name,
                kinds={"delta"},
                description=f"`{spec.topic}` messages that failed to parse, with the reason.",
                metadata={"dagster/column_schema": column_schema(quarantine_schema())},
                freshness_policy=freshness_policy(spec),  # written (maybe empty) by every run
            ),
        ],
        op_tags={"freshlake/stream": spec.name},
        can_subset=True,
        partitions_def=partitions_def(spec),
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def _raw(
        context: dg.AssetExecutionContext,
        config: IngestConfig,
        kafka: KafkaResource,
        storage: StorageResource,
    ):
        if not config.offset_ranges and not is_incremental(context, spec):
            yield from _reingest(context, spec=spec, kafka=kafka, storage=storage)
            return
        from freshlake.ingest.raw import ingest_stream

        ranges = [OffsetRange(partition=r.partition, start=r.start, end=r.end) for r in config.offset_ranges]
        result = ingest_stream(
            spec=spec,
            kafka_config=kafka.client_config(),
            tables=storage.raw_tables(spec),
            ranges=ranges or None,
            max_records=config.max_records,
        )
        context.log.info(
            f"{spec.name}: read {result.messages_read}, wrote {result.rows_written}, "
            f"quarantined {result.rows_quarantined}, lag {result.consumer_lag}"
        )
        metadata = ingest_metadata(
            spec,
            result,
            quarantine_uri=storage.delta_uri(spec, "quarantine"),
            storage_options=storage.storage_options,
        )
        # Rows whose message time falls in another partition (a run just after midnight, a
        # producer's late timestamp) mark that partition materialized too.
        partitioned = context.has_partition_key or context.has_partition_key_range
        for other in sorted(set(result.partition_keys) - set(context.partition_keys if partitioned else ())):
            for key, values in metadata.items():
                context.log_event(dg.AssetMaterialization(asset_key=key, partition=other, metadata=values))
        yield from _results(context, metadata)

    return _raw


def ingest_metadata(
    spec: StreamSpec, result, *, quarantine_uri: str | None = None, storage_options=None
) -> dict[dg.AssetKey, dict]:
    """Raw's and quarantine's metadata of one ingest (`freshlake.ingest.raw.IngestResult`): a
    run's, or one micro-batch of a streaming run. With `quarantine_uri`, quarantine's also carry
    the table's total and the error classes of what this ingest quarantined."""
    now = datetime.now(UTC)
    event_lag = (now - result.newest_event_time).total_seconds() if result.newest_event_time else None
    ranges_text = ", ".join(f"p{r.partition}: {r.start}-{r.end}" for r in result.ranges) or "none"
    metadata = {
        "rows_written": result.rows_written,
        "rows_quarantined": result.rows_quarantined,
        "rows_skipped_already_written": result.rows_skipped,
        "messages_read": result.messages_read,
        "offset_ranges": ranges_text,
        "consumer_lag": result.consumer_lag,
        "kafka_key_mismatches": result.kafka_key_mismatches,
        "read_seconds": round(result.read_seconds, 3),
        "parse_seconds": round(result.parse_seconds, 3),
        "write_seconds": round(result.write_seconds, 3),
    }
    if result.raw_version is not None:  # unknown values are left out, never a sentinel
        metadata["delta_version"] = result.raw_version
    if result.newest_message_time is not None:
        metadata["newest_message_time"] = dg.MetadataValue.timestamp(result.newest_message_time)
    if event_lag is not None:
        metadata["event_time_lag_seconds"] = round(event_lag, 3)
    quarantine_metadata: dict = {"rows_quarantined": result.rows_quarantined}
    if result.quarantine_version is not None:
        quarantine_metadata["delta_version"] = result.quarantine_version
    if quarantine_uri is not None:
        quarantine_metadata.update(
            quarantine_table_metadata(
                quarantine_uri,
                storage_options=storage_options,
                ranges=result.ranges if result.rows_quarantined else (),
            )
        )
    return {raw_key(spec): metadata, quarantine_key(spec): quarantine_metadata}


def quarantine_table_metadata(uri: str, *, storage_options=None, ranges=()) -> dict:
    """`rows_quarantined_total` (from the Delta log's file stats: no data read) and, for the
    offsets of `ranges`, `error_classes` (class x count) and `latest_error` (the newest reason)."""
    import pyarrow.compute as pc
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        table = DeltaTable(uri, storage_options=dict(storage_options or {}))
    except TableNotFoundError:
        return {}
    out: dict = {}
    counts = pa.table(table.get_add_actions(flatten=True)).column("num_records")
    if counts.null_count == 0:  # stats missing: the total is unknown, so left out
        out["rows_quarantined_total"] = int(pc.sum(counts).as_py() or 0)
    wanted = None
    for r in ranges:
        one = (
            (pc.field("kafka_partition") == r.partition)
            & (pc.field("kafka_offset") >= r.start)
            & (pc.field("kafka_offset") < r.end)
        )
        wanted = one if wanted is None else wanted | one
    if wanted is None:
        return out
    rows = table.to_pyarrow_dataset().to_table(
        columns=["kafka_partition", "kafka_offset", "error_class", "error_message"], filter=wanted
    )
    if rows.num_rows:
        classes = rows.group_by("error_class").aggregate([("error_class", "count")])
        pairs = sorted(
            zip(
                classes.column("error_class").to_pylist(),
                classes.column("error_class_count").to_pylist(),
                strict=True,
            ),
            key=lambda kv: -kv[1],
        )
        out["error_classes"] = ", ".join(f"{name} x{n}" for name, n in pairs)
        newest = rows.sort_by([("kafka_offset", "descending")]).slice(0, 1).to_pylist()[0]
        message = newest["error_message"] or ""
        out["latest_error"] = (
            f"p{newest['kafka_partition']}@{newest['kafka_offset']} {newest['error_class']}: "
            + (message if len(message) <= 200 else message[:197] + "...")
        )
    return out


def _reingest(
    context: dg.AssetExecutionContext, *, spec: StreamSpec, kafka: KafkaResource, storage: StorageResource
):
    from freshlake.ingest.backfill import reingest_window
    from freshlake.partitions import window

    span = window(context.partition_keys, cadence=spec.partitioning.cadence)
    result = reingest_window(
        spec=spec, kafka_config=kafka.client_config(), tables=storage.raw_tables(spec), window=span
    )
    context.log.info(
        f"{spec.name}: re-ingested {span.dates[0]}..{span.dates[-1]} from Kafka: "
        f"{result.rows_replaced} rows replaced by {result.rows_written}, "
        f"{result.rows_quarantined} quarantined"
    )
    ranges_text = ", ".join(f"p{r.partition}: {r.start}-{r.end}" for r in result.ranges) or "none"
    raw_metadata = {
        "backfill": True,
        "rows_written": result.rows_written,
        "rows_replaced": result.rows_replaced,
        "rows_quarantined": result.rows_quarantined,
        "offset_ranges": ranges_text,
        "seconds": round(result.seconds, 3),
    }
    if result.raw_version is not None:  # unknown values are left out, never a sentinel
        raw_metadata["delta_version"] = result.raw_version
    quarantine_metadata: dict = {"rows_quarantined": result.rows_quarantined}
    if result.quarantine_version is not None:
        quarantine_metadata["delta_version"] = result.quarantine_version
    quarantine_metadata.update(
        quarantine_table_metadata(
            storage.delta_uri(spec, "quarantine"),
            storage_options=storage.storage_options,
            ranges=result.ranges if result.rows_quarantined else (),
        )
    )
    yield from _results(context, {raw_key(spec): raw_metadata, quarantine_key(spec): quarantine_metadata})


def _results(context: dg.AssetExecutionContext, metadata: dict[dg.AssetKey, dict]):
    """A result per selected asset; the other table was written too, so it gets an event."""
    partitioned = context.has_partition_key or context.has_partition_key_range
    for key, values in metadata.items():
        if key in context.selected_asset_keys:
            yield dg.MaterializeResult(asset_key=key, metadata=values)
            continue
        for partition in context.partition_keys if partitioned else [None]:
            context.log_event(dg.AssetMaterialization(asset_key=key, partition=partition, metadata=values))
