"""The Debezium change-event envelope: unwrap and check it; read the stream key from a Kafka key.

Pure functions over already-decoded JSON, so the ingest path parses each message once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Op = Literal["c", "u", "d", "r"]
OPS: frozenset[str] = frozenset({"c", "u", "d", "r"})
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class EnvelopeError(ValueError):
    """The message is JSON but not a Debezium change event we can apply."""


def unwrap(envelope: dict[str, Any]) -> dict[str, Any]:
    """Return the bare envelope (`before`, `after`, `source`, `op`, `ts_ms`).

    Debezium's JSON converter with `schemas.enable=true` wraps each event as
    `{"schema": ..., "payload": ...}`; with schemas off the envelope comes bare. Both are accepted.
    """
    if "op" in envelope or "payload" not in envelope:
        return envelope
    payload = envelope["payload"]
    if not isinstance(payload, dict):
        msg = f"Debezium envelope 'payload' must be an object, got {_kind(payload)}"
        raise EnvelopeError(msg)
    return payload


@dataclass(frozen=True, slots=True, kw_only=True)
class DebeziumChange:
    """One row change. `row` is the image the change leaves behind (or, for a delete, removes)."""

    op: Op
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    source_ts_ms: int | None = None
    source_table: str | None = None
    source_lsn: int | None = None  # postgres
    source_pos: int | None = None  # mysql binlog position
    ts_ms: int | None = None
    source_txid: int | None = None  # postgres txId
    source_file: str | None = None  # mysql binlog file
    source_row: int | None = None  # mysql row within the binlog event
    source_commit_lsn: str | None = None  # sql server
    source_change_lsn: str | None = None  # sql server

    @property
    def has_position(self) -> bool:
        """Whether anything orders this change against the key's others (a source position or a time)."""
        return not (
            self.source_lsn is None
            and self.source_pos is None
            and self.source_file is None
            and self.source_commit_lsn is None
            and self.source_change_lsn is None
            and self.source_ts_ms is None
            and self.ts_ms is None
        )

    @property
    def row(self) -> dict[str, Any]:
        """`after` for create/update/snapshot read, `before` for a delete."""
        row = self.before if self.op == "d" else self.after
        if row is None:
            msg = f"Debezium op {self.op!r} has no row image"
            raise EnvelopeError(msg)
        return row

    @property
    def is_delete(self) -> bool:
        return self.op == "d"


def parse_change(value: dict[str, Any]) -> DebeziumChange:
    """Check a bare envelope (see `unwrap`) and return the change, or raise `EnvelopeError`.

    Truncate (`t`) and message (`m`) events are refused: they carry no row to apply.
    """
    if not isinstance(value, dict):
        msg = f"Debezium envelope must be an object, got {_kind(value)}"
        raise EnvelopeError(msg)
    op = value.get("op")
    if op is None:
        msg = "Debezium envelope has no 'op' (expected one of c, u, d, r)"
        raise EnvelopeError(msg)
    if op not in OPS:
        msg = f"Debezium envelope has unknown op {str(op)[:20]!r} (expected one of c, u, d, r)"
        raise EnvelopeError(msg)
    before = value.get("before")
    after = value.get("after")
    for name, image in (("before", before), ("after", after)):
        if image is not None and not isinstance(image, dict):
            msg = f"Debezium envelope '{name}' must be an object or null, got {_kind(image)}"
            raise EnvelopeError(msg)
    if op == "d":
        if before is None:
            msg = "Debezium delete (op 'd') has no 'before' row image"
            raise EnvelopeError(msg)
    elif after is None:
        msg = f"Debezium op {op!r} has no 'after' row image"
        raise EnvelopeError(msg)
    source = value.get("source")
    if source is None:
        source = {}
    elif not isinstance(source, dict):
        msg = f"Debezium envelope 'source' must be an object or null, got {_kind(source)}"
        raise EnvelopeError(msg)
    return DebeziumChange(
        op=op,
        before=before,
        after=after,
        source_ts_ms=_opt_int(source.get("ts_ms"), "source.ts_ms"),
        source_table=_opt_str(source.get("table"), "source.table"),
        source_lsn=_opt_int(source.get("lsn"), "source.lsn"),
        source_pos=_opt_int(source.get("pos"), "source.pos"),
        ts_ms=_opt_int(value.get("ts_ms"), "ts_ms"),
        source_txid=_opt_int(source.get("txId"), "source.txId"),
        source_file=_opt_str(source.get("file"), "source.file"),
        source_row=_opt_int(source.get("row"), "source.row"),
        source_commit_lsn=_opt_str(source.get("commit_lsn"), "source.commit_lsn"),
        source_change_lsn=_opt_str(source.get("change_lsn"), "source.change_lsn"),
    )


def key_text(values: Sequence[Any]) -> str:
    """The row key of a record's key field values, in declared order.

    One field: its value as text (`17` -> "17", a string as is). Several: the compact JSON array
    of the values (`["EU",17]`, non-ASCII kept as is). Tombstones, Kafka keys and records all
    go through here, so one record has one key whichever way it is named.
    """
    if len(values) == 1:
        value = values[0]
        return value if type(value) is str else str(value) if type(value) is int else _compact(value)
    return _compact(list(values))


def key_from_kafka_key(key: bytes | None, key_field: str | Sequence[str]) -> str | None:
    """The stream key a Kafka key names (as `key_text` builds it), or None when it names none.

    Debezium keys are JSON structs holding the key fields (`{"booking_id": 17}`, possibly
    schema/payload-wrapped); plain JSON streams send the id as UTF-8 text (or as a JSON string;
    a composite key as the JSON array of its values). A struct whose key field is null yields
    None; a struct without the key fields, or any other text, is taken as the key as it is.
    Raises `UnicodeDecodeError` (a `ValueError`) when the key is not UTF-8.
    """
    if not key:
        return None
    fields = (key_field,) if isinstance(key_field, str) else tuple(key_field)
    text = key.decode("utf-8")
    first = text[:1]
    if first not in _JSON_STARTS:
        return text
    try:
        obj = _loads(key)
    except (ValueError, RecursionError):
        return text
    if type(obj) is dict:
        if fields[0] not in obj and isinstance(obj.get("payload"), dict):
            obj = obj["payload"]
        if all(name in obj for name in fields):
            values = [obj[name] for name in fields]
            return None if None in values else key_text(values)
    elif type(obj) is str and len(fields) == 1:
        return obj
    elif type(obj) is list and len(obj) == len(fields) and len(fields) > 1:
        return None if None in obj else key_text(obj)
    return text


_JSON_STARTS = frozenset('{"[')
# `json.dumps(value, separators=(",", ":"), ensure_ascii=False)` without the per-call set-up.
_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
try:  # the same values as json.loads, faster
    from orjson import loads as _orjson_loads
except ImportError:  # pragma: no cover - depends on the environment
    _orjson_loads = None


def _loads(data: bytes) -> Any:
    if _orjson_loads is not None:
        try:
            return _orjson_loads(data)
        except ValueError:
            pass
    return json.loads(data.decode("utf-8"))


def _opt_int(value: Any, name: str) -> int | None:
    """An optional int64 (the raw table stores these as int64)."""
    if value is None or (type(value) is int and _INT64_MIN <= value <= _INT64_MAX):
        return value
    msg = f"Debezium '{name}' must be a 64-bit integer or null, got {_kind(value)}"
    raise EnvelopeError(msg)


def _opt_str(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    msg = f"Debezium '{name}' must be a string or null, got {_kind(value)}"
    raise EnvelopeError(msg)


def _kind(value: Any) -> str:
    """JSON type name of a decoded value, for error messages (never the value itself)."""
    if value is None:
        return "null"
    return {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "array",
        dict: "object",
    }.get(type(value), type(value).__name__)
