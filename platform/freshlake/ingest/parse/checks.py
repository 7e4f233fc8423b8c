"""One message -> its key, delete flag and checked field values, or a `RejectedMessage`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from freshlake.cdc.debezium import EnvelopeError, key_from_kafka_key, parse_change, unwrap
from freshlake.delta.schemas import DEBEZIUM_COLUMNS
from freshlake.ingest.parse.compiled import MAX_SIGNATURES, Compiled
from freshlake.ingest.parse.decode import loads
from freshlake.ingest.parse.errors import (
    ENVELOPE,
    INVALID_UTF8,
    JSON_TYPE_NAMES,
    MISSING_KEY,
    NOT_AN_OBJECT,
    SCHEMA,
    BadValue,
    RejectedMessage,
    reject,
)
from freshlake.ingest.parse.fields import CHECKERS, dumps
from freshlake.ingest.parse.timestamps import epoch_us

# key, is_delete, checked field values, Debezium columns (None for a plain JSON stream)
Checked = tuple[str, bool, Sequence[Any], tuple[Any, ...] | None]

_DEBEZIUM_NULLS: tuple[None, ...] = (None,) * len(DEBEZIUM_COLUMNS)


def tombstone(c: Compiled, kafka_key: bytes | None) -> Checked:
    try:
        key = key_from_kafka_key(kafka_key, c.key_field)
    except UnicodeDecodeError as exc:
        raise reject(INVALID_UTF8, f"tombstone key is not UTF-8: {exc.reason}") from None
    if key is None:
        raise reject(MISSING_KEY, "tombstone without a key: cannot tell which record to delete")
    return key, True, c.null_values, _DEBEZIUM_NULLS if c.debezium else None


def schema_error(c: Compiled, record: dict[str, Any], is_delete: bool) -> RejectedMessage | None:
    """The first field that breaks the spec, named with expected and actual type; or None."""
    for name, kind in zip(c.names, c.kinds, strict=True):
        v = record.get(name)
        if v is None:
            if name in c.required and not is_delete:
                state = "null" if name in record else "missing"
                return reject(SCHEMA, f"required field {name!r} ({kind}) is {state}")
        elif type(v) not in CHECKERS[kind][0]:
            got = JSON_TYPE_NAMES.get(type(v), type(v).__name__)
            return reject(SCHEMA, f"field {name!r}: expected {kind}, got {got}")
    return None


def check(c: Compiled, kafka_key: bytes | None, value: bytes | None) -> Checked:
    """key, is_delete, checked field values, Debezium columns (or None); or raise RejectedMessage.

    Field values are converted, except timestamps: they stay as sent (ISO-8601 text or epoch
    ms) for `timestamps`, which converts and checks a whole column at once.
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
            change = parse_change(unwrap(obj))
        except EnvelopeError as exc:
            raise reject(ENVELOPE, str(exc)) from None
        record = change.row
        is_delete = change.op == "d"
    else:
        record = obj
        is_delete = False

    key = record.get(c.key_field)
    if key is None:
        where = "row image" if c.debezium else "record"
        raise reject(MISSING_KEY, f"{where} has no key field {c.key_field!r}")

    # Fast path: whether a record fits the spec depends only on the types of its values, so a
    # signature seen before needs one set lookup; a new one is checked field by field.
    # Debezium deletes may carry only the primary key in `before` (REPLICA IDENTITY DEFAULT):
    # there types are checked, required-ness is not.
    values = list(map(record.get, c.names))
    signature = tuple(map(type, values))
    known = c.delete_signatures if is_delete else c.signatures
    if signature not in known:
        error = schema_error(c, record, is_delete)
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
                raise first_bad_value(c, values, i, exc) from None

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
        return str(key), is_delete, values, debezium
    return str(key), False, values, None


def first_bad_value(c: Compiled, values: list[Any], i: int, exc: BadValue) -> RejectedMessage:
    """Field `i` failed to convert: the error names it, or an earlier timestamp that fails too."""
    for j in c.timestamp_fields:
        if j < i and values[j] is not None:
            try:
                epoch_us(values[j])
            except BadValue as earlier:
                return reject(SCHEMA, f"field {c.names[j]!r}: {earlier}")
    return reject(SCHEMA, f"field {c.names[i]!r}: {exc}")
