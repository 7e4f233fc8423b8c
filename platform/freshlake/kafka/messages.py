"""A Kafka message as freshlake handles it: plain data, detached from the client library."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class KafkaMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None  # None: a tombstone
    timestamp_ms: int | None
    headers: tuple[tuple[str, bytes | None], ...] = ()

    @classmethod
    def from_confluent(cls, message) -> KafkaMessage:
        _, ts = message.timestamp()
        return cls(
            topic=message.topic(),
            partition=message.partition(),
            offset=message.offset(),
            key=message.key(),
            value=message.value(),
            timestamp_ms=ts if ts and ts > 0 else None,
            headers=tuple(message.headers() or ()),
        )
