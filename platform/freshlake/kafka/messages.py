"""A Kafka message as freshlake handles it: plain data, detached from the client library."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Headers = Sequence[tuple[str, bytes | None]]


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


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageBatch:
    """Messages column by column, as the reader collects them: no object per message.

    Entry `i` of every list belongs to message `i`; `headers[i]` is None or empty when the
    message has none. `KafkaMessage`s convert both ways (`from_messages`, `messages`).
    """

    topics: list[str]
    partitions: list[int]
    offsets: list[int]
    keys: list[bytes | None]
    values: list[bytes | None]  # None: a tombstone
    timestamps_ms: list[int | None]
    headers: list[Headers | None]

    def __len__(self) -> int:
        return len(self.offsets)

    @classmethod
    def from_messages(cls, messages: Iterable[KafkaMessage]) -> MessageBatch:
        batch = cls(topics=[], partitions=[], offsets=[], keys=[], values=[], timestamps_ms=[], headers=[])
        for m in messages:
            batch.topics.append(m.topic)
            batch.partitions.append(m.partition)
            batch.offsets.append(m.offset)
            batch.keys.append(m.key)
            batch.values.append(m.value)
            batch.timestamps_ms.append(m.timestamp_ms)
            batch.headers.append(m.headers)
        return batch

    def messages(self) -> list[KafkaMessage]:
        return [
            KafkaMessage(
                topic=topic,
                partition=partition,
                offset=offset,
                key=key,
                value=value,
                timestamp_ms=timestamp_ms,
                headers=tuple(headers or ()),
            )
            for topic, partition, offset, key, value, timestamp_ms, headers in zip(
                self.topics,
                self.partitions,
                self.offsets,
                self.keys,
                self.values,
                self.timestamps_ms,
                self.headers,
                strict=True,
            )
        ]

    def slice(self, start: int, stop: int) -> MessageBatch:
        """Messages `start` to `stop` (exclusive), as a new batch."""
        return MessageBatch(
            topics=self.topics[start:stop],
            partitions=self.partitions[start:stop],
            offsets=self.offsets[start:stop],
            keys=self.keys[start:stop],
            values=self.values[start:stop],
            timestamps_ms=self.timestamps_ms[start:stop],
            headers=self.headers[start:stop],
        )
