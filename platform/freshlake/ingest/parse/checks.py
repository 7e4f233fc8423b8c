"""One message -> its key, delete flag and checked field values, or a `RejectedMessage`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from freshlake.cdc.debezium import EnvelopeError, key_from_kafka_key, key_text, parse_change, unwrap
from freshlake.delta.schemas import DEBEZIUM_COLUMNS
from freshlake.ingest.parse.compiled import MAX_SIGNATURES, Compiled
from freshlake.ingest.parse.decode import loads
from freshlake.ingest.parse.errors import (
    ENVELOPE,
    INVALID_UTF8,
    JSON_TYPE_NAMES,
    MISSING_KEY,
    MISSING_VERSION,
    NOT_AN_OBJECT,
    SCHEMA,
    BadValue,
    RejectedMessage,
    reject,
)
from freshlake.ingest.parse.fields import CHECKERS, EpochMicros, decode_logical, dumps
from freshlake.ingest.parse.timestamps import epoch_us

# key, is_delete, checked field values, Debezium columns (None for a plain JSON stream)
Checked = tuple[str, bool, Sequence[Any], tuple[Any, ...] | None]

_DEBEZIUM_NULLS: tuple[None, ...] = (None,) * len(DEBEZIUM_COLUMNS)
_KEY_TYPES = (str, int)
_NO_POSITION = (
    "Debezium change event has no source position (source.lsn, source.file/pos, "
    "source.commit_lsn/change_lsn, source.ts_ms) and no ts_ms: the stream orders a key's "
    "changes by the source position (or set `order_by` to a field of the row)"
)


def tombstone(c: Compiled, kafka_key: bytes | None) -> Checked:
    try:
        key = key_from_kafka_key(kafka_key, c.key_fields)
    except UnicodeDecodeError as exc:
        raise reject(INVALID_UTF8, f"tombstone key is not UTF-8: {exc.reason}") from None
    if key is None:
        raise reject(MISSING_KEY, "tombstone without a key: cannot tell which record to delete")
    return key, True, c.null_values, _DEBEZIUM_NULLS if c.debezium else None


def schema_error(
    c: Compiled, values: list[Any], record: dict[str, Any], is_delete: bool
) -> RejectedMessage | None:
    """The first field that breaks the spec, named with expected and actual type; or None."""
    for name, kind, v in zip(c.names, c.kinds, values, strict=True):
        if v is None:
            if is_delete:
                continue
            state = "null" if name in record else "missing"
            if name in c.order:
                order = ", ".join(c.spec.order_fields)
                return reject(
                    MISSING_VERSION,
                    f"field {name!r} is {state}: the stream orders a key's events by it (order_by: {order})",
                )
            if name in c.required:
                return reject(SCHEMA, f"required field {name!r} ({kind}) is {state}")
        elif type(v) not in CHECKERS[kind][0]:
            got = JSON_TYPE_NAMES.get(type(v), type(v).__name__)
            return reject(SCHEMA, f"field {name!r}: expected {kind}, got {got}")
    return None


def check(c: Compiled, kafka_key: bytes | None, value: bytes | None) -> Checked:
    """key, is_delete, checked field values, Debezium columns (or None); or raise RejectedMessage.

    Field values are converted, timestamps to epoch micros when sent as numbers; timestamp texts
    stay as sent for `timestamps`, which converts and checks a whole column at once.
    """
    if value is None:
        return tombstone(c, kafka_key)
    if not kafka_key:
        raise reject(MISSING_KEY, "message has no Kafka key")
    obj = loads(value)
    if type(obj) is not dict:
        kind = JSON_TYPE_NAMES.get(type(obj), type(obj).__name__)
        raise reject(NOT_AN_OBJECT, f"value is JSON {kind}, expected an object")

    if c.debezium:
        try:
            envelope = unwrap(obj)
            change = parse_change(envelope)
        except EnvelopeError as exc:
            raise reject(ENVELOPE, str(exc)) from None
        if c.debezium_positions and not change.has_position:
            raise reject(MISSING_VERSION, _NO_POSITION)
        record = change.row
        is_delete = change.op == "d"
    else:
        envelope = record = obj
        is_delete = False

    values = list(map(record.get, c.names))
    if c.logical_fields and envelope is not obj:  # schemas.enable=true: the schema says how to read
        _read_logical(c, obj.get("schema"), "before" if is_delete else "after", values)
    key_values = [record.get(name) for name in c.key_fields]
    if None in key_values:
        missing = c.key_fields[key_values.index(None)]
        where = "row image" if c.debezium else "record"
        raise reject(MISSING_KEY, f"{where} has no key field {missing!r}")

    # Fast path: whether a record fits the spec depends only on the types of its values, so a
    # signature seen before needs one set lookup; a new one is checked field by field.
    # Debezium deletes may carry only the primary key in `before` (REPLICA IDENTITY DEFAULT):
    # there types are checked, required-ness and order fields are not.
    signature = tuple(map(type, values))
    known = c.delete_signatures if is_delete else c.signatures
    if signature not in known:
        error = schema_error(c, values, record, is_delete)
        if error is not None:
            raise error
        if len(known) < MAX_SIGNATURES:
            known.add(signature)
    for i, convert in c.converters:
        v = values[i]
        if v is not None:
            try:
                values[i] = convert(v)
            except BadValue as exc:
                raise first_bad_value(c, values, i, exc, converted=False) from None
    for i in c.timestamp_fields:
        v = values[i]
        if type(v) is int:
            try:
                values[i] = epoch_us(v)
            except BadValue as exc:
                raise first_bad_value(c, values, i, exc, converted=True) from None
        elif type(v) is EpochMicros:
            values[i] = int(v)
    # Declared key fields are read from `values`: a Decimal-encoded key is decoded there.
    if c.key_positions:
        key_values = [values[p] for p in c.key_positions]
    for name, v in zip(c.key_fields, key_values, strict=True):
        if type(v) not in _KEY_TYPES:
            got = JSON_TYPE_NAMES.get(type(v), type(v).__name__)
            raise reject(SCHEMA, f"key field {name!r} must be a string or an integer, got {got}")
    key = key_text(key_values)

    if c.debezium:
        before = change.before
        after = change.after
        debezium = (  # as DEBEZIUM_COLUMNS
            change.op,
            None if before is None else dumps(before),
            None if after is None else dumps(after),
            change.ts_ms if change.source_ts_ms is None else change.source_ts_ms,
            change.source_table,
            change.source_lsn,
            change.source_pos,
            change.source_txid,
            change.source_file,
            change.source_row,
            change.source_commit_lsn,
            change.source_change_lsn,
        )
        return key, is_delete, values, debezium
    return key, False, values, None


def first_bad_value(
    c: Compiled, values: list[Any], i: int, exc: BadValue, *, converted: bool
) -> RejectedMessage:
    """Field `i` failed to convert: the error names it, or an earlier timestamp that fails too
    (texts; numbers too unless `converted`: then they are micros already).
    """
    for j in c.timestamp_fields:
        v = values[j]
        if j < i and (type(v) is str or (type(v) is int and not converted)):
            try:
                epoch_us(v)
            except BadValue as earlier:
                return reject(SCHEMA, f"field {c.names[j]!r}: {earlier}")
    return reject(SCHEMA, f"field {c.names[i]!r}: {exc}")


def _read_logical(c: Compiled, schema: Any, image: str, values: list[Any]) -> None:
    """Decode the row image's values whose field schema names a logical type (see
    `fields.decode_logical`), in place. Schemas come with every message: cheap dict walks.
    """
    if type(schema) is not dict:
        return
    for part in schema.get("fields") or ():
        if type(part) is dict and part.get("field") == image:
            break
    else:
        return
    for field in part.get("fields") or ():
        if type(field) is not dict or (logical := field.get("name")) is None:
            continue
        hit = c.logical_fields.get(field.get("field"))
        if hit is None:
            continue
        i, kind = hit
        v = values[i]
        if v is not None:
            try:
                values[i] = decode_logical(v, kind, logical, field.get("parameters"))
            except BadValue as exc:
                raise reject(SCHEMA, f"field {c.names[i]!r}: {exc}") from None
