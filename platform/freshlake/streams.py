"""Stream specs: each stream is declared once; its assets, checks and sensor are built from it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

StreamFormat = Literal["json", "debezium"]
FieldType = Literal["string", "int", "float", "bool", "timestamp", "list", "object", "decimal"]
FreshnessState = Literal["PASS", "WARN", "FAIL", "UNKNOWN"]
Cadence = Literal["daily", "hourly"]
RunMode = Literal["streaming", "per_batch"]


@dataclass(frozen=True, kw_only=True)
class Batching:
    """When the offsets sensor launches a run, and how much one run (or micro-batch) may read.

    `mode`: `streaming` keeps one long-lived run per stream going while the topic has traffic,
    looping in micro-batches; it ends after `max_run_seconds` or `idle_seconds` without new data.
    `per_batch` launches one run per batch (each run pays its process start).
    """

    max_records_per_run: int = 50_000
    min_batch: int = 1
    max_wait_seconds: float = 5.0
    mode: RunMode = "streaming"
    max_run_seconds: float = 600.0
    idle_seconds: float = 60.0


@dataclass(frozen=True, kw_only=True)
class Freshness:
    """The SLO: how old the newest searchable data may get before WARN and FAIL."""

    warn_after_seconds: int = 120
    fail_after_seconds: int = 300
    max_consumer_lag: int = 10_000


@dataclass(frozen=True, kw_only=True)
class Partitioning:
    """Time partitions on Kafka message time (UTC): what a backfill selects and replaces.

    `start`: the first partition (YYYY-MM-DD, or YYYY-MM-DD-HH:MM for hourly); None starts at
    the stream's first data, resolved when the code location loads (`freshlake.partitions`).
    """

    cadence: Cadence = "daily"
    start: str | None = None


@dataclass(frozen=True, kw_only=True)
class Enrichment:
    """Join another stream's current row into this stream's documents (`{prefix.field}`)."""

    stream: str
    on: str  # this stream's field holding the other stream's key
    prefix: str


@dataclass(frozen=True, kw_only=True)
class DocumentSpec:
    """How a current row becomes searchable text.

    `template` is `str.format` text over the row; a `[...]` segment is dropped when any field in
    it is empty (None, "", 0), so optional facts read naturally. `attributes` are copied to the
    vector rows for filtering.
    """

    template: str
    attributes: tuple[str, ...] = ()
    enrich: Enrichment | None = None
    version: str = "1"  # bump when the template changes meaning: it is part of the code version


@dataclass(frozen=True, kw_only=True)
class FeedbackSpec:
    """This stream holds rated answers; `documents` are the streams its document ids point into
    (empty: every stream with a document)."""

    documents: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class StreamSpec:
    """One Kafka topic and the tables built from it.

    Args:
        name: stream name; asset keys are `<name>/raw`, `<name>/current`, ...
        topic: Kafka topic.
        key_field: record key; for `debezium` the primary-key column inside `before`/`after`.
        format: `json` (one JSON object per message) or `debezium` (change-event envelope).
        fields: expected fields of the record (`after` for debezium) and their types.
        required: fields that must be present and non-null.
        event_time_field: field holding the event time (ISO-8601 string or epoch millis).
        partitions: partition count used when freshlake creates the topic.
        order_by: fields that order a key's events (a version, a revision or the event time),
            compared in this order; the Kafka offset breaks ties within a partition only. Empty
            for `debezium`: the source position (see `freshlake.ordering`).
        feedback: set on the stream that holds user feedback (the fine-tuning loop).
    """

    name: str
    topic: str
    key_field: str | tuple[str, ...]
    format: StreamFormat = "json"
    fields: Mapping[str, FieldType] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    event_time_field: str | None = None
    partitions: int = 3
    batching: Batching = field(default_factory=Batching)
    freshness: Freshness = field(default_factory=Freshness)
    partitioning: Partitioning = field(default_factory=Partitioning)
    description: str = ""
    document: DocumentSpec | None = None  # None: kept in Delta, not embedded
    order_by: tuple[str, ...] = ()
    feedback: FeedbackSpec | None = None

    @property
    def key_fields(self) -> tuple[str, ...]:
        """The record key's fields: one, or several for a composite key."""
        return (self.key_field,) if isinstance(self.key_field, str) else tuple(self.key_field)

    @property
    def order_fields(self) -> tuple[str, ...]:
        """`order_by`, defaulting to the event-time field for `json`; empty means the Debezium
        source position."""
        if self.order_by or self.format == "debezium" or self.event_time_field is None:
            return self.order_by
        return (self.event_time_field,)


def topics(streams: Sequence[StreamSpec]) -> dict[str, int]:
    """Topic -> partitions, for creating the topics of `streams`."""
    return {spec.topic: spec.partitions for spec in streams}


def stream_by_name(name: str, *, streams: Sequence[StreamSpec]) -> StreamSpec:
    for spec in streams:
        if spec.name == name:
            return spec
    msg = f"unknown stream {name!r}: known streams are {', '.join(s.name for s in streams)}"
    raise KeyError(msg)
