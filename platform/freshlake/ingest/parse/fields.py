"""Field kinds -> the Python types a JSON value of that kind may have, and their converters."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from freshlake.ingest.parse.errors import BadValue
from freshlake.ingest.parse.timestamps import epoch_us
from freshlake.streams import FieldType

# `json.dumps(value, separators=(",", ":"), sort_keys=True)` without the per-call set-up.
dumps: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


def to_float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:
        msg = "expected float, got an integer too large for a float"
        raise BadValue(msg) from None


# kind -> (accepted Python types, converter or None). Exact type checks: bool is not an int,
# and 3.0 is not an int either (strict), while a float field accepts JSON integers. An int
# outside int64 passes here and is caught when Arrow refuses it (`Splitter._refuse_unstorable`).
CHECKERS: dict[FieldType, tuple[tuple[type, ...], Callable[[Any], Any] | None]] = {
    "string": ((str,), None),
    "int": ((int,), None),
    "float": ((float, int), to_float),
    "bool": ((bool,), None),
    "timestamp": ((str, int), epoch_us),
    "list": ((list,), dumps),
    "object": ((dict,), dumps),
}
