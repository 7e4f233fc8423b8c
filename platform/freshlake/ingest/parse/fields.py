"""Field kinds -> the Python types a JSON value of that kind may have, and their converters.

Decimals (`decimal` fields) are stored as exact text: a JSON number, a decimal string, or
Debezium's encodings: `org.apache.kafka.connect.data.Decimal` (base64 big-endian unscaled bytes,
`scale` in the envelope's schema: see `decode_logical`) and `io.debezium.data.VariableScaleDecimal`
(`{"scale": 2, "value": "<base64>"}`, self-describing).
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from freshlake.ingest.parse.errors import BadValue
from freshlake.ingest.parse.timestamps import LOGICAL_TIMES, epoch_us, logical_us
from freshlake.streams import FieldType

# `json.dumps(value, separators=(",", ":"), sort_keys=True)` without the per-call set-up.
dumps: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode

DECIMAL = "org.apache.kafka.connect.data.Decimal"
VARIABLE_SCALE_DECIMAL = "io.debezium.data.VariableScaleDecimal"
JSON_TEXT = "io.debezium.data.Json"  # PostgreSQL json/jsonb columns: the JSON as a string
_NEEDS_SCHEMA = (
    "a Debezium Decimal (base64) needs the envelope's schema: set schemas.enable=true on the "
    "converter, or decimal.handling.mode=string on the connector"
)


def to_float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:
        msg = "expected float, got an integer too large for a float"
        raise BadValue(msg) from None


def to_decimal(value: str | int | float | dict) -> str:
    """A decimal field's value as exact text (`"12.50"`), keeping the scale it was sent with."""
    if type(value) is dict:
        return _variable_scale(value)
    try:
        number = Decimal(value if type(value) is not float else repr(value))
    except InvalidOperation:
        msg = f"expected decimal, got string {str(value)[:40]!r} ({_NEEDS_SCHEMA})"
        raise BadValue(msg) from None
    if not number.is_finite():
        msg = f"expected a finite decimal, got {str(value)[:40]!r}"
        raise BadValue(msg)
    return format(number, "f")


def unscaled(text: str, scale: int) -> Decimal:
    """Kafka Connect's Decimal: base64 of the big-endian two's-complement unscaled integer."""
    try:
        raw = binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):
        msg = f"expected a base64 Debezium Decimal, got {text[:40]!r}"
        raise BadValue(msg) from None
    return Decimal(int.from_bytes(raw, "big", signed=True)).scaleb(-scale)


def _variable_scale(value: dict) -> str:
    scale, text = value.get("scale"), value.get("value")
    if type(scale) is not int or type(text) is not str:
        msg = "expected decimal, got an object that is not a VariableScaleDecimal {scale, value}"
        raise BadValue(msg)
    return format(unscaled(text, scale), "f")


def decode_logical(value: Any, kind: FieldType, logical: str, parameters: Any) -> Any:
    """A row image's value read with its schema's logical type, for a field of `kind`.

    Epoch numbers of `LOGICAL_TIMES` types become micros for timestamp fields (returned as
    `EpochMicros`, so the unit is not guessed again); Decimal bytes become exact text for
    decimal and string fields, a float for float fields and an int for int fields at scale 0;
    JSON text (`io.debezium.data.Json`) becomes the object or list it holds for those fields.
    Anything else is returned as it is, for the type checks to judge.
    """
    if logical in LOGICAL_TIMES:
        if kind == "timestamp" and type(value) is int:
            return EpochMicros(logical_us(value, logical))
        return value
    if logical == JSON_TEXT:
        if kind in ("object", "list") and type(value) is str:
            try:
                return json.loads(value)  # the type checks then see the object or list it holds
            except (ValueError, RecursionError):
                msg = f"expected {kind}, got text that is not JSON ({JSON_TEXT})"
                raise BadValue(msg) from None
        return value
    if kind not in _DECIMAL_KINDS:
        return value
    if logical == DECIMAL and type(value) is str:
        scale = parameters.get("scale", 0) if isinstance(parameters, dict) else 0
        try:
            number = unscaled(value, int(scale))
        except (TypeError, ValueError) as exc:
            raise BadValue(str(exc)) from None
    elif logical == VARIABLE_SCALE_DECIMAL and type(value) is dict:
        number = Decimal(_variable_scale(value))
    else:
        return value
    if kind == "float":
        return float(number)
    if kind == "int":
        return int(number) if number == number.to_integral_value() else value
    return format(number, "f")


class EpochMicros(int):
    """A timestamp already in epoch microseconds (its schema said the unit)."""

    __slots__ = ()


_DECIMAL_KINDS = frozenset({"decimal", "string", "float", "int"})

# kind -> (accepted Python types, converter or None). Exact type checks: bool is not an int,
# and 3.0 is not an int either (strict), while a float field accepts JSON integers. An int
# outside int64 passes here and is caught when Arrow refuses it (`Splitter._refuse_unstorable`).
CHECKERS: dict[FieldType, tuple[tuple[type, ...], Callable[[Any], Any] | None]] = {
    "string": ((str,), None),
    "int": ((int,), None),
    "float": ((float, int), to_float),
    "bool": ((bool,), None),
    "timestamp": ((str, int, EpochMicros), epoch_us),
    "list": ((list,), dumps),
    "object": ((dict,), dumps),
    "decimal": ((str, int, float, dict), to_decimal),
}
