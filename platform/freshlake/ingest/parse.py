"""Kafka messages -> raw rows and quarantine rows (invariant 3: nothing is lost on bad input).

Runs on every message, so the per-message path is one `json.loads`, dict lookups and checkers
compiled once per spec. Pure: no Kafka client, no Dagster.

Error classes (`RejectedMessage.error_class`, stored in `<stream>/quarantine.error_class`):

- `invalid_utf8`: the value (or a tombstone's key) is not UTF-8.
- `invalid_json`: the value is not JSON.
- `not_an_object`: the value is JSON but not an object.
- `envelope`: a Debezium stream's value is not a change event we can apply (see `cdc.debezium`).
- `missing_key`: no Kafka key, no key field in the record, or a tombstone whose key yields no id.
- `schema`: a required field is missing/null, a field has the wrong type or an unparseable
  timestamp, or a value the raw table cannot store (an int beyond int64, a lone surrogate).

Tombstones (value None) are deletes, not errors, as long as their Kafka key names a record.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import sys
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

try:  # optional speed-up: the standard library does the same job, slower
    from orjson import loads as _orjson_loads
except ImportError:  # pragma: no cover - depends on the environment
    _orjson_loads = None

from freshlake.cdc.debezium import EnvelopeError, key_from_kafka_key, parse_change, unwrap
from freshlake.delta.schemas import (
    DEBEZIUM_COLUMNS,
    FIELD_TYPES,
    HEADERS,
    PARTITION_COLUMN,
    TS,
    quarantine_schema,
    raw_schema,
)
from freshlake.kafka.messages import KafkaMessage, MessageBatch
from freshlake.streams import FieldType, StreamSpec

INVALID_UTF8: Final = "invalid_utf8"
INVALID_JSON: Final = "invalid_json"
NOT_AN_OBJECT: Final = "not_an_object"
ENVELOPE: Final = "envelope"
MISSING_KEY: Final = "missing_key"
SCHEMA: Final = "schema"
ERROR_CLASSES: tuple[str, ...] = (
    INVALID_UTF8,
    INVALID_JSON,
    NOT_AN_OBJECT,
    ENVELOPE,
    MISSING_KEY,
    SCHEMA,
)

MAX_ERROR_MESSAGE = 500
_CHUNK_ROWS = 8192  # messages per Arrow conversion in `split_messages`
_PASS_ROWS = 1024  # messages per orjson pass of `Splitter._orjson_chunk` (see there)
_READ_AHEAD = 4  # chunks on the JSON reader path at once, each on its own thread
_JSON_MAX_WAIT = 16  # chunks `Splitter._json_start` sits out after failing again and again
_MAX_NESTING = 200  # brackets in a value up to which `json.loads` surely does not recurse too deep
_JSON_BLOCK = 1 << 20  # bytes per block of Arrow's JSON reader
# Bytes a NaN / Inf / Infinity token can follow (`:`, `,`, `[`, `-`, whitespace).
_BEFORE_TOKEN = np.frombuffer(b":,[- \t\n\r", dtype=np.uint8)
_raw_decode = json.JSONDecoder().raw_decode
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_EPOCH_DATE = date(1970, 1, 1)
_ONE_US = timedelta(microseconds=1)
_MS_PER_DAY = 86_400_000
# What a datetime can hold: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999Z
_MIN_US = -62_135_596_800_000_000
_MAX_US = 253_402_300_799_999_999
_MIN_MS, _MAX_MS = _MIN_US // 1000, _MAX_US // 1000
_MIN_FAST_DAY_MS = -30_610_224_000_000  # 1000-01-01: Arrow writes 4-digit years as isoformat
_DEBEZIUM_NULLS: tuple[None, ...] = (None,) * 7  # op, before, after, source_ts_ms/table/lsn/pos
# Arrow refuses a value the checks let through (e.g. a lone surrogate in a string).
_ARROW_ERRORS = (pa.ArrowException, UnicodeEncodeError, OverflowError, TypeError, ValueError)


class RejectedMessage(ValueError):
    """A message that goes to quarantine; `error_class` is one of `ERROR_CLASSES`."""

    def __init__(self, error_class: str, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class


class _BadValue(ValueError):
    """A field value of the right JSON type that still cannot be converted (e.g. not ISO-8601)."""


# `json.dumps(value, separators=(",", ":"), sort_keys=True)` without the per-call set-up.
_dumps: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


def _float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:
        msg = "expected float, got an integer too large for a float"
        raise _BadValue(msg) from None


def _epoch_us(value: str | int) -> int:
    """ISO-8601 text (naive = UTC) or epoch milliseconds -> epoch microseconds.

    Rows carry timestamps as ints: Arrow turns a column of ints into timestamps in one cast,
    several times faster than converting aware datetimes one by one.
    """
    if type(value) is str:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            msg = f"expected timestamp (ISO-8601 or epoch ms), got string {value[:40]!r}"
            raise _BadValue(msg) from None
        us = (parsed - (_NAIVE_EPOCH if parsed.tzinfo is None else _EPOCH)) // _ONE_US
    else:
        us = value * 1000
    if _MIN_US <= us <= _MAX_US:
        return us
    msg = f"timestamp {str(value)[:40]!r} is out of range"
    raise _BadValue(msg)


# kind -> (accepted Python types, converter or None). Exact type checks: bool is not an int,
# and 3.0 is not an int either (strict), while a float field accepts JSON integers. An int
# outside int64 passes here and is caught when Arrow refuses it (`_refuse_unstorable`).
_CHECKERS: dict[FieldType, tuple[tuple[type, ...], Callable[[Any], Any] | None]] = {
    "string": ((str,), None),
    "int": ((int,), None),
    "float": ((float, int), _float),
    "bool": ((bool,), None),
    "timestamp": ((str, int), _epoch_us),
    "list": ((list,), _dumps),
    "object": ((dict,), _dumps),
}

_JSON_TYPE_NAMES = {
    type(None): "null",
    bool: "bool",
    int: "int",
    float: "float",
    str: "string",
    list: "list",
    dict: "object",
}

_MAX_SIGNATURES = 4096


class _TableBuilder:
    """Row tuples -> a table of `schema` with one Arrow conversion, then a few column fix-ups.

    Rows follow the schema without `ingested_at` (one value per batch), hold every timestamp
    as epoch microseconds and `None` for no headers. The quarantine is built this way, and raw
    rows when a column of a chunk cannot be stored (see `Splitter`).
    """

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        fields = [f for f in schema if f.name != "ingested_at"]
        self.names = [f.name for f in fields]
        self.timestamps = [f.name for f in fields if f.type == TS]
        self.row_type = pa.struct([pa.field(f.name, pa.int64() if f.type == TS else f.type) for f in fields])

    def build(self, rows: list[tuple[Any, ...]], *, ingested_at: datetime) -> pa.Table:
        if not rows:
            return self.schema.empty_table()
        columns = dict(zip(self.names, pa.array(rows, type=self.row_type).flatten(), strict=True))
        for name in self.timestamps:
            columns[name] = columns[name].cast(TS)
        columns["kafka_headers"] = _no_null_lists(columns["kafka_headers"])
        columns["ingested_at"] = pa.repeat(pa.scalar(ingested_at, type=TS), len(rows))
        arrays = [columns[name] for name in self.schema.names]
        return pa.Table.from_arrays(arrays, schema=self.schema)


def _no_null_lists(headers: pa.Array) -> pa.Array:
    """Null header lists as empty ones: null slots have empty offsets ranges, so same offsets."""
    if not headers.null_count:
        return headers
    return pa.ListArray.from_arrays(headers.offsets, headers.values, type=HEADERS)


_QUARANTINE_BUILDER = _TableBuilder(quarantine_schema())


@dataclass(frozen=True, slots=True)
class _Compiled:
    """Everything the per-message path needs, worked out once per spec."""

    spec: StreamSpec
    debezium: bool
    key_field: str
    names: tuple[str, ...]  # checked fields: the raw table's typed columns first, then the rest
    kinds: tuple[FieldType, ...]
    required: frozenset[str]
    n_kept: int  # names[:n_kept] are the typed columns of the raw table
    # Type signatures (the Python type of each checked field's value) known to pass, for
    # upserts and for deletes: nearly every message of a stream has one of a few signatures.
    signatures: set[tuple[type, ...]]
    delete_signatures: set[tuple[type, ...]]
    # Converters run per message; timestamps are converted per column (`_timestamps`).
    converters: tuple[tuple[int, Callable[[Any], Any]], ...]
    timestamp_fields: tuple[int, ...]  # positions in names of the timestamp fields
    event_time_index: int | None  # position of the event-time field in names
    null_values: tuple[None, ...]  # a tombstone's checked fields
    types: tuple[pa.DataType, ...]  # Arrow type of names[:n_kept] in the raw table
    raw_builder: _TableBuilder
    # `Splitter._orjson_chunk`: string and bool fields go through one Arrow struct conversion
    # (which refuses any other JSON type), the others through Python with their type sets.
    struct_type: pa.StructType
    struct_fields: tuple[int, ...]  # positions in names of struct_type's fields
    python_fields: tuple[tuple[int, frozenset[type]], ...]  # (position, accepted types)
    # `Splitter._json_start`: Arrow's JSON reader, for specs of scalar fields keyed by a string.
    json_options: pj.ParseOptions | None
    float_fields: tuple[int, ...]  # positions in names of float fields


_COMPILED: dict[int, _Compiled] = {}
# Kinds whose Arrow conversion accepts exactly the JSON values the spec accepts (Arrow takes
# 3.0 for an int64 and True for a float64, so those are checked in Python).
_STRUCT_KINDS = frozenset({"string", "bool"})
_OWN_COLUMNS = frozenset({"key", "event_time"})
# Field kinds Arrow's JSON reader types exactly as the checks do (timestamps are read as text
# and converted like `_timestamps_at_once`; a number there makes the reader give up).
_JSON_READER_TYPES: dict[FieldType, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.string(),
}


def _compile(spec: StreamSpec) -> _Compiled:
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
    # raw_schema has no typed column for spec fields named like its own `key` / `event_time`.
    kept = [name for name in spec.fields if name not in _OWN_COLUMNS]
    names = (*kept, *[name for name in fields if name not in kept])
    kinds = tuple(fields[name] for name in names)
    required = frozenset(spec.required)
    struct_fields = tuple(i for i, kind in enumerate(kinds) if kind in _STRUCT_KINDS)
    json_options = None
    if (
        spec.format != "debezium"
        and fields.get(spec.key_field) == "string"
        and all(kind in _JSON_READER_TYPES for kind in kinds)
    ):
        read_as = pa.schema([pa.field(name, _JSON_READER_TYPES[kind]) for name, kind in fields.items()])
        json_options = pj.ParseOptions(explicit_schema=read_as, unexpected_field_behavior="ignore")
    compiled = _Compiled(
        spec=spec,
        debezium=spec.format == "debezium",
        key_field=spec.key_field,
        names=names,
        kinds=kinds,
        required=required,
        n_kept=len(kept),
        signatures=set(),
        delete_signatures=set(),
        converters=tuple(
            (i, convert)
            for i, kind in enumerate(kinds)
            if kind != "timestamp" and (convert := _CHECKERS[kind][1])
        ),
        timestamp_fields=tuple(i for i, kind in enumerate(kinds) if kind == "timestamp"),
        event_time_index=names.index(etf) if etf is not None else None,
        null_values=(None,) * len(names),
        types=tuple(schema.field(name).type for name in kept),
        raw_builder=_TableBuilder(schema),
        struct_type=pa.struct([pa.field(names[i], FIELD_TYPES[kinds[i]]) for i in struct_fields]),
        struct_fields=struct_fields,
        python_fields=tuple(
            (
                i,
                frozenset(_CHECKERS[kinds[i]][0]) | ({type(None)} if name not in required else set()),
            )
            for i, name in enumerate(names)
            if i not in struct_fields
        ),
        json_options=json_options,
        float_fields=tuple(i for i, kind in enumerate(kinds) if kind == "float"),
    )
    _COMPILED[id(spec)] = compiled
    return compiled


def _kafka_ms(ms: int | None) -> int | None:
    """Kafka timestamp in epoch ms, or None when absent or outside what a datetime can hold."""
    if ms is None or not _MIN_MS <= ms <= _MAX_MS:
        return None
    return ms


def _reject(error_class: str, message: str) -> RejectedMessage:
    if len(message) > MAX_ERROR_MESSAGE:
        message = message[: MAX_ERROR_MESSAGE - 3] + "..."
    return RejectedMessage(error_class, message)


# key, is_delete, checked field values, Debezium columns (None for a plain JSON stream)
_Checked = tuple[str, bool, Sequence[Any], tuple[Any, ...] | None]


def _tombstone(c: _Compiled, kafka_key: bytes | None) -> _Checked:
    try:
        key = key_from_kafka_key(kafka_key, c.key_field)
    except UnicodeDecodeError as exc:
        raise _reject(INVALID_UTF8, f"tombstone key is not UTF-8: {exc.reason}") from None
    if key is None:
        raise _reject(MISSING_KEY, "tombstone without a key: cannot tell which record to delete")
    return key, True, c.null_values, _DEBEZIUM_NULLS if c.debezium else None


def _loads(value: bytes) -> Any:
    """Parse a message value as `json.loads(value.decode("utf-8"))` would, or reject it.

    With orjson installed it parses first (about 3x faster); whatever orjson refuses is parsed
    again by the standard library, so what lands where does not depend on it (only the message
    for an integer beyond 64 bits differs: orjson reads it as a float).
    Without it: `json.loads` minus its wrapper and trailing-whitespace regex (a quarter of its
    time), anything unusual going through `json.loads` itself.
    """
    if _orjson_loads is not None:
        try:
            return _orjson_loads(value)
        except ValueError:
            pass
    try:
        text = value.decode("utf-8")
        try:
            obj, end = _raw_decode(text)
        except ValueError:
            end = -1
        if end != len(text):
            obj = json.loads(text)
    except UnicodeDecodeError as exc:
        reason = f"{exc.reason} at byte {exc.start}"
        raise _reject(INVALID_UTF8, f"value is not UTF-8 ({reason})") from None
    except RecursionError:
        raise _reject(INVALID_JSON, "value is not JSON: nested too deeply") from None
    except ValueError as exc:
        raise _reject(INVALID_JSON, f"value is not JSON: {exc}") from None
    return obj


def _schema_error(c: _Compiled, record: dict[str, Any], is_delete: bool) -> RejectedMessage | None:
    """The first field that breaks the spec, named with expected and actual type; or None."""
    for name, kind in zip(c.names, c.kinds, strict=True):
        v = record.get(name)
        if v is None:
            if name in c.required and not is_delete:
                state = "null" if name in record else "missing"
                return _reject(SCHEMA, f"required field {name!r} ({kind}) is {state}")
        elif type(v) not in _CHECKERS[kind][0]:
            got = _JSON_TYPE_NAMES.get(type(v), type(v).__name__)
            return _reject(SCHEMA, f"field {name!r}: expected {kind}, got {got}")
    return None


def _check(c: _Compiled, kafka_key: bytes | None, value: bytes | None) -> _Checked:
    """key, is_delete, checked field values, Debezium columns (or None); or raise RejectedMessage.

    Field values are converted, except timestamps: they stay as sent (ISO-8601 text or epoch
    ms) for `_timestamps`, which converts and checks a whole column at once.
    """
    if value is None:
        return _tombstone(c, kafka_key)
    if not kafka_key:
        raise _reject(MISSING_KEY, "message has no Kafka key")
    obj = _loads(value)
    if type(obj) is not dict:
        kind = _JSON_TYPE_NAMES.get(type(obj), type(obj).__name__)
        raise _reject(NOT_AN_OBJECT, f"value is JSON {kind}, expected an object")

    if c.debezium:
        try:
            change = parse_change(unwrap(obj))
        except EnvelopeError as exc:
            raise _reject(ENVELOPE, str(exc)) from None
        record = change.row
        is_delete = change.op == "d"
    else:
        record = obj
        is_delete = False

    key = record.get(c.key_field)
    if key is None:
        where = "row image" if c.debezium else "record"
        raise _reject(MISSING_KEY, f"{where} has no key field {c.key_field!r}")

    # Fast path: whether a record fits the spec depends only on the types of its values, so a
    # signature seen before needs one set lookup; a new one is checked field by field.
    # Debezium deletes may carry only the primary key in `before` (REPLICA IDENTITY DEFAULT):
    # there types are checked, required-ness is not.
    values = list(map(record.get, c.names))
    signature = tuple(map(type, values))
    known = c.delete_signatures if is_delete else c.signatures
    if signature not in known:
        error = _schema_error(c, record, is_delete)
        if error is not None:
            raise error
        if len(known) < _MAX_SIGNATURES:
            known.add(signature)
    for i, convert in c.converters:
        v = values[i]
        if v is not None:
            try:
                values[i] = convert(v)
            except _BadValue as exc:
                raise _first_bad_value(c, values, i, exc) from None

    if c.debezium:
        before = change.before
        after = change.after
        debezium = (
            change.op,
            None if before is None else _dumps(before),
            None if after is None else _dumps(after),
            change.source_ts_ms,
            change.source_table,
            change.source_lsn,
            change.source_pos,
        )
        return str(key), is_delete, values, debezium
    return str(key), False, values, None


def _first_bad_value(c: _Compiled, values: list[Any], i: int, exc: _BadValue) -> RejectedMessage:
    """Field `i` failed to convert: the error names it, or an earlier timestamp that fails too."""
    for j in c.timestamp_fields:
        if j < i and values[j] is not None:
            try:
                _epoch_us(values[j])
            except _BadValue as earlier:
                return _reject(SCHEMA, f"field {c.names[j]!r}: {earlier}")
    return _reject(SCHEMA, f"field {c.names[i]!r}: {exc}")


# ISO-8601 texts that Arrow's cast reads exactly as `_epoch_us` does (the tests compare the two);
# a column with any other text goes through `_epoch_us` value by value.
# Years 1000-8999 only: with any UTC offset those are within what a datetime holds.
_ISO_TIME = r"^[1-8]\d{3}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?"
_ISO_AWARE = _ISO_TIME + r"(Z|[+-]\d{2}:\d{2})$"
_ISO_NAIVE = _ISO_TIME + "$"
_NAIVE_TS = pa.timestamp("us")


def _timestamps(values: tuple[Any, ...], name: str, errors: dict[int, RejectedMessage]) -> pa.Array:
    """`_epoch_us` of a column of timestamp field values, as a `timestamp[us, UTC]` array.

    A value it refuses is null in the array and its row gets an error in `errors` (keyed by
    position), unless an earlier field already gave that row one.
    """
    try:
        fast = _timestamps_at_once(values)
    except _ARROW_ERRORS:
        fast = None
    if fast is not None:
        return fast
    out: list[int | None] = []
    for position, value in enumerate(values):
        if value is None:
            out.append(None)
            continue
        try:
            out.append(_epoch_us(value))
        except _BadValue as exc:
            out.append(None)
            if position not in errors:
                errors[position] = _reject(SCHEMA, f"field {name!r}: {exc}")
    return pa.array(out, type=pa.int64()).cast(TS)


def _timestamps_at_once(values: tuple[Any, ...]) -> pa.Array | None:
    """The column converted by Arrow, or None (or an Arrow error) when it cannot vouch for it:
    text not in a form it reads like `datetime.fromisoformat`, mixed text and numbers, values
    out of range.
    """
    try:
        texts = pa.array(values, type=pa.string())
    except _ARROW_ERRORS:  # numbers (epoch ms), or a mix
        millis = pa.array(values, type=pa.int64())
        low, high = pc.min_max(millis).values()
        if low.is_valid and (low.as_py() < _MIN_MS or high.as_py() > _MAX_MS):
            return None
        return pc.multiply(millis, 1000).cast(TS)
    return _text_timestamps(texts)


def _text_timestamps(texts: pa.Array) -> pa.Array | None:
    """A string column as `timestamp[us, UTC]` when Arrow reads every text like `_epoch_us`."""
    if texts.null_count == len(texts):
        return texts.cast(TS)
    # Texts of one layout all match a pattern or none does: then one match says it for all.
    sample = texts.slice(0, 1) if _one_layout(texts) else texts
    if not pc.match_substring_regex(sample, _ISO_AWARE).false_count:
        return texts.cast(TS)
    if not pc.match_substring_regex(sample, _ISO_NAIVE).false_count:  # naive means UTC
        return texts.cast(_NAIVE_TS).view(TS)
    return None


def _one_layout(texts: pa.Array) -> bool:
    """Whether every text is as long as the first, with an ASCII digit wherever the first has
    one (and, for `_ISO_TIME`'s year, 1-8 at the start) and the first's byte everywhere else.
    The ISO patterns are made of fixed characters and `\\d` only, so such texts match them
    all or none.
    """
    n = len(texts)
    if texts.null_count or n < 2:
        return False
    at = texts.offset
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int32, count=at + n + 1)[at:]
    width = int(offsets[1] - offsets[0])
    if width == 0 or int(offsets[-1] - offsets[0]) != width * n or np.any(np.diff(offsets) != width):
        return False
    data = np.frombuffer(texts.buffers()[2], dtype=np.uint8, count=int(offsets[-1]))[offsets[0] :]
    rows = data.reshape(n, width)
    first = rows[0]
    digit = (first >= ord("0")) & (first <= ord("9"))
    digits = rows[:, digit]
    years = rows[:, 0]
    return bool(
        ((digits >= ord("0")) & (digits <= ord("9"))).all()
        and (rows[:, ~digit] == first[~digit]).all()
        and ((years >= ord("1")) & (years <= ord("8"))).all()
    )


def parse_record(spec: StreamSpec, message: KafkaMessage) -> dict[str, Any]:
    """One message -> its raw row, or raise `RejectedMessage`.

    The row is what `split_messages` makes of the message, without `ingested_at` and the
    partition column (`kafka_date`), which belong to the batch. Timestamps are aware UTC
    datetimes; `kafka_headers` is a list of `{"key", "value"}` dicts.
    """
    splitter = Splitter(spec, ingested_at=_EPOCH)
    splitter.add([message])
    raw, quarantine = splitter.finish()
    if quarantine.num_rows:
        error = quarantine.select(["error_class", "error_message"]).to_pylist()[0]
        raise RejectedMessage(error["error_class"], error["error_message"])
    row = raw.to_pylist()[0]
    del row["ingested_at"], row[PARTITION_COLUMN]
    return row


def partition_value(timestamp_ms: int | None, *, ingested_at: datetime) -> str:
    """`kafka_date`: the UTC day of the Kafka timestamp, or of `ingested_at` when there is none."""
    ms = _kafka_ms(timestamp_ms)
    if ms is None:
        return _utc(ingested_at).date().isoformat()
    return (_EPOCH_DATE + timedelta(days=ms // _MS_PER_DAY)).isoformat()


def split_messages(
    spec: StreamSpec, messages: Iterable[KafkaMessage] | MessageBatch, *, ingested_at: datetime
) -> tuple[pa.Table, pa.Table]:
    """Parse a batch: (raw table, quarantine table), each message in exactly one, in input order.

    The tables have exactly `raw_schema(spec)` and `quarantine_schema()`; the raw one may hold
    several record batches (one per `_CHUNK_ROWS` messages).

    Args:
        spec: the stream the messages belong to.
        messages: messages of that stream's topic.
        ingested_at: the batch's ingest time (naive = UTC); also gives `kafka_date` to messages
            without a Kafka timestamp.
    """
    splitter = Splitter(spec, ingested_at=ingested_at)
    splitter.add(messages)
    return splitter.finish()


class Splitter:
    """`split_messages` a batch at a time, e.g. while the reader fetches the next one.

    Messages are checked one by one; the columns of every `_CHUNK_ROWS` messages become Arrow
    arrays at once (timestamps included), so the Python objects of a big read never pile up.
    """

    def __init__(self, spec: StreamSpec, *, ingested_at: datetime) -> None:
        self._c = _compile(spec)
        self._ingested_at = _utc(ingested_at)
        self._ingested_scalar = pa.scalar(self._ingested_at, type=TS)
        self._fallback_day = self._ingested_at.date().isoformat()
        self._days: dict[int, str] = {}
        self._chunks: list[pa.Table] = []
        self._bad: list[tuple[int, tuple[Any, ...]]] = []  # (input position, quarantine row)
        self._seen = 0
        self._json_misses = 0  # chunks the JSON reader path failed in a row
        self._json_wait = 0  # chunks it still sits out
        self._pending: deque[tuple[MessageBatch, int, Future[pa.Table | None]]] = deque()  # chunks being read

    def add(self, messages: Iterable[KafkaMessage] | MessageBatch) -> list[pa.RecordBatch]:
        """Parse `messages`, the next ones in input order; returns the raw rows of the chunks
        finished meanwhile (the last ones may still be read: `drain` returns their rows).
        """
        size = _CHUNK_ROWS
        known = len(self._chunks)
        if isinstance(messages, MessageBatch):
            for start in range(0, len(messages), size):
                self._add_chunk(messages if len(messages) <= size else messages.slice(start, start + size))
        else:
            it = iter(messages)
            while chunk := MessageBatch.from_messages(itertools.islice(it, size)):
                self._add_chunk(chunk)
        return self._batches_since(known)

    def drain(self) -> list[pa.RecordBatch]:
        """Finish the chunks still being read; returns their raw rows."""
        known = len(self._chunks)
        self._complete()
        return self._batches_since(known)

    @property
    def quarantined(self) -> int:
        """Messages refused so far (of the chunks finished)."""
        return len(self._bad)

    def finish(self) -> tuple[pa.Table, pa.Table]:
        """(raw table, quarantine table) of everything added, each in input order."""
        self._complete()
        c = self._c
        raw = pa.concat_tables(self._chunks) if self._chunks else c.raw_builder.schema.empty_table()
        self._bad.sort(key=lambda item: item[0])
        quarantine = _QUARANTINE_BUILDER.build([row for _, row in self._bad], ingested_at=self._ingested_at)
        return raw, quarantine

    def _batches_since(self, known: int) -> list[pa.RecordBatch]:
        return [batch for table in self._chunks[known:] for batch in table.to_batches()]

    def _kafka_times(self, stamps: list[int | None]) -> tuple[list[int | None], list[str]]:
        """Each message's Kafka time in epoch microseconds (None: none) and `kafka_date`."""
        micros: list[int | None] = []
        days: list[str] = []
        known = self._days
        for ms in stamps:
            if ms is None or not _MIN_MS <= ms <= _MAX_MS:
                micros.append(None)
                days.append(self._fallback_day)
                continue
            micros.append(ms * 1000)
            day = known.get(ms // _MS_PER_DAY)
            if day is None:
                day = known[ms // _MS_PER_DAY] = partition_value(ms, ingested_at=self._ingested_at)
            days.append(day)
        return micros, days

    def _add_chunk(self, batch: MessageBatch) -> None:
        """Start the chunk on Arrow's JSON reader path on its own thread (Arrow and numpy release
        the GIL, so the next batches are fetched meanwhile), or parse it another way now. Chunks
        finish in input order.
        """
        while len(self._pending) >= _READ_AHEAD:
            self._complete_one()
        first = self._seen
        self._seen += len(batch)
        if not self._c.debezium:
            read = self._json_start(batch)
            if read is not None:
                self._pending.append((batch, first, read))
                return
        self._complete()
        self._other_paths(batch, first)

    def _complete(self) -> None:
        while self._pending:
            self._complete_one()

    def _complete_one(self) -> None:
        batch, first, read = self._pending.popleft()
        table = self._json_end(batch, read)
        if table is not None:
            self._chunks.append(table)
        else:
            self._other_paths(batch, first)

    def _other_paths(self, batch: MessageBatch, first: int) -> None:
        """orjson a column at a time when every message is a good record, else message by
        message: what lands where is the same either way.
        """
        if not self._c.debezium and _orjson_loads is not None:
            try:
                table = self._orjson_chunk(batch)
            except _ARROW_ERRORS:
                table = None
            if table is not None:
                self._chunks.append(table)
                return
        self._message_chunk(batch, first)

    def _message_chunk(self, batch: MessageBatch, first: int) -> None:
        c = self._c
        micros, days = self._kafka_times(batch.timestamps_ms)

        kept: list[int] = []  # position in the batch of each row
        keys: list[str] = []
        deletes: list[bool] = []
        records: list[Sequence[Any]] = []
        debezium: list[tuple[Any, ...] | None] = []
        rejected: list[tuple[int, RejectedMessage]] = []
        check = _check
        for position, (key, value) in enumerate(zip(batch.keys, batch.values, strict=True)):
            try:
                row_key, is_delete, values, extra = check(c, key, value)
            except RejectedMessage as exc:
                rejected.append((position, exc))
                continue
            kept.append(position)
            keys.append(row_key)
            deletes.append(is_delete)
            records.append(values)
            debezium.append(extra)

        columns = list(zip(*records, strict=True)) if records else [()] * len(c.names)
        errors: dict[int, RejectedMessage] = {}  # row -> why a timestamp refused it
        stamps = {i: _timestamps(columns[i], c.names[i], errors) for i in c.timestamp_fields}
        for row, exc in errors.items():
            rejected.append((kept[row], exc))
        for position, exc in rejected:
            self._quarantine(batch, micros, days, first + position, position, exc)
        if not records:
            return
        parsed = _Parsed(kept, keys, deletes, columns, stamps, debezium, errors)
        try:
            self._chunks.append(self._table(batch, micros, days, parsed))
        except _ARROW_ERRORS:
            self._refuse_unstorable(batch, micros, days, first, parsed)

    def _json_start(self, batch: MessageBatch) -> Future[pa.Table | None] | None:
        """`_json_prepare` and the read started, sitting out a growing number of chunks after
        each failure in a row, so a stream with bad messages in every chunk does not pay for it
        over and over.
        """
        if self._c.json_options is None:
            return None
        if self._json_wait:
            self._json_wait -= 1
            return None
        try:
            read = self._json_prepare(batch)
        except _ARROW_ERRORS:
            read = None
        if read is None:
            self._json_failed()
        return read

    def _json_end(self, batch: MessageBatch, read: Future[pa.Table | None]) -> pa.Table | None:
        try:
            table = read.result()
        except _ARROW_ERRORS:
            table = None
        if table is None:
            self._json_failed()
        else:
            self._json_misses = 0
        return table

    def _json_failed(self) -> None:
        self._json_misses += 1
        self._json_wait = min(2**self._json_misses - 1, _JSON_MAX_WAIT)

    def _json_prepare(self, batch: MessageBatch) -> Future[pa.Table | None] | None:
        """What needs the messages' Python objects, here; then `_json_table` started on its own
        thread (Arrow and numpy release the GIL, so the next batch is fetched meanwhile). None:
        a check here rules the chunk out.
        """
        values = batch.values
        if None in values or not all(batch.keys):  # tombstones, messages without a key
            return None
        kafka_times = self._kafka_arrays(batch.timestamps_ms)
        if kafka_times is None:
            return None
        micros, days = kafka_times
        value_array = pa.array(values, type=pa.binary())
        coordinates = self._coordinate_arrays(batch, micros, value_array)
        return _parse_pool().submit(self._json_table, value_array, b"\n".join(values), coordinates, days)

    def _json_table(
        self, values: pa.Array, buffer: bytes, coordinates: list[pa.Array], days: pa.Array
    ) -> pa.Table | None:
        """The chunk's raw table read by Arrow's JSON reader (C++, no Python object per field),
        when every message is a good record and Arrow reads each one as `_loads` does; else None.
        Runs on its own thread: it reads no state of the splitter that changes.

        The reader takes a few things `json.loads` refuses (or reads differently); the checks
        before and after it make sure none of them is in the chunk, each naming what it rules out.
        Types are checked by the reader (the spec's kinds as an explicit schema: a value of
        another JSON type, an int with a fraction or beyond int64, a duplicate field fails it).
        """
        c = self._c
        n = len(values)
        # Raises on text that is not UTF-8 (anywhere, as `_loads` decodes the whole value).
        texts = values.cast(pa.string())
        # Each value `{...}`: no BOM or surrounding space, no empty value, no bare `null` (which
        # the reader crashes on). The reader takes the values (one per line) as one stream of
        # documents; with these ends, no document can run from one value into the next (after
        # a value's last `}` comes a newline, then `{`: a syntax error, unless that `}` closed
        # the value's first document), so with the row count checked below, value i is row i.
        # Blocks end at a newline: a value cut there (at a newline inside it) fails to parse.
        if pc.starts_with(texts, "{").false_count or pc.ends_with(texts, "}").false_count:
            return None
        data = np.frombuffer(buffer, dtype=np.uint8)
        # NaN / Infinity tokens: the reader also takes `Inf` and `-NaN`, json.loads does not.
        if _has_nan_or_inf(data):
            return None
        # Nesting: json.loads gives up at about the recursion limit, the reader never does.
        brackets = np.count_nonzero(data == ord("{")) + np.count_nonzero(data == ord("["))
        if brackets - n > _MAX_NESTING and _deepest(values) > _MAX_NESTING:
            return None
        # Integers longer than Python converts from text (ignored fields too).
        if _has_long_integer(values):
            return None
        options = pj.ReadOptions(use_threads=False, block_size=_JSON_BLOCK)  # chunks run side by side
        read = pj.read_json(pa.py_buffer(buffer), read_options=options, parse_options=c.json_options)
        if read.num_rows != n:  # a value held more than one document
            return None
        names = c.names
        columns = {name: read.column(name).combine_chunks() for name in names}
        if columns[c.key_field].null_count or any(
            columns[name].null_count for name in c.required if name in columns
        ):
            return None
        if not all(_plain_floats(columns[names[i]]) for i in c.float_fields):
            return None
        stamps: dict[int, pa.Array] = {}
        for i in c.timestamp_fields:
            converted = _text_timestamps(columns[names[i]])
            if converted is None:
                return None
            stamps[i] = converted
        if c.event_time_index is None:
            event_times = pa.nulls(n, type=TS)
        elif c.event_time_index in stamps:
            event_times = stamps[c.event_time_index]
        else:
            return None
        return pa.Table.from_arrays(
            [
                *coordinates,
                columns[c.key_field],
                pa.repeat(pa.scalar(False), n),
                event_times,
                *[stamps[i] if i in stamps else columns[names[i]] for i in range(c.n_kept)],
                pa.repeat(self._ingested_scalar, n),
                days,
            ],
            schema=c.raw_builder.schema,
        )

    def _orjson_chunk(self, batch: MessageBatch) -> pa.Table | None:
        """The chunk's raw table when every message is a good JSON record, else None.

        Column at a time instead of message at a time: orjson over `_PASS_ROWS` messages at a
        time (their objects then stay in the CPU caches), one Arrow struct conversion for the
        string and bool fields, type sets for the others; timestamps and coordinates in a few
        Arrow calls per chunk. Anything unusual (a tombstone, a missing key, a type or value
        the checks refuse, a timestamp Arrow cannot vouch for, a value Arrow cannot store)
        gives None, and the message-by-message path decides: what lands where is the same.
        """
        c = self._c
        if not all(batch.keys):
            return None
        kafka_times = self._kafka_arrays(batch.timestamps_ms)
        if kafka_times is None:
            return None
        names = c.names
        keys: list[str] = []
        columns: dict[int, list[Any]] = {i: [] for i, _ in c.python_fields}
        structs: list[pa.Array] = []
        for start in range(0, len(batch), _PASS_ROWS):
            try:
                records = list(map(_orjson_loads, batch.values[start : start + _PASS_ROWS]))
            except ValueError:
                return None
            if set(map(type, records)) != {dict}:
                return None
            record_keys = list(map(dict.get, records, itertools.repeat(c.key_field)))
            if None in record_keys:
                return None
            keys += map(str, record_keys)
            for i, accepted in c.python_fields:
                column = list(map(dict.get, records, itertools.repeat(names[i])))
                if not set(map(type, column)) <= accepted:
                    return None
                columns[i] += column
            structs.append(pa.array(records, type=c.struct_type))
        struct = structs[0] if len(structs) == 1 else pa.concat_arrays(structs)
        arrays: dict[int, pa.Array] = {}
        for j, i in enumerate(c.struct_fields):
            arrays[i] = child = struct.field(j)
            if child.null_count and names[i] in c.required:
                return None
        try:
            for i, convert in c.converters:
                columns[i] = [None if v is None else convert(v) for v in columns[i]]
        except _BadValue:
            return None
        for i in c.timestamp_fields:
            stamps = _timestamps_at_once(columns[i])
            if stamps is None:
                return None
            arrays[i] = stamps
        n = len(batch)
        if c.event_time_index is None:
            event_times = pa.nulls(n, type=TS)
        elif c.event_time_index in c.timestamp_fields:
            event_times = arrays[c.event_time_index]
        else:
            return None
        micros, days = kafka_times
        return pa.Table.from_arrays(
            [
                *self._coordinate_arrays(batch, micros),
                pa.array(keys, type=pa.string()),
                pa.repeat(pa.scalar(False), n),
                event_times,
                *[
                    arrays[i] if i in arrays else pa.array(columns[i], type=arrow_type)
                    for i, arrow_type in enumerate(c.types)
                ],
                pa.repeat(self._ingested_scalar, n),
                days,
            ],
            schema=c.raw_builder.schema,
        )

    def _kafka_arrays(self, stamps: list[int | None]) -> tuple[pa.Array, pa.Array] | None:
        """`_kafka_times` as Arrow arrays in a few calls, or None for times before year 1000 or
        out of range (then `_kafka_times` does it).
        """
        millis = pa.array(stamps, type=pa.int64())
        if millis.null_count == len(millis):
            return millis.cast(TS), pa.repeat(pa.scalar(self._fallback_day), len(millis))
        low, high = pc.min_max(millis).values()
        if low.as_py() < _MIN_FAST_DAY_MS or high.as_py() > _MAX_MS:
            return None
        micros = pc.multiply(millis, 1000).cast(TS)
        days = micros.cast(pa.date32()).cast(pa.string())
        return micros, days.fill_null(self._fallback_day) if days.null_count else days

    @staticmethod
    def _coordinate_arrays(
        batch: MessageBatch, micros: pa.Array, values: pa.Array | None = None
    ) -> list[pa.Array]:
        """kafka_topic .. kafka_headers and value of every message in the batch."""
        headers = batch.headers
        return [
            pa.array(batch.topics, type=pa.string()),
            pa.array(batch.partitions, type=pa.int32()),
            pa.array(batch.offsets, type=pa.int64()),
            pa.array(batch.keys, type=pa.binary()),
            micros,
            _no_null_lists(pa.array(headers, type=HEADERS))
            if any(headers)
            else pa.ListArray.from_arrays(pa.array([0] * (len(batch) + 1), pa.int32()), _NO_HEADERS),
            pa.array(batch.values, type=pa.binary()) if values is None else values,
        ]

    def _quarantine(
        self,
        batch: MessageBatch,
        micros: list[int | None],
        days: list[str],
        index: int,
        position: int,
        exc: RejectedMessage,
    ) -> None:
        coordinates = _coordinates(batch, micros, position)
        self._bad.append((index, (*coordinates, exc.error_class, str(exc), days[position])))

    def _event_times(self, parsed: _Parsed) -> pa.Array:
        c = self._c
        i = c.event_time_index
        if i is None:
            times = pa.nulls(len(parsed.kept), type=TS)
        elif i in parsed.stamps:
            times = parsed.stamps[i]
        else:  # an event-time field declared with another kind: stored as epoch microseconds
            times = pa.array(parsed.columns[i], type=pa.int64()).cast(TS)
        if c.debezium:  # no event time in the row image: the source's commit time
            source = [
                ms * 1000 if ms is not None and _MIN_MS <= ms <= _MAX_MS else None
                for ms in (extra[3] for extra in parsed.debezium)
            ]
            times = times.fill_null(pa.array(source, type=pa.int64()).cast(TS))
        return times

    def _table(
        self, batch: MessageBatch, micros: list[int | None], days: list[str], parsed: _Parsed
    ) -> pa.Table:
        """The raw table of a chunk's rows, a column at a time."""
        c = self._c
        n = len(batch)
        coordinates = self._coordinate_arrays(batch, pa.array(micros, type=pa.int64()).cast(TS))
        if len(parsed.kept) < n:
            taken = pa.array(parsed.kept, type=pa.int64())
            coordinates = [array.take(taken) for array in coordinates]
        arrays = [
            *coordinates,
            pa.array(parsed.keys, type=pa.string()),
            pa.array(parsed.deletes, type=pa.bool_()),
            self._event_times(parsed),
        ]
        if c.debezium:
            extra = list(zip(*parsed.debezium, strict=True))
            arrays += [
                pa.array(values, type=field.type)
                for values, field in zip(extra, DEBEZIUM_COLUMNS, strict=True)
            ]
        for i, arrow_type in enumerate(c.types):
            stamps = parsed.stamps.get(i)
            arrays.append(stamps if stamps is not None else pa.array(parsed.columns[i], type=arrow_type))
        arrays.append(pa.repeat(self._ingested_scalar, len(parsed.kept)))
        day_list = days if len(parsed.kept) == n else [days[p] for p in parsed.kept]
        arrays.append(pa.array(day_list, type=pa.string()))
        table = pa.Table.from_arrays(arrays, schema=c.raw_builder.schema)
        if parsed.errors:  # rows a timestamp refused: already quarantined
            table = table.filter(pa.array([row not in parsed.errors for row in range(len(parsed.kept))]))
        return table

    def _refuse_unstorable(
        self,
        batch: MessageBatch,
        micros: list[int | None],
        days: list[str],
        first: int,
        parsed: _Parsed,
    ) -> None:
        """Slow path, only after Arrow refused a column: build the chunk from row tuples, find
        the rows Arrow refuses by bisection and quarantine them, naming the column (e.g. an int
        beyond int64, a lone surrogate in a string).
        """
        c = self._c
        builder = c.raw_builder
        stamps = {i: array.cast(pa.int64()).to_pylist() for i, array in parsed.stamps.items()}
        i = c.event_time_index
        if i is None:
            event_times: Sequence[Any] = [None] * len(parsed.kept)
        else:
            event_times = stamps[i] if i in stamps else parsed.columns[i]
        if c.debezium:
            event_times = [
                ms * 1000 if t is None and ms is not None and _MIN_MS <= ms <= _MAX_MS else t
                for t, ms in zip(event_times, (x[3] for x in parsed.debezium), strict=True)
            ]
        rows: list[tuple[Any, ...]] = []
        index: list[int] = []
        for row, position in enumerate(parsed.kept):
            if row in parsed.errors:
                continue
            typed = [stamps[i][row] if i in stamps else parsed.columns[i][row] for i in range(c.n_kept)]
            extra = parsed.debezium[row] if c.debezium else ()
            rows.append(
                (
                    *_coordinates(batch, micros, position),
                    parsed.keys[row],
                    parsed.deletes[row],
                    event_times[row],
                    *extra,
                    *typed,
                    days[position],
                )
            )
            index.append(first + position)
        bad = set(_refused_rows(builder.row_type, rows, 0, len(rows)))
        kept = [row for position, row in enumerate(rows) if position not in bad]
        for position in sorted(bad):
            row = rows[position]
            detail = "row cannot be stored"
            for field, value in zip(builder.row_type, row, strict=True):
                try:
                    pa.array([value], type=field.type)
                except _ARROW_ERRORS as exc:
                    detail = f"column {field.name!r} cannot be stored: {type(exc).__name__}: {exc}"
                    break
            err = _reject(SCHEMA, detail)
            quarantined = (*row[:_N_COORDINATES], err.error_class, str(err), row[-1])
            self._bad.append((index[position], quarantined))
        if kept:
            self._chunks.append(builder.build(kept, ingested_at=self._ingested_at))


@functools.cache
def _parse_pool() -> ThreadPoolExecutor:
    """Threads for `Splitter._json_table`: made on first use, never at import."""
    return ThreadPoolExecutor(max_workers=_READ_AHEAD, thread_name_prefix="freshlake-parse")


_N_COORDINATES = 7  # kafka_* and value: how raw and quarantine rows start
_NO_HEADERS = pa.array([], type=HEADERS.value_type)


@dataclass(frozen=True, slots=True)
class _Parsed:
    """The rows of a chunk that passed `_check`, column by column."""

    kept: list[int]  # position in the chunk of each row
    keys: list[str]
    deletes: list[bool]
    columns: list[tuple[Any, ...]]  # per checked field (see `_Compiled.names`)
    stamps: dict[int, pa.Array]  # field position -> converted timestamps
    debezium: list[tuple[Any, ...] | None]
    errors: dict[int, RejectedMessage]  # row -> why a timestamp refused it (already quarantined)


def _deepest(values: pa.Array) -> int:
    """The most `{` and `[` in one value of a binary array (an upper bound of its nesting)."""
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32, count=len(values) + 1)
    data = np.frombuffer(values.buffers()[2], dtype=np.uint8, count=int(offsets[-1]))
    opening = ((data == ord("{")) | (data == ord("["))).astype(np.int32)
    return int(np.add.reduceat(opening, offsets[:-1]).max())


def _has_nan_or_inf(data: np.ndarray) -> bool:
    """Whether `NaN` or `Inf` follows a byte a JSON value can follow (in text too: then the
    chunk takes another path, slower but never wrong).
    """
    inner = data[1:-2]
    for token in (b"NaN", b"Inf"):
        at = np.flatnonzero(inner == token[0]) + 1
        at = at[(data[at + 1] == token[1]) & (data[at + 2] == token[2])]
        if at.size and np.isin(data[at - 1], _BEFORE_TOKEN).any():
            return True
    return False


def _has_long_integer(values: pa.Array) -> bool:
    """Whether a value holds a run of more digits than `int()` converts from text (then
    `json.loads` refuses it, while Arrow's reader skips it in a field it ignores).
    """
    limit = sys.get_int_max_str_digits()
    if not limit or pc.max(pc.binary_length(values)).as_py() <= limit:
        return False
    run = re.compile(rb"\d{%d}" % (limit + 1))
    return any(run.search(v) for v in values.to_pylist() if len(v) > limit)


def _plain_floats(column: pa.Array) -> bool:
    """No float `_loads` could read otherwise: beyond 2**63 (orjson reads long integers as
    floats, json.loads refuses them for a float field when too large), or -0.0 (`-0` is the
    integer 0 for json.loads, -0.0 for Arrow).
    """
    if column.null_count == len(column):
        return True
    if pc.max(pc.abs(column)).as_py() >= 2.0**63:
        return False
    return not pc.any(pc.equal(column.view(pa.int64()), -(2**63))).as_py()


def _coordinates(batch: MessageBatch, micros: list[int | None], position: int) -> tuple[Any, ...]:
    """kafka_topic .. kafka_headers, then the raw value (row form: see `_TableBuilder`)."""
    headers = batch.headers[position]
    return (
        batch.topics[position],
        batch.partitions[position],
        batch.offsets[position],
        batch.keys[position],
        micros[position],
        [{"key": k, "value": v} for k, v in headers] if headers else None,
        batch.values[position],
    )


def _refused_rows(row_type: pa.StructType, rows: list[tuple[Any, ...]], lo: int, hi: int) -> list[int]:
    try:
        pa.array(rows[lo:hi], type=row_type)
    except _ARROW_ERRORS:
        if hi - lo == 1:
            return [lo]
        mid = (lo + hi) // 2
        return _refused_rows(row_type, rows, lo, mid) + _refused_rows(row_type, rows, mid, hi)
    return []


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
