"""A spec's checks, worked out once per spec: what the per-message and per-chunk paths need."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.json as pj

from freshlake.delta.schemas import FIELD_TYPES, PARTITION_COLUMN, raw_schema
from freshlake.errors import FreshlakeConfigError
from freshlake.ingest.parse.fields import CHECKERS
from freshlake.ingest.parse.rows import TableBuilder
from freshlake.streams import FieldType, StreamSpec


@dataclass(frozen=True, slots=True)
class Compiled:
    """Everything the per-message path needs, worked out once per spec."""

    spec: StreamSpec
    debezium: bool
    key_fields: tuple[str, ...]
    key_kinds: tuple[FieldType | None, ...]  # declared kind of each key field (None: undeclared)
    key_positions: tuple[int, ...]  # positions in names of the key fields; () unless all declared
    names: tuple[str, ...]  # checked fields: the raw table's typed columns first, then the rest
    kinds: tuple[FieldType, ...]
    required: frozenset[str]
    order: frozenset[str]  # `spec.order_fields`: a message without them cannot be ordered
    not_null: frozenset[str]  # required | order: the chunk paths leave messages without them
    debezium_positions: bool  # Debezium ordered by the source position: a change needs one
    # (position in names, kind) of the fields whose value the envelope's schema may say how to read
    logical_fields: dict[str, tuple[int, FieldType]]
    n_kept: int  # names[:n_kept] are the typed columns of the raw table
    # Type signatures (the Python type of each checked field's value) known to pass, for
    # upserts and for deletes: nearly every message of a stream has one of a few signatures.
    signatures: set[tuple[type, ...]]
    delete_signatures: set[tuple[type, ...]]
    # Converters run per message, in field order; timestamp texts are converted per column
    # (`timestamps`), timestamp numbers per message (their unit can differ message by message).
    converters: tuple[tuple[int, Callable[[Any], Any]], ...]
    timestamp_fields: tuple[int, ...]  # positions in names of the timestamp fields
    event_time_index: int | None  # position of the event-time field in names
    null_values: tuple[None, ...]  # a tombstone's checked fields
    types: tuple[pa.DataType, ...]  # Arrow type of names[:n_kept] in the raw table
    raw_builder: TableBuilder
    # `orjson_chunk`: string and bool fields go through one Arrow struct conversion
    # (which refuses any other JSON type), the others through Python with their type sets.
    struct_type: pa.StructType
    struct_fields: tuple[int, ...]  # positions in names of struct_type's fields
    python_fields: tuple[tuple[int, frozenset[type]], ...]  # (position, accepted types)
    # `arrow_json.read_chunk`: Arrow's JSON reader, for specs of scalar fields with one key field
    # of type string or int.
    json_options: pj.ParseOptions | None
    float_fields: tuple[int, ...]  # positions in names of float fields


MAX_SIGNATURES = 4096
_COMPILED: dict[int, Compiled] = {}
# Kinds whose Arrow conversion accepts exactly the JSON values the spec accepts (Arrow takes
# 3.0 for an int64 and True for a float64, so those are checked in Python).
_STRUCT_KINDS = frozenset({"string", "bool"})
_OWN_COLUMNS = frozenset({"key", "event_time"})
_KEY_KINDS = frozenset({"string", "int"})
# Kinds a schema's logical type can change the reading of (see `fields.decode_logical`).
_LOGICAL_KINDS = frozenset({"timestamp", "decimal", "float", "int", "string", "object", "list"})
# Field kinds Arrow's JSON reader types exactly as the checks do (timestamps are read as text
# and converted like `timestamps_at_once`; a number there makes the reader give up).
_JSON_READER_TYPES: dict[FieldType, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.string(),
}


def compile_spec(spec: StreamSpec) -> Compiled:
    """The spec's checkers, cached by identity (specs hold a dict, so they are not hashable)."""
    compiled = _COMPILED.get(id(spec))
    if compiled is not None and compiled.spec is spec:
        return compiled
    schema = raw_schema(spec)
    if schema.names[-2:] != ["ingested_at", PARTITION_COLUMN]:  # rows are built in this order
        msg = f"raw_schema({spec.name}) must end with ingested_at, {PARTITION_COLUMN}"
        raise RuntimeError(msg)
    fields: dict[str, FieldType] = dict(spec.fields)
    etf = spec.event_time_field
    if etf is not None and etf not in fields:
        fields[etf] = "timestamp"  # checked and parsed for `event_time`, but not a column
    order = spec.order_fields
    for name in order:
        if name not in fields:
            msg = (
                f"stream {spec.name!r}: order_by field {name!r} is not among its fields; declare it "
                f"under `fields` (e.g. `{name}: int`) or order by one of {', '.join(fields) or 'none'}"
            )
            raise FreshlakeConfigError(msg)
    key_fields = spec.key_fields
    key_kinds = tuple(fields.get(name) for name in key_fields)
    # raw_schema has no typed column for spec fields named like its own `key` / `event_time`.
    kept = [name for name in spec.fields if name not in _OWN_COLUMNS]
    names = (*kept, *[name for name in fields if name not in kept])
    kinds = tuple(fields[name] for name in names)
    required = frozenset(spec.required)
    not_null = required | frozenset(order)
    struct_fields = tuple(i for i, kind in enumerate(kinds) if kind in _STRUCT_KINDS)
    json_options = None
    if (
        spec.format != "debezium"
        and len(key_fields) == 1
        and key_kinds[0] in _KEY_KINDS
        and all(kind in _JSON_READER_TYPES for kind in kinds)
    ):
        read_as = pa.schema([pa.field(name, _JSON_READER_TYPES[kind]) for name, kind in fields.items()])
        json_options = pj.ParseOptions(explicit_schema=read_as, unexpected_field_behavior="ignore")
    compiled = Compiled(
        spec=spec,
        debezium=spec.format == "debezium",
        key_fields=key_fields,
        key_kinds=key_kinds,
        key_positions=tuple(names.index(n) for n in key_fields) if all(key_kinds) else (),
        names=names,
        kinds=kinds,
        required=required,
        order=frozenset(order),
        not_null=not_null,
        debezium_positions=spec.format == "debezium" and not order,
        logical_fields={
            name: (i, kinds[i])
            for i, name in enumerate(names)
            if spec.format == "debezium" and kinds[i] in _LOGICAL_KINDS
        },
        n_kept=len(kept),
        signatures=set(),
        delete_signatures=set(),
        converters=tuple(
            (i, convert)
            for i, kind in enumerate(kinds)
            if kind != "timestamp" and (convert := CHECKERS[kind][1])
        ),
        timestamp_fields=tuple(i for i, kind in enumerate(kinds) if kind == "timestamp"),
        event_time_index=names.index(etf) if etf is not None else None,
        null_values=(None,) * len(names),
        types=tuple(schema.field(name).type for name in kept),
        raw_builder=TableBuilder(schema),
        struct_type=pa.struct([pa.field(names[i], FIELD_TYPES[kinds[i]]) for i in struct_fields]),
        struct_fields=struct_fields,
        python_fields=tuple(
            (
                i,
                frozenset(CHECKERS[kinds[i]][0]) | ({type(None)} if name not in not_null else set()),
            )
            for i, name in enumerate(names)
            if i not in struct_fields
        ),
        json_options=json_options,
        float_fields=tuple(i for i, kind in enumerate(kinds) if kind == "float"),
    )
    _COMPILED[id(spec)] = compiled
    return compiled
