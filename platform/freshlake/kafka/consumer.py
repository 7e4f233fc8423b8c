"""Explicit-offset reading: `assign()`, no group membership, no commits; offsets are ours.

The high watermark is learned from a fetch response (cached after a poll), never from
ListOffsets "latest", which the embedded broker answers wrongly (first offset of the newest
batch + 1). ListOffsets is used only as a starting hint that is never past the true end, so
the probe fetch reads at most the newest batch.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from freshlake.errors import FreshlakeConfigError, FreshlakeError
from freshlake.kafka.messages import MessageBatch

log = logging.getLogger(__name__)

# Never auto-commit, never join a group's rebalance, never create a topic by asking for it.
READER_SETTINGS: dict[str, object] = {
    "group.id": "freshlake-reader",  # required by the client; nothing is ever committed to it
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "enable.partition.eof": True,
    "allow.auto.create.topics": False,
    "auto.offset.reset": "error",
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 1000,
    "fetch.wait.max.ms": 100,
    "log_level": 0,
}


@dataclass(frozen=True, kw_only=True)
class Watermarks:
    """Per-partition low (first retained) and high (next to be written) offsets."""

    low: dict[int, int]
    high: dict[int, int]


def reader(config: Mapping[str, object]):
    from confluent_kafka import Consumer

    from freshlake.kafka.connection import CLIENT_DEFAULTS

    return Consumer({**CLIENT_DEFAULTS, **config, **READER_SETTINGS})


def topic_partitions(config: Mapping[str, object], *, topic: str, timeout: float = 10.0) -> list[int]:
    """Partition ids of `topic`; a missing topic is a config error, never auto-created.

    One metadata request, which also tells whether the broker answers at all.
    """
    from freshlake.kafka.topics import cluster_metadata

    metadata = cluster_metadata(config, timeout=timeout)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        msg = (
            f"topic {topic!r} does not exist on {config.get('bootstrap.servers')}: create it "
            "(`freshlake broker` creates the demo topics) or fix the stream's topic"
        )
        raise FreshlakeConfigError(msg)
    return sorted(found.partitions)


def _end_hints(
    config: Mapping[str, object], *, topic: str, partitions: list[int], timeout: float
) -> dict[int, int]:
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import OffsetSpec

    from freshlake.kafka.topics import admin_client

    admin = admin_client(config)
    request = {TopicPartition(topic, p): OffsetSpec.latest() for p in partitions}
    futures = admin.list_offsets(request, request_timeout=timeout)
    return {tp.partition: max(0, f.result().offset) for tp, f in futures.items()}


def watermarks(
    config: Mapping[str, object],
    *,
    topic: str,
    partitions: list[int] | None = None,
    timeout: float = 10.0,
) -> Watermarks:
    """Fetch-derived watermarks for `topic`: correct on Apache Kafka and on Tansu alike."""
    from confluent_kafka import KafkaError, TopicPartition

    partitions = (
        partitions if partitions is not None else topic_partitions(config, topic=topic, timeout=timeout)
    )
    hints = _end_hints(config, topic=topic, partitions=partitions, timeout=timeout)
    consumer = reader({**config, "max.partition.fetch.bytes": 1024})
    try:
        consumer.assign([TopicPartition(topic, p, hints[p]) for p in partitions])
        pending = set(partitions)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            # What is already queued, else wait for one: a bigger blocking batch would sit out
            # the timeout once the EOFs are in.
            messages = consumer.consume(num_messages=10_000, timeout=0) or consumer.consume(
                num_messages=1, timeout=0.2
            )
            for message in messages:
                error = message.error()
                # A partition's first message or end-of-partition comes with a fetch response,
                # and the fetch response carries the high watermark: that one is all we need.
                if error is None or error.code() == KafkaError._PARTITION_EOF:
                    pending.discard(message.partition())
                else:
                    msg = f"reading {topic}[{message.partition()}] failed: {error.str()}"
                    raise FreshlakeError(msg)
        if pending:
            msg = f"no fetch answer for {topic} partitions {sorted(pending)} in {timeout:.0f}s"
            raise FreshlakeConfigError(msg)
        low, high = {}, {}
        for p in partitions:
            tp = TopicPartition(topic, p)
            low[p], high[p] = consumer.get_watermark_offsets(tp, cached=True)
        return Watermarks(low=low, high=high)
    finally:
        consumer.close()


def read_batches(
    config: Mapping[str, object],
    *,
    topic: str,
    ranges: Mapping[int, tuple[int, int]],
    batch_size: int = 10_000,
    stall_timeout: float = 30.0,
) -> Iterator[MessageBatch]:
    """Yield the messages in `[start, end)` per partition as column batches, then stop.

    Offsets can have gaps (compaction, transaction markers): a partition is done once a message
    at or past `end - 1` or an end-of-partition at or past `end` is seen. Reading past the end
    stalls silently on some brokers, so a partition that makes no progress fails loudly.
    A consume call asks for no more messages than the ranges still hold, so the last one returns
    as soon as they are in instead of waiting out its timeout for a full batch (with gaps it
    still waits, as before).
    """
    from confluent_kafka import TopicPartition

    todo = {p: end for p, (start, end) in ranges.items() if end > start}
    if not todo:
        return
    left = sum(end - ranges[p][0] for p, end in todo.items())  # offsets not read yet
    consumer = reader({**config, "fetch.min.bytes": 1, "queued.max.messages.kbytes": 262144})
    try:
        consumer.assign([TopicPartition(topic, p, ranges[p][0]) for p in todo])
        last_progress = time.monotonic()
        while todo:
            batch = _consume(consumer, todo, topic=topic, count=max(1, min(batch_size, left)))
            if batch is not None:
                left -= len(batch)
                last_progress = time.monotonic()
                yield batch
            elif time.monotonic() - last_progress > stall_timeout:
                msg = (
                    f"no progress reading {topic} partitions {sorted(todo)} for "
                    f"{stall_timeout:.0f}s: the broker is down or the range is past the end"
                )
                raise FreshlakeError(msg)
    finally:
        consumer.close()


def _consume(consumer, todo: dict[int, int], *, topic: str, count: int) -> MessageBatch | None:
    """One consume call as columns. The client makes a GC-tracked object per message, none of
    them in a cycle: with the collector off meanwhile (and the objects gone before the batch is
    handed on) collections don't walk every batch, and the process, over and over.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _columns(consumer, consumer.consume(num_messages=count, timeout=0.5), todo, topic=topic)
    finally:
        if collecting:
            gc.enable()


def _columns(consumer, messages: list, todo: dict[int, int], *, topic: str) -> MessageBatch | None:
    """The messages of one consume call that are in range, column by column (None: none);
    partitions that reach their end are taken out of `todo` and paused.
    """
    from confluent_kafka import Message

    if not messages:
        return None
    partitions = list(map(Message.partition, messages))
    offsets = list(map(Message.offset, messages))
    last = dict(zip(partitions, offsets, strict=True))  # offsets only grow within a partition
    if any(map(Message.error, messages)) or not all(o < todo.get(p, -1) for p, o in last.items()):
        return _columns_one_by_one(consumer, messages, todo, topic=topic)
    # The common case, every message in range and no error: whole columns at a time.
    for p, offset in last.items():
        if offset >= todo[p] - 1:
            _finish(consumer, todo, topic=topic, partition=p)
    return MessageBatch(
        topics=[topic] * len(offsets),
        partitions=partitions,
        offsets=offsets,
        keys=list(map(Message.key, messages)),
        values=list(map(Message.value, messages)),
        timestamps_ms=[ts if ts > 0 else None for _, ts in map(Message.timestamp, messages)],
        headers=list(map(Message.headers, messages)),
    )


def _columns_one_by_one(consumer, messages: list, todo: dict[int, int], *, topic: str) -> MessageBatch | None:
    from confluent_kafka import KafkaError

    batch = MessageBatch.from_messages(())
    for message in messages:
        p = message.partition()
        end = todo.get(p)
        if end is None:
            continue
        error = message.error()
        if error is not None:
            if error.code() == KafkaError._PARTITION_EOF:
                if message.offset() >= end:
                    _finish(consumer, todo, topic=topic, partition=p)
                continue
            msg = f"reading {topic}[{p}] failed: {error.str()}"
            raise FreshlakeError(msg)
        offset = message.offset()
        if offset < end:
            batch.topics.append(topic)
            batch.partitions.append(p)
            batch.offsets.append(offset)
            batch.keys.append(message.key())
            batch.values.append(message.value())
            ts = message.timestamp()[1]
            batch.timestamps_ms.append(ts if ts and ts > 0 else None)
            batch.headers.append(message.headers())
        if offset >= end - 1:
            _finish(consumer, todo, topic=topic, partition=p)
    return batch if len(batch) else None


def _finish(consumer, todo: dict[int, int], *, topic: str, partition: int) -> None:
    from confluent_kafka import TopicPartition

    todo.pop(partition, None)
    consumer.pause([TopicPartition(topic, partition)])
