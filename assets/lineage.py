"""Column lineage raw -> current -> embeddings, for the `dagster/column_lineage` metadata.

`column_lineage(spec)` describes `<stream>/current` (from raw); `embeddings_column_lineage(spec)`
describes `<stream>/embeddings` (from current, and from the enriching stream's current).
"""

from __future__ import annotations

import dagster as dg

from freshlake.assets.keys import current_key, raw_key
from freshlake.delta.current import current_schema
from freshlake.documents import template_fields
from freshlake.streams import StreamSpec

# current column -> raw column, where they differ in name.
CURRENT_FROM_RAW = {
    "is_deleted": "is_delete",
    "source_topic": "kafka_topic",
    "source_partition": "kafka_partition",
    "source_offset": "kafka_offset",
}
# embeddings column -> current columns (the chunk text columns are added per spec).
EMBEDDINGS_FROM_CURRENT = {
    "key": ("key",),
    "chunk_id": ("key",),
    "source_topic": ("source_topic",),
    "source_partition": ("source_partition",),
    "source_offset": ("source_offset",),
    "source_version": ("version",),
    "raw_delta_version": ("raw_delta_version",),
    "event_time": ("event_time",),
    "ingested_at": ("ingested_at",),
}
TEXT_COLUMNS = ("text", "content_hash", "vector", "chunk_index")
DEBEZIUM_POSITION = (
    "source_lsn",
    "source_txid",
    "source_file",
    "source_pos",
    "source_row",
    "source_commit_lsn",
    "source_change_lsn",
    "source_ts_ms",
)


def column_lineage(spec: StreamSpec) -> dg.TableColumnLineage:
    """`<stream>/current` columns from `<stream>/raw` columns.

    `raw_delta_version` comes from raw's commit log, not a column, so it has no column dep.
    """
    raw = raw_key(spec)
    deps: dict[str, list[dg.TableColumnDep]] = {}
    for field in current_schema(spec):
        if field.name == "raw_delta_version":
            continue
        if field.name == "version":
            columns = [*version_columns(spec), "kafka_partition", "kafka_offset"]
        else:
            columns = [CURRENT_FROM_RAW.get(field.name, field.name)]
        deps[field.name] = [dg.TableColumnDep(asset_key=raw, column_name=c) for c in columns]
    return dg.TableColumnLineage(deps_by_column=deps)


def version_columns(spec: StreamSpec) -> tuple[str, ...]:
    """The raw columns a row's `version` encodes before its partition and offset
    (`freshlake.ordering`): the order fields, or Debezium's source position."""
    return spec.order_fields or DEBEZIUM_POSITION


def embeddings_column_lineage(spec: StreamSpec) -> dg.TableColumnLineage:
    """`<stream>/embeddings` columns from `<stream>/current` (and the enriching stream's current)."""
    document = spec.document
    if document is None:
        msg = f"stream {spec.name!r} has no document spec, so no embeddings asset"
        raise ValueError(msg)
    current = current_key(spec)
    deps: dict[str, list[dg.TableColumnDep]] = {
        column: [dg.TableColumnDep(asset_key=current, column_name=c) for c in sources]
        for column, sources in EMBEDDINGS_FROM_CURRENT.items()
    }
    text_deps: list[dg.TableColumnDep] = []
    for name in sorted(template_fields(document.template)):
        if document.enrich is not None and name.startswith(document.enrich.prefix + "."):
            other = dg.AssetKey([document.enrich.stream, "current"])
            text_deps.append(dg.TableColumnDep(asset_key=other, column_name=name.split(".", 1)[1]))
        else:
            text_deps.append(dg.TableColumnDep(asset_key=current, column_name=name))
    for column in TEXT_COLUMNS:
        deps[column] = text_deps
    for attribute in document.attributes:
        deps[attribute] = [dg.TableColumnDep(asset_key=current, column_name=attribute)]
    return dg.TableColumnLineage(deps_by_column=deps)
