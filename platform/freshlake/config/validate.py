"""Streams file contents -> `StreamSpec`s, or every mistake at once in words a person can act on.

Each problem names the file, the stream and the field, and says what to write instead. Checks are
plain code (no schema library) so the messages can say exactly that.
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from freshlake.streams import (
    Batching,
    DocumentSpec,
    Enrichment,
    FeedbackSpec,
    FieldType,
    Freshness,
    Partitioning,
    StreamSpec,
)

FIELD_TYPES: tuple[str, ...] = typing.get_args(FieldType)
FORMATS = ("json", "debezium")
CADENCES = {"daily": "%Y-%m-%d", "hourly": "%Y-%m-%d-%H:%M"}
ORDER_TYPES = ("int", "float", "timestamp")
# Asset keys, table names and run tags are built from names: keep them to one safe alphabet.
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_PLACEHOLDER = re.compile(r"{([^{}]*)}")
# Columns every current row has besides the stream's fields (see freshlake.delta.current).
ROW_COLUMNS = frozenset({"key", "event_time", "kafka_timestamp", "source_topic", "source_partition"})
FEEDBACK_FIELDS = ("document_ids", "rating")

_STREAM_KEYS = (
    "name",
    "topic",
    "key_field",
    "format",
    "fields",
    "required",
    "event_time_field",
    "order_by",
    "partitions",
    "batching",
    "freshness",
    "partitioning",
    "description",
    "document",
    "feedback",
)
_DOCUMENT_KEYS = ("template", "attributes", "enrich", "version")
_ENRICH_KEYS = ("stream", "on", "prefix")
_FEEDBACK_KEYS = ("documents",)


@dataclass
class Problems:
    """Collects problems; `where` renders the file/stream/field prefix of each."""

    source: str
    lines: list[str] = field(default_factory=list)

    def add(
        self, message: str, *, stream: str | None = None, at: str | None = None, source: str | None = None
    ) -> None:
        parts = [source or self.source]
        if stream is not None:
            parts.append(f"stream {stream!r}")
        if at is not None:
            parts.append(f"field {at!r}")
        self.lines.append(", ".join(parts) + ": " + message)


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return {
        bool: "true/false",
        int: "a number",
        float: "a number",
        str: "text",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)


def _unknown_keys(
    raw: Mapping[str, Any], known: Sequence[str], problems: Problems, *, stream: str | None, prefix: str = ""
) -> None:
    for key in raw:
        if key not in known:
            problems.add(
                f"unknown key{_suggest(str(key), known)}; known keys here are {', '.join(known)}",
                stream=stream,
                at=prefix + str(key),
            )


class _Reader:
    """Typed reads of one mapping; a wrong type is recorded and the default is used instead."""

    def __init__(self, raw: Mapping[str, Any], problems: Problems, *, stream: str | None, prefix: str = ""):
        self.raw, self.problems, self.stream, self.prefix = raw, problems, stream, prefix

    def _bad(self, key: str, expected: str, value: Any, example: str) -> None:
        self.problems.add(
            f"expected {expected}, got {_kind(value)}; write e.g. `{key}: {example}`",
            stream=self.stream,
            at=self.prefix + key,
        )

    def text(self, key: str, *, default: str | None = None, example: str = "name") -> str | None:
        value = self.raw.get(key, default)
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool) and key == "version":
            return str(value)
        self._bad(key, "text", value, example)
        return default

    def names(self, key: str, *, example: str = "[a, b]") -> tuple[str, ...]:
        """A name or a list of names."""
        value = self.raw.get(key)
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        self._bad(key, "a name or a list of names", value, example)
        return ()

    def number(self, key: str, *, default: float, integer: bool, minimum: float, example: str) -> Any:
        value = self.raw.get(key, default)
        ok = isinstance(value, int) if integer else isinstance(value, int | float)
        if not ok or isinstance(value, bool):
            self._bad(key, "a whole number" if integer else "a number", value, example)
            return default
        if value < minimum:
            self.problems.add(
                f"must be at least {minimum:g}, got {value}; write e.g. `{key}: {example}`",
                stream=self.stream,
                at=self.prefix + key,
            )
            return default
        return value

    def mapping(self, key: str) -> Mapping[str, Any] | None:
        value = self.raw.get(key)
        if value is None or isinstance(value, dict):
            return value
        self.problems.add(
            f"expected a mapping (indented `key: value` lines), got {_kind(value)}",
            stream=self.stream,
            at=self.prefix + key,
        )
        return None


def _defaults(cls: type) -> dict[str, Any]:
    return {f.name: f.default for f in fields(cls)}


def _numbers(
    raw: Mapping[str, Any] | None,
    cls: type,
    spec: Mapping[str, tuple[bool, float, str]],
    problems: Problems,
    *,
    stream: str,
    section: str,
    choices: Mapping[str, Sequence[str]] | None = None,
) -> Any:
    """A dataclass of numbers (`Batching`, `Freshness`), and words from `choices`, from its section."""
    if raw is None:
        return cls()
    choices = choices or {}
    _unknown_keys(raw, [*spec, *choices], problems, stream=stream, prefix=f"{section}.")
    read = _Reader(raw, problems, stream=stream, prefix=f"{section}.")
    defaults = _defaults(cls)
    values = {
        name: read.number(name, default=defaults[name], integer=integer, minimum=low, example=example)
        for name, (integer, low, example) in spec.items()
    }
    for name, allowed in choices.items():
        value = raw.get(name, defaults[name])
        if value not in allowed:
            problems.add(
                f"unknown value {value!r}; write " + " or ".join(f"`{a}`" for a in allowed),
                stream=stream,
                at=f"{section}.{name}",
            )
            value = defaults[name]
        values[name] = value
    return cls(**values)


def _partitioning(raw: Mapping[str, Any] | None, problems: Problems, *, stream: str) -> Partitioning:
    if raw is None:
        return Partitioning()
    _unknown_keys(raw, ["cadence", "start"], problems, stream=stream, prefix="partitioning.")
    read = _Reader(raw, problems, stream=stream, prefix="partitioning.")
    cadence = read.text("cadence", default="daily", example="daily")
    if cadence not in CADENCES:
        problems.add(
            f"unknown cadence {cadence!r}; write `daily` or `hourly`",
            stream=stream,
            at="partitioning.cadence",
        )
        cadence = "daily"
    start = raw.get("start")
    if start is None:  # the stream's first data (resolved when the code location loads)
        return Partitioning(cadence=cadence)  # type: ignore[arg-type]
    if hasattr(start, "isoformat"):  # YAML reads an unquoted 2026-01-01 as a date
        start = start.isoformat()
    example = "2026-01-01" if cadence == "daily" else "2026-01-01-00:00"
    if not isinstance(start, str):
        problems.add(
            f"expected text, got {_kind(start)}; write e.g. `start: '{example}'`, or leave `start` "
            "out to start at the stream's first data",
            stream=stream,
            at="partitioning.start",
        )
        return Partitioning(cadence=cadence)  # type: ignore[arg-type]
    try:
        datetime.strptime(start, CADENCES[cadence])
    except ValueError:
        problems.add(
            f"{start!r} is not a {cadence} partition start; write it as {example!r} (UTC), or leave "
            "`start` out to start at the stream's first data",
            stream=stream,
            at="partitioning.start",
        )
        return Partitioning(cadence=cadence)  # type: ignore[arg-type]
    return Partitioning(cadence=cadence, start=start)  # type: ignore[arg-type]


def _document(raw: Mapping[str, Any] | None, problems: Problems, *, stream: str) -> DocumentSpec | None:
    if raw is None:
        return None
    _unknown_keys(raw, _DOCUMENT_KEYS, problems, stream=stream, prefix="document.")
    read = _Reader(raw, problems, stream=stream, prefix="document.")
    template = read.text("template", example="'{title}: {body}'")
    if not template:
        problems.add(
            "a document needs a template, e.g. `template: '{title}: {body}'`; remove `document:` "
            "to keep the stream in Delta only",
            stream=stream,
            at="document.template",
        )
        template = ""
    enrich = None
    enrich_raw = read.mapping("enrich")
    if enrich_raw is not None:
        _unknown_keys(enrich_raw, _ENRICH_KEYS, problems, stream=stream, prefix="document.enrich.")
        er = _Reader(enrich_raw, problems, stream=stream, prefix="document.enrich.")
        values = {k: er.text(k, example="flights" if k == "stream" else "flight_id") for k in _ENRICH_KEYS}
        missing = [k for k, v in values.items() if not v]
        for k in missing:
            problems.add(
                "missing; an enrichment needs `stream`, `on` and `prefix`, e.g. "
                "`enrich: {stream: flights, on: flight_id, prefix: flight}`",
                stream=stream,
                at=f"document.enrich.{k}",
            )
        if not missing:
            enrich = Enrichment(stream=values["stream"], on=values["on"], prefix=values["prefix"])
    return DocumentSpec(
        template=template,
        attributes=read.names("attributes", example="[id, status]"),
        enrich=enrich,
        version=read.text("version", default="1", example="'2'") or "1",
    )


def _reserved(fmt: str) -> frozenset[str]:
    """Column names freshlake's tables already use: a field of that name would be shadowed."""
    from freshlake.delta.current import BOOKKEEPING
    from freshlake.delta.schemas import COORDINATES, DEBEZIUM_COLUMNS, PARTITION_COLUMN

    names = {f.name for f in [*COORDINATES, *BOOKKEEPING]} | {"value", "is_delete", PARTITION_COLUMN}
    if fmt == "debezium":
        names |= {f.name for f in DEBEZIUM_COLUMNS}
    # `event_time` is the parsed event time itself; `version` (the order) may be a field name.
    return frozenset(names - {"event_time", "version"})


def _fields(raw: Any, problems: Problems, *, stream: str, fmt: str = "json") -> dict[str, FieldType]:
    if not isinstance(raw, dict) or not raw:
        problems.add(
            f"expected a mapping of field name to type, got {_kind(raw)}; write e.g. "
            "`fields: {id: string, updated_at: timestamp}` (types: " + ", ".join(FIELD_TYPES) + ")",
            stream=stream,
            at="fields",
        )
        return {}
    out: dict[str, FieldType] = {}
    reserved = _reserved(fmt)
    for name, kind in raw.items():
        if name in reserved:
            problems.add(
                f"{name!r} is a column freshlake's tables already have (one of "
                f"{', '.join(sorted(reserved))}); rename the field",
                stream=stream,
                at=f"fields.{name}",
            )
            continue
        if not isinstance(name, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            problems.add(
                "field names are identifiers (letters, digits, _); rename it",
                stream=stream,
                at=f"fields.{name}",
            )
            continue
        if kind not in FIELD_TYPES:
            problems.add(
                f"unknown type {kind!r}{_suggest(str(kind), FIELD_TYPES)}; use one of "
                + ", ".join(FIELD_TYPES),
                stream=stream,
                at=f"fields.{name}",
            )
            continue
        out[name] = kind
    return out


def _stream(raw: Any, index: int, problems: Problems) -> StreamSpec | None:
    if not isinstance(raw, dict):
        problems.add(
            f"stream #{index + 1} is {_kind(raw)}; each entry of `streams:` is a mapping starting "
            "with `- name: ...`",
            at=f"streams[{index}]",
        )
        return None
    name = raw.get("name")
    label = name if isinstance(name, str) and name else f"#{index + 1}"
    if not isinstance(name, str) or not _NAME.match(name):
        problems.add(
            f"a stream needs a `name` of lower-case letters, digits and _ (starting with a letter), "
            f"got {name!r}; it names the assets (<name>/raw) and tables",
            stream=label,
            at="name",
        )
    _unknown_keys(raw, _STREAM_KEYS, problems, stream=label)
    read = _Reader(raw, problems, stream=label)
    topic = read.text("topic", example=label)
    if not topic:
        problems.add("a stream needs `topic: <kafka topic>`", stream=label, at="topic")
    fmt = read.text("format", default="json", example="json")
    if fmt not in FORMATS:
        problems.add(f"unknown format {fmt!r}; write `json` or `debezium`", stream=label, at="format")
        fmt = "json"
    key_fields = read.names("key_field", example="id")
    if not key_fields:
        problems.add(
            "a stream needs `key_field: <field>` (or a list for a composite key)",
            stream=label,
            at="key_field",
        )
    spec = StreamSpec(
        name=label,
        topic=topic or label,
        key_field=key_fields[0] if len(key_fields) == 1 else key_fields,
        format=fmt,  # type: ignore[arg-type]
        fields=_fields(raw.get("fields"), problems, stream=label, fmt=fmt),
        required=read.names("required", example="[id]"),
        event_time_field=read.text("event_time_field", example="updated_at"),
        order_by=read.names("order_by", example="version"),
        partitions=read.number("partitions", default=3, integer=True, minimum=1, example="3"),
        batching=_numbers(
            read.mapping("batching"),
            Batching,
            {
                "max_records_per_run": (True, 1, "50000"),
                "min_batch": (True, 1, "1"),
                "max_wait_seconds": (False, 0, "5"),
                "max_run_seconds": (False, 1, "600"),
                "idle_seconds": (False, 0, "60"),
            },
            problems,
            stream=label,
            section="batching",
            choices={"mode": ("streaming", "per_batch")},
        ),
        freshness=_numbers(
            read.mapping("freshness"),
            Freshness,
            {
                "warn_after_seconds": (True, 1, "120"),
                "fail_after_seconds": (True, 1, "300"),
                "max_consumer_lag": (True, 0, "10000"),
            },
            problems,
            stream=label,
            section="freshness",
        ),
        partitioning=_partitioning(read.mapping("partitioning"), problems, stream=label),
        description=read.text("description", default="", example="'What this stream holds.'") or "",
        document=_document(read.mapping("document"), problems, stream=label),
        feedback=_feedback(raw, read, problems, stream=label),
    )
    _check_fields_used(spec, problems)
    return spec


def _feedback(
    raw: Mapping[str, Any], read: _Reader, problems: Problems, *, stream: str
) -> FeedbackSpec | None:
    if "feedback" not in raw:
        return None
    section = raw.get("feedback") or {}
    if not isinstance(section, dict):
        problems.add(
            f"expected a mapping, got {_kind(section)}; write e.g. `feedback: {{documents: [policies]}}`",
            stream=stream,
            at="feedback",
        )
        return None
    _unknown_keys(section, _FEEDBACK_KEYS, problems, stream=stream, prefix="feedback.")
    inner = _Reader(section, problems, stream=stream, prefix="feedback.")
    return FeedbackSpec(documents=inner.names("documents", example="[policies]"))


def _check_fields_used(spec: StreamSpec, problems: Problems) -> None:
    """Every field the spec names must be declared in `fields`, with a type that fits its use."""
    declared = list(spec.fields)
    if not declared:
        return

    def need(names: Sequence[str], at: str, *, types: Sequence[str] | None = None, use: str) -> None:
        for name in names:
            if name not in spec.fields:
                problems.add(
                    f"{name!r} is not among `fields`{_suggest(name, declared)}; declare it under `fields:` "
                    f"or {use}",
                    stream=spec.name,
                    at=at,
                )
            elif types is not None and spec.fields[name] not in types:
                problems.add(
                    f"{name!r} is declared as {spec.fields[name]}, but {at} needs "
                    + " or ".join(types)
                    + f"; change its type or {use}",
                    stream=spec.name,
                    at=at,
                )

    need(spec.key_fields, "key_field", types=("string", "int"), use="name the record's key field")
    need(spec.required, "required", use="remove it from `required`")
    if spec.event_time_field:
        need([spec.event_time_field], "event_time_field", types=("timestamp",), use="name a timestamp field")
    need(spec.order_by, "order_by", types=ORDER_TYPES, use="order by a version, revision or time field")
    if spec.format == "json" and not spec.order_fields:
        problems.add(
            "a json stream needs an order for its events: set `order_by: <version field>` or "
            "`event_time_field: <timestamp field>` (Kafka offsets order events only within one "
            "partition, so they cannot say which of two events of a key is newer)",
            stream=spec.name,
            at="order_by",
        )
    if spec.document is not None:
        need(spec.document.attributes, "document.attributes", use="remove it from `attributes`")
        if spec.document.enrich is not None:
            need([spec.document.enrich.on], "document.enrich.on", use="name the field holding the other key")
    if spec.feedback is not None:
        need(FEEDBACK_FIELDS, "feedback", use="declare it: the fine-tuning dataset reads it")


def _check_templates(specs: Mapping[str, StreamSpec], origin: Mapping[str, str], problems: Problems) -> None:
    for spec in specs.values():
        document = spec.document
        if document is None:
            continue
        enrich = document.enrich
        other = specs.get(enrich.stream) if enrich else None
        if enrich is not None and other is None:
            problems.add(
                f"enriches from unknown stream {enrich.stream!r}{_suggest(enrich.stream, list(specs))}; "
                f"known streams are {', '.join(specs)}",
                stream=spec.name,
                at="document.enrich.stream",
                source=origin[spec.name],
            )
        for name in _PLACEHOLDER.findall(document.template):
            if enrich is not None and name.startswith(enrich.prefix + "."):
                column = name[len(enrich.prefix) + 1 :]
                if other is not None and column not in other.fields and column not in ROW_COLUMNS:
                    problems.add(
                        f"placeholder {{{name}}}: stream {other.name!r} has no field {column!r}"
                        f"{_suggest(column, list(other.fields))}",
                        stream=spec.name,
                        at="document.template",
                        source=origin[spec.name],
                    )
            elif name == "version":
                problems.add(
                    "placeholder {version} would show freshlake's order string (the `version` "
                    "column of current), not the field: rename the field, e.g. to `revision`",
                    stream=spec.name,
                    at="document.template",
                    source=origin[spec.name],
                )
            elif name not in spec.fields and name not in ROW_COLUMNS:
                hint = f" or `{{{enrich.prefix}.<field>}}` of {enrich.stream!r}" if enrich else ""
                problems.add(
                    f"placeholder {{{name}}} is not a field of this stream"
                    f"{_suggest(name, list(spec.fields))}; use one of `fields`{hint}",
                    stream=spec.name,
                    at="document.template",
                    source=origin[spec.name],
                )


def _check_across(specs: Sequence[StreamSpec], sources: Sequence[str], problems: Problems) -> None:
    """Checks between streams; `sources[i]` is the file declaring `specs[i]`."""
    by_name: dict[str, int] = {}
    by_topic: dict[str, int] = {}
    for i, spec in enumerate(specs):
        for seen, value, what in ((by_name, spec.name, "name"), (by_topic, spec.topic, "topic")):
            if value in seen:
                first = specs[seen[value]]
                problems.add(
                    f"{what} {value!r} is already used by stream {first.name!r} in {sources[seen[value]]}; "
                    f"each stream needs its own {what}",
                    stream=spec.name,
                    at=what,
                    source=sources[i],
                )
            else:
                seen[value] = i
    names = {s.name: s for s in specs}
    origin = {s.name: sources[i] for i, s in reversed(list(enumerate(specs)))}
    documents = [s.name for s in specs if s.document is not None]
    for spec in specs:
        if spec.freshness.warn_after_seconds > spec.freshness.fail_after_seconds:
            problems.add(
                f"warn_after_seconds ({spec.freshness.warn_after_seconds}) is above fail_after_seconds "
                f"({spec.freshness.fail_after_seconds}); WARN must come first: lower it or raise the other",
                stream=spec.name,
                at="freshness.warn_after_seconds",
                source=origin[spec.name],
            )
        if spec.feedback is not None:
            for target in spec.feedback.documents:
                if target not in names or names[target].document is None:
                    problems.add(
                        f"{target!r} is not a stream with a document{_suggest(target, documents)}; "
                        f"streams with documents: {', '.join(documents) or 'none'}",
                        stream=spec.name,
                        at="feedback.documents",
                        source=origin[spec.name],
                    )
    _check_templates(names, origin, problems)


@dataclass(frozen=True, kw_only=True)
class Document:
    """One parsed YAML file; `source` is how messages name it."""

    source: str
    content: Any


def build_specs(documents: Sequence[Document]) -> tuple[tuple[StreamSpec, ...], list[str]]:
    """(specs, problems): no problems means every spec is valid."""
    specs: list[StreamSpec] = []
    sources: list[str] = []
    lines: list[str] = []
    for document in documents:
        problems = Problems(source=document.source)
        content = document.content
        if not isinstance(content, dict) or "streams" not in content:
            problems.add(
                "expected a top-level `streams:` list, e.g.\n  streams:\n    - name: orders\n"
                "      topic: orders\n      key_field: order_id\n      fields: {order_id: int, "
                "updated_at: timestamp}\n      event_time_field: updated_at"
            )
        else:
            _unknown_keys(content, ["streams"], problems, stream=None)
            entries = content["streams"]
            if not isinstance(entries, list):
                problems.add(f"`streams` must be a list of `- name: ...` entries, got {_kind(entries)}")
                entries = []
            for index, entry in enumerate(entries):
                spec = _stream(entry, index, problems)
                if spec is not None:
                    sources.append(document.source)
                    specs.append(spec)
        lines.extend(problems.lines)
    across = Problems(source="")
    _check_across(specs, sources, across)
    lines.extend(across.lines)
    return tuple(specs), lines
