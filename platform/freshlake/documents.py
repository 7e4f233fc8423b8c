"""Current rows -> document text, from the stream's template (pure: no I/O)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

from freshlake.streams import DocumentSpec

_FIELD = re.compile(r"{([A-Za-z_][\w.]*)}")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(value, str):
        return value.replace("_", " ") if value.isidentifier() else value
    return str(value)


def _empty(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, int | float) and value == 0)


@lru_cache(maxsize=64)
def _parts(template: str) -> list[tuple[bool, str]]:
    """(optional, text) pieces: `[...]` segments are optional, the rest is required."""
    parts: list[tuple[bool, str]] = []
    last = 0
    for match in _SEGMENT.finditer(template):
        parts.append((False, template[last : match.start()]))
        parts.append((True, match.group(1)))
        last = match.end()
    parts.append((False, template[last:]))
    return [p for p in parts if p[1]]


def _fill(piece: str, values: Mapping[str, Any]) -> str:
    def one(match: re.Match[str]) -> str:
        value = values[match.group(1)]
        return "" if value is None else _text(value)

    return _FIELD.sub(one, piece)


def template_fields(template: str) -> set[str]:
    return set(_FIELD.findall(template))


def render(
    document: DocumentSpec,
    *,
    row: Mapping[str, Any],
    joined: Mapping[str, Any] | None = None,
) -> str:
    """The document text of `row`; `joined` is the enrichment row (fields as `{prefix.field}`)."""
    prefix = document.enrich.prefix + "." if document.enrich else None

    def lookup(name: str) -> Any:
        if prefix and name.startswith(prefix):
            return (joined or {}).get(name[len(prefix) :])
        return row.get(name)

    out: list[str] = []
    for optional, piece in _parts(document.template):
        names = _FIELD.findall(piece)
        values = {name: lookup(name) for name in names}
        if optional and any(_empty(v) for v in values.values()):
            continue
        out.append(_fill(piece, values))
    return "".join(out).strip()
