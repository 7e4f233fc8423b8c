"""A consumer kept open across micro-batches: `assign()`ed at explicit offsets, no group, no commits.

Each `poll` returns what the broker has sent up to now, so a batch reads up to the high watermark
of the fetch responses it was built from (the cached watermark, never ListOffsets, which the
embedded broker answers wrongly). The Delta txn log stays the truth: the loop re-positions the
tail (`seek`) whenever the table says another writer got further, or a commit of ours failed.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Mapping
from dataclasses import dataclass

from freshlake.errors import FreshlakeError
from freshlake.kafka.messages import MessageBatch


@dataclass(frozen=True, kw_only=True)
class Polled:
    messages: MessageBatch
    low: dict[int, int]  # fetch-derived watermarks after the poll (-1 where none came yet)
    high: dict[int, int]
    seconds: float  # from the first message to the end of the poll (not the wait)


class Tail:
    def __init__(self, config: Mapping[str, object], *, topic: str, start: Mapping[int, int]) -> None:
        from freshlake.kafka.consumer import reader

        self.topic = topic
        # A 256 MiB queue as the one-shot reader uses; the fetch wait bounds idle wake-ups.
        self._consumer = reader({**config, "fetch.min.bytes": 1, "queued.max.messages.kbytes": 262144})
        self._positions: dict[int, int] = {}
        self.seek(start)

    @property
    def partitions(self) -> list[int]:
        return sorted(self._positions)

    def seek(self, start: Mapping[int, int]) -> None:
        """Read `start[p]` next for each partition given (new partitions are added).

        One `assign()` of every partition at its position: librdkafka drops what it fetched for
        the old positions (fetch versions), so nothing from before a seek is returned after it.
        """
        from confluent_kafka import TopicPartition

        moved = {p: o for p, o in start.items() if self._positions.get(p) != o}
        if not moved:
            return
        self._positions.update(moved)
        self._consumer.assign([TopicPartition(self.topic, p, o) for p, o in sorted(self._positions.items())])

    def position(self, partition: int) -> int | None:
        """The next offset this tail returns for `partition`."""
        return self._positions.get(partition)

    def poll(self, *, wait: float, max_records: int) -> Polled:
        """Messages from each partition's position on: waits up to `wait` for the first, then takes
        only what is already queued (the watermark the batch reads to is the one just fetched)."""
        batch = MessageBatch.from_messages(())
        first: float | None = None
        collecting = gc.isenabled()
        gc.disable()  # one GC-tracked object per message, none in a cycle (see kafka.consumer)
        try:
            while len(batch) < max_records:
                count = min(10_000, max_records - len(batch))
                messages = self._consumer.consume(num_messages=count, timeout=wait if first is None else 0)
                if not messages:
                    break
                first = first or time.perf_counter()
                self._add(batch, messages)
        finally:
            if collecting:
                gc.enable()
        low, high = self.watermarks()
        seconds = 0.0 if first is None else time.perf_counter() - first
        return Polled(messages=batch, low=low, high=high, seconds=seconds)

    def _add(self, batch: MessageBatch, messages: list) -> None:
        from confluent_kafka import KafkaError, Message

        kept = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                msg = f"reading {self.topic}[{message.partition()}] failed: {error.str()}"
                raise FreshlakeError(msg)
            p, offset = message.partition(), message.offset()
            if offset >= self._positions.get(p, offset):  # below: fetched before a seek
                self._positions[p] = offset + 1
                kept.append(message)
        batch.topics.extend([self.topic] * len(kept))
        for column, values in (
            (batch.partitions, map(Message.partition, kept)),
            (batch.offsets, map(Message.offset, kept)),
            (batch.keys, map(Message.key, kept)),
            (batch.values, map(Message.value, kept)),
            (batch.timestamps_ms, (ts if ts > 0 else None for _, ts in map(Message.timestamp, kept))),
            (batch.headers, map(Message.headers, kept)),
        ):
            column.extend(values)

    def watermarks(self) -> tuple[dict[int, int], dict[int, int]]:
        from confluent_kafka import TopicPartition

        low, high = {}, {}
        for p in self._positions:
            low[p], high[p] = self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), cached=True)
        return low, high

    def close(self) -> None:
        self._consumer.close()
