"""`<stream>/current` (Delta) and `<stream>/embeddings` (LanceDB): the processed store."""

from datetime import UTC, datetime

import dagster as dg

from freshlake.assets.keys import current_key, embeddings_key, raw_key
from freshlake.assets.lineage import column_lineage, embeddings_column_lineage
from freshlake.assets.partitions import is_incremental, partitions_def
from freshlake.assets.raw import column_schema, freshness_policy
from freshlake.delta.current import current_schema
from freshlake.embed.chunking import ChunkerSettings
from freshlake.embed.models import MODEL_NAME, default_precision
from freshlake.partitions import window
from freshlake.resources.embedder import EmbedderResource
from freshlake.resources.storage import StorageResource
from freshlake.streams import StreamSpec


# What shapes the vectors: a change to the model, its precision, the chunker or a template is a
# new code version, and Dagster shows the embeddings as stale until they are re-derived.
def default_model_code() -> str:
    """model@precision of an embedder built with defaults on this machine."""
    return f"{MODEL_NAME}@{default_precision()}"


def _lag(newest: datetime | None) -> dict[str, float]:
    if newest is None:
        return {}
    return {"event_time_lag_seconds": round((datetime.now(UTC) - newest).total_seconds(), 3)}


def build_current_asset(spec: StreamSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=current_key(spec),
        deps=[raw_key(spec)],
        group_name=spec.name,
        kinds={"delta"},
        description=f"Current state of `{spec.name}` per key: newest event wins, deletes applied.",
        metadata={
            "dagster/column_schema": column_schema(current_schema(spec)),
            "dagster/column_lineage": column_lineage(spec),
        },
        freshness_policy=freshness_policy(spec),
        code_version="fold-v2",  # v2: ordered by source version, not offset
        op_tags={"freshlake/stream": spec.name},
        partitions_def=partitions_def(spec),
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def _current(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
        from freshlake.delta.current import fold_into_current, rederive_current

        uris = {"raw_uri": storage.delta_uri(spec, "raw"), "current_uri": storage.delta_uri(spec, "current")}
        if is_incremental(context, spec):
            result = fold_into_current(spec=spec, storage_options=storage.storage_options, **uris)
        else:  # a backfill: the partitions' raw rows folded again, guarded (invariant 4)
            span = window(context.partition_keys, cadence=spec.partitioning.cadence)
            result = rederive_current(spec=spec, window=span, storage_options=storage.storage_options, **uris)
        context.log.info(
            f"{spec.name}/current: {result.keys_upserted} upserted, {result.keys_deleted} deleted"
        )
        return dg.MaterializeResult(metadata=fold_metadata(result))

    return _current


def build_embeddings_asset(spec: StreamSpec, *, model_code: str | None = None) -> dg.AssetsDefinition:
    model_code = model_code or default_model_code()
    document = spec.document
    assert document is not None
    deps = [current_key(spec)]
    if document.enrich is not None:
        deps.append(dg.AssetKey([document.enrich.stream, "current"]))

    @dg.asset(
        key=embeddings_key(spec),
        deps=deps,
        group_name=spec.name,
        kinds={"lancedb"},
        description=f"`{spec.name}` documents chunked and embedded, searchable (vector, FTS, hybrid).",
        metadata={"dagster/column_lineage": embeddings_column_lineage(spec)},
        freshness_policy=freshness_policy(spec),
        code_version=f"{model_code}|{ChunkerSettings().version}|template-{document.version}",
        op_tags={"freshlake/stream": spec.name},
        partitions_def=partitions_def(spec),
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def _embeddings(
        context: dg.AssetExecutionContext, storage: StorageResource, embedder: EmbedderResource
    ) -> dg.MaterializeResult:
        from freshlake.lance.sync import backfill_keys
        from freshlake.streaming.stages import StreamStores

        model = embedder.get()
        stores = StreamStores(spec=spec, storage=storage, embedder=model)
        keys = None
        if not is_incremental(context, spec):  # a backfill: the documents the partitions touched
            keys = backfill_keys(
                spec=spec,
                window=window(context.partition_keys, cadence=spec.partitioning.cadence),
                raw_uris={s: storage.delta_uri(s, "raw") for s in stores.current_uris},
                current_uris=stores.current_uris,
                storage_options=storage.storage_options,
            )
        result = stores.sync(keys=keys)
        context.log.info(
            f"{spec.name}/embeddings: embedded {result.chunks_embedded}, "
            f"skipped {result.chunks_skipped_unchanged} unchanged, deleted keys {result.keys_deleted}"
        )
        return dg.MaterializeResult(metadata=sync_metadata(result, model=model, keys=keys))

    return _embeddings


def fold_metadata(result) -> dict:
    """`current`'s metadata of one fold (`freshlake.delta.current.FoldResult`)."""
    metadata = {
        "raw_rows_folded": result.raw_rows,
        "keys_upserted": result.keys_upserted,
        "keys_deleted": result.keys_deleted,
        "rows_inserted": result.rows_inserted,
        "rows_updated": result.rows_updated,
        "version_ties": result.version_ties,  # equal order in two partitions: (partition, offset)
        "rows_unordered": result.rows_unordered,  # tombstones: ordered by their partition
        "raw_versions": "none" if result.raw_versions is None else "{}-{}".format(*result.raw_versions),
        "delta_version": result.current_version,
        "seconds": round(result.seconds, 3),
    }
    return {k: v for k, v in metadata.items() if v is not None}  # unknown: left out, never -1


def sync_metadata(result, *, model, keys=None) -> dict:
    """The embeddings' metadata of one pass (`freshlake.lance.sync.SyncResult`) by `model`;
    `keys`: the documents a backfill re-derived."""
    metadata = {
        "keys_upserted": result.keys_upserted,
        "keys_deleted": result.keys_deleted,
        "chunks_total": result.chunks_total,
        "chunks_embedded": result.chunks_embedded,
        "chunks_skipped_unchanged": result.chunks_skipped_unchanged,
        "chunks_carried": result.chunks_carried,
        "rows_deleted": result.rows_deleted,
        "embed_seconds": round(result.embed_seconds, 3),
        # a rate only where chunks were embedded: an idle batch's 0 is no measurement
        "embed_rate_chunks_per_s": round(result.embed_rate, 1) if result.chunks_embedded else None,
        "lance_version": result.lance_version,
        "current_version": result.current_version,
        "model": f"{model.model_name}@{model.model_version}",
        "lance_table": result.table_name,
        "table_swapped_in": result.swapped,
        "backfill_keys": None if keys is None else len(keys),
        **_lag(result.newest_event_time),
    }
    return {k: v for k, v in metadata.items() if v is not None}  # unknown: left out, never -1
