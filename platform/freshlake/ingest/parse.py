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

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final

import pyarrow as pa

try:  # optional speed-up: the standard library does the same job, slower
    from orjson import loads as _orjson_loads
except ImportError:  # pragma: no cover - depends on the environment
    _orjson_loads = None

from freshlake.cdc.debezium import EnvelopeError, key_from_kafka_key, parse_change, unwrap
from freshlake.delta.schemas import HEADERS, PARTITION_COLUMN, TS, quarantine_schema, raw_schema
from freshlake.kafka.messages import KafkaMessage
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
_CHUNK_ROWS = 8192  # rows per Arrow conversion in `split_messages`
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


def _datetime(us: int | None) -> datetime | None:
    return None if us is None else _EPOCH + timedelta(microseconds=us)


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
    as epoch microseconds and `None` for no headers.
    """

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        fields = [f for f in schema if f.name != "ingested_at"]
        self.names = [f.name for f in fields]
        self.timestamps = [f.name for f in fields if f.type == TS]
        self.row_type = pa.struct(
            [pa.field(f.name, pa.int64() if f.type == TS else f.type) for f in fields]
        )

    def build(self, rows: list[tuple[Any, ...]], *, ingested_at: datetime) -> pa.Table:
        if not rows:
            return self.schema.empty_table()
        columns = dict(zip(self.names, pa.array(rows, type=self.row_type).flatten(), strict=True))
        for name in self.timestamps:
            columns[name] = columns[name].cast(TS)
        headers = columns["kafka_headers"]
        if headers.null_count:  # null slots have empty offsets ranges: same offsets, no nulls
            columns["kafka_headers"] = pa.ListArray.from_arrays(
                headers.offsets, headers.values, type=HEADERS
            )
        columns["ingested_at"] = pa.repeat(pa.scalar(ingested_at, type=TS), len(rows))
        arrays = [columns[name] for name in self.schema.names]
        return pa.Table.from_arrays(arrays, schema=self.schema)


_QUARANTINE_BUILDER = _TableBuilder(quarantine_schema())
_N_COORDINATES = 7  # kafka_* and value: how raw and quarantine rows start


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
    converters: tuple[tuple[int, Callable[[Any], Any]], ...]
    event_time_index: int | None  # position of the event-time field in names
    row_names: tuple[str, ...]  # raw columns that parse_record returns
    row_timestamps: tuple[int, ...]  # their positions that hold epoch microseconds
    raw_builder: _TableBuilder


_COMPILED: dict[int, _Compiled] = {}
_OWN_COLUMNS = frozenset({"key", "event_time"})


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
    compiled = _Compiled(
        spec=spec,
        debezium=spec.format == "debezium",
        key_field=spec.key_field,
        names=names,
        kinds=kinds,
        required=frozenset(spec.required),
        n_kept=len(kept),
        signatures=set(),
        delete_signatures=set(),
        converters=tuple(
            (i, convert) for i, kind in enumerate(kinds) if (convert := _CHECKERS[kind][1])
        ),
        event_time_index=names.index(etf) if etf is not None else None,
        row_names=tuple(schema.names[:-2]),
        row_timestamps=tuple(i for i, f in enumerate(schema) if f.type == TS)[:-1],
        raw_builder=_TableBuilder(schema),
    )
    _COMPILED[id(spec)] = compiled
    return compiled


def _kafka_ms(ms: int | None) -> int | None:
    """Kafka timestamp in epoch ms, or None when absent or outside what a datetime can hold."""
    if ms is None or not _MIN_MS <= ms <= _MAX_MS:
        return None
    return ms


def _coordinates(message: KafkaMessage, ms: int | None) -> tuple[Any, ...]:
    """kafka_topic .. kafka_headers, then the raw value (row form: see `_TableBuilder`)."""
    headers = message.headers
    return (
        message.topic,
        message.partition,
        message.offset,
        message.key,
        None if ms is None else ms * 1000,
        [{"key": k, "value": v} for k, v in headers] if headers else None,
        message.value,
    )


def _reject(error_class: str, message: str) -> RejectedMessage:
    if len(message) > MAX_ERROR_MESSAGE:
        message = message[: MAX_ERROR_MESSAGE - 3] + "..."
    return RejectedMessage(error_class, message)


def _tombstone(c: _Compiled, message: KafkaMessage) -> tuple[Any, ...]:
    try:
        key = key_from_kafka_key(message.key, c.key_field)
    except UnicodeDecodeError as exc:
        raise _reject(INVALID_UTF8, f"tombstone key is not UTF-8: {exc.reason}") from None
    if key is None:
        raise _reject(MISSING_KEY, "tombstone without a key: cannot tell which record to delete")
    nulls = (None,) * c.n_kept
    if c.debezium:
        return (key, True, None, *_DEBEZIUM_NULLS, *nulls)
    return (key, True, None, *nulls)


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


def _parse(c: _Compiled, message: KafkaMessage) -> tuple[Any, ...]:
    """key, is_delete, event_time, [debezium columns], typed columns; or raise RejectedMessage."""
    value = message.value
    if value is None:
        return _tombstone(c, message)
    if not message.key:
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
                raise _reject(SCHEMA, f"field {c.names[i]!r}: {exc}") from None
    event_time = None if c.event_time_index is None else values[c.event_time_index]
    out = values if len(values) == c.n_kept else values[: c.n_kept]

    if c.debezium:
        ts_ms = change.source_ts_ms
        if event_time is None and ts_ms is not None and _MIN_MS <= ts_ms <= _MAX_MS:
            event_time = ts_ms * 1000
        before = change.before
        after = change.after
        return (
            str(key),
            is_delete,
            event_time,
            change.op,
            None if before is None else _dumps(before),
            None if after is None else _dumps(after),
            ts_ms,
            change.source_table,
            change.source_lsn,
            change.source_pos,
            *out,
        )
    return (str(key), False, event_time, *out)


def parse_record(spec: StreamSpec, message: KafkaMessage) -> dict[str, Any]:
    """One message -> its raw row, or raise `RejectedMessage`.

    The row has every column of `raw_schema(spec)` except `ingested_at` and the partition column
    (`kafka_date`), which belong to the batch: `split_messages` adds them. Timestamps are aware
    UTC datetimes; `kafka_headers` is a list of `{"key", "value"}` dicts.
    """
    c = _compile(spec)
    row = [*_coordinates(message, _kafka_ms(message.timestamp_ms)), *_parse(c, message)]
    for i in c.row_timestamps:
        row[i] = _datetime(row[i])
    if row[5] is None:
        row[5] = []
    return dict(zip(c.row_names, row, strict=True))


def partition_value(timestamp_ms: int | None, *, ingested_at: datetime) -> str:
    """`kafka_date`: the UTC day of the Kafka timestamp, or of `ingested_at` when there is none."""
    ms = _kafka_ms(timestamp_ms)
    if ms is None:
        return _utc(ingested_at).date().isoformat()
    return (_EPOCH_DATE + timedelta(days=ms // _MS_PER_DAY)).isoformat()


def split_messages(
    spec: StreamSpec, messages: Iterable[KafkaMessage], *, ingested_at: datetime
) -> tuple[pa.Table, pa.Table]:
    """Parse a batch: (raw table, quarantine table), each message in exactly one, in input order.

    The tables have exactly `raw_schema(spec)` and `quarantine_schema()`; the raw one may hold
    several record batches (one per `_CHUNK_ROWS` rows).

    Args:
        spec: the stream the messages belong to.
        messages: messages of that stream's topic.
        ingested_at: the batch's ingest time (naive = UTC); also gives `kafka_date` to messages
            without a Kafka timestamp.
    """
    c = _compile(spec)
    builder = c.raw_builder
    ingested_at = _utc(ingested_at)
    fallback_day = ingested_at.date().isoformat()
    days: dict[int, str] = {}
    # Rows are tuples in schema order minus `ingested_at`; every `_CHUNK_ROWS` they become an
    # Arrow table, so the Python objects of a big batch never pile up (memory is what costs).
    chunks: list[pa.Table] = []
    rows: list[tuple[Any, ...]] = []
    index: list[int] = []  # input position of each row, to keep the quarantine in input order
    bad_rows: list[tuple[int, tuple[Any, ...]]] = []
    unordered = False
    parse = _parse
    coordinates_of = _coordinates
    for i, message in enumerate(messages):
        ms = message.timestamp_ms
        if ms is None or not _MIN_MS <= ms <= _MAX_MS:
            ms = None
            day = fallback_day
        else:
            day_number = ms // _MS_PER_DAY
            day = days.get(day_number)
            if day is None:
                day = days[day_number] = partition_value(ms, ingested_at=ingested_at)
        coordinates = coordinates_of(message, ms)
        try:
            parsed = parse(c, message)
        except RejectedMessage as exc:
            bad_rows.append((i, (*coordinates, exc.error_class, str(exc), day)))
            continue
        rows.append((*coordinates, *parsed, day))
        index.append(i)
        if len(rows) == _CHUNK_ROWS:
            unordered |= _flush(builder, rows, index, ingested_at, chunks, bad_rows)
            rows, index = [], []
    unordered |= _flush(builder, rows, index, ingested_at, chunks, bad_rows)
    if unordered:
        bad_rows.sort(key=lambda item: item[0])
    raw = pa.concat_tables(chunks) if chunks else builder.schema.empty_table()
    quarantine = _QUARANTINE_BUILDER.build([row for _, row in bad_rows], ingested_at=ingested_at)
    return raw, quarantine


def _flush(
    builder: _TableBuilder,
    rows: list[tuple[Any, ...]],
    index: list[int],
    ingested_at: datetime,
    chunks: list[pa.Table],
    bad_rows: list[tuple[int, tuple[Any, ...]]],
) -> bool:
    """Append `rows` to `chunks` as a table; True when rows Arrow refused joined `bad_rows`."""
    if not rows:
        return False
    try:
        chunks.append(builder.build(rows, ingested_at=ingested_at))
        return False
    except _ARROW_ERRORS:
        kept, refused = _refuse_unstorable(builder, rows, index)
        bad_rows.extend(refused)
        if kept:
            chunks.append(builder.build(kept, ingested_at=ingested_at))
        return True


def _refuse_unstorable(
    builder: _TableBuilder, rows: list[tuple[Any, ...]], index: list[int]
) -> tuple[list[tuple[Any, ...]], list[tuple[int, tuple[Any, ...]]]]:
    """Slow path, only after Arrow refused the batch: find the rows it refuses by bisection and
    quarantine them, naming the column (e.g. an int beyond int64, a lone surrogate in a string).
    """
    bad = set(_refused_rows(builder.row_type, rows, 0, len(rows)))
    kept = [row for position, row in enumerate(rows) if position not in bad]
    refused: list[tuple[int, tuple[Any, ...]]] = []
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
        refused.append((index[position], quarantined))
    return kept, refused


def _refused_rows(
    row_type: pa.StructType, rows: list[tuple[Any, ...]], lo: int, hi: int
) -> list[int]:
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
