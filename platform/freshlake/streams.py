"""Stream specs: each stream is declared once; its assets, checks and sensor are built from it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

StreamFormat = Literal["json", "debezium"]
FieldType = Literal["string", "int", "float", "bool", "timestamp", "list", "object"]
FreshnessState = Literal["PASS", "WARN", "FAIL", "UNKNOWN"]
Cadence = Literal["daily", "hourly"]


@dataclass(frozen=True, kw_only=True)
class Batching:
    """When the offsets sensor launches a run, and how much one run may read."""

    max_records_per_run: int = 50_000
    min_batch: int = 1
    max_wait_seconds: float = 5.0


@dataclass(frozen=True, kw_only=True)
class Freshness:
    """The SLO: how old the newest searchable data may get before WARN and FAIL."""

    warn_after_seconds: int = 120
    fail_after_seconds: int = 300
    max_consumer_lag: int = 10_000


@dataclass(frozen=True, kw_only=True)
class Partitioning:
    """Time partitions on Kafka message time (UTC): what a backfill selects and replaces."""

    cadence: Cadence = "daily"
    start: str = "2026-01-01"  # first partition (YYYY-MM-DD, or YYYY-MM-DD-HH:MM for hourly)


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
    """

    name: str
    topic: str
    key_field: str
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


DEMO_STREAMS: tuple[StreamSpec, ...] = (
    StreamSpec(
        name="flights",
        topic="flights",
        key_field="flight_id",
        fields={
            "flight_id": "string",
            "flight_number": "string",
            "airline": "string",
            "origin": "string",
            "origin_city": "string",
            "destination": "string",
            "destination_city": "string",
            "status": "string",
            "scheduled_departure": "timestamp",
            "estimated_departure": "timestamp",
            "gate": "string",
            "delay_minutes": "int",
            "reason": "string",
            "event_time": "timestamp",
            "version": "int",
        },
        required=("flight_id", "status", "event_time"),
        event_time_field="event_time",
        description="Flight status events (scheduled, boarding, delayed, gate change, ...).",
        document=DocumentSpec(
            template=(
                "Flight {flight_number} ({airline}) from [{origin_city} ]({origin})"
                " to [{destination_city} ]({destination}) is {status}"
                "[, delayed {delay_minutes} minutes][ because of {reason}][, gate {gate}]"
                "[, scheduled to depart {scheduled_departure}]"
                "[, now expected {estimated_departure}]."
            ),
            attributes=("flight_id", "status", "origin", "destination", "airline"),
        ),
    ),
    StreamSpec(
        name="bookings",
        topic="bookings",
        key_field="booking_id",
        format="debezium",
        fields={
            "booking_id": "string",
            "passenger_name": "string",
            "email": "string",
            "flight_id": "string",
            "seat": "string",
            "fare_class": "string",
            "status": "string",
            "updated_at": "timestamp",
        },
        required=("booking_id",),
        event_time_field="updated_at",
        description="Booking rows captured from the airline database by Debezium.",
        document=DocumentSpec(
            template=(
                "Booking {booking_id} for {passenger_name} is {status} on flight {flight_id}"
                "[, seat {seat}][, {fare_class} fare]"
                "[. Flight {flight.flight_number} from {flight.origin} to {flight.destination}"
                " is {flight.status}][, delayed {flight.delay_minutes} minutes]"
                "[ because of {flight.reason}][, gate {flight.gate}]."
            ),
            attributes=("booking_id", "flight_id", "status"),
            enrich=Enrichment(stream="flights", on="flight_id", prefix="flight"),
        ),
    ),
    StreamSpec(
        name="policies",
        topic="policies",
        key_field="policy_id",
        fields={
            "policy_id": "string",
            "title": "string",
            "category": "string",
            "body": "string",
            "revision": "int",
            "event_time": "timestamp",
        },
        required=("policy_id", "title", "body", "event_time"),
        event_time_field="event_time",
        description="Airline policy documents (rebooking, refunds, baggage, compensation).",
        document=DocumentSpec(template="{title}\n\n{body}", attributes=("policy_id", "category", "title")),
    ),
    StreamSpec(
        name="feedback",
        topic="feedback",
        key_field="feedback_id",
        fields={
            "feedback_id": "string",
            "session_id": "string",
            "query": "string",
            "answer": "string",
            "rating": "string",
            "comment": "string",
            "document_ids": "list",
            "event_time": "timestamp",
        },
        required=("feedback_id", "rating", "event_time"),
        event_time_field="event_time",
        description="User reactions to assistant answers, for the fine-tuning loop.",
    ),
)


def demo_topics() -> dict[str, int]:
    """Topic -> partitions for the demo streams."""
    return {spec.topic: spec.partitions for spec in DEMO_STREAMS}


def stream_by_name(name: str, *, streams: tuple[StreamSpec, ...] = DEMO_STREAMS) -> StreamSpec:
    for spec in streams:
        if spec.name == name:
            return spec
    msg = f"unknown stream {name!r}: known streams are {', '.join(s.name for s in streams)}"
    raise KeyError(msg)
