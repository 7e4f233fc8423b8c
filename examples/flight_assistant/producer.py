"""Send the demo world to Kafka: a fixed count (tests, smoke runs) or a steady rate (live demo).

    python -m examples.flight_assistant.producer [--bootstrap HOST:PORT] [--count N | --rate R]
        [--seed S] [--bad-ratio X] [--streams flights,bookings] [--partitions P]

`make run` starts it through `freshlake dev --producer`, which sets KAFKA_BOOTSTRAP_SERVERS.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from examples.flight_assistant import stream_by_name
from examples.flight_assistant.world import STREAMS, DemoMessage, DemoWorld
from freshlake.errors import FreshlakeError
from freshlake.kafka.topics import check_reachable, ensure_topics

if TYPE_CHECKING:
    from confluent_kafka import Producer

log = logging.getLogger(__name__)

PRODUCER_DEFAULTS: dict[str, object] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 20,
    "compression.type": "lz4",
}


def produce_demo(
    *,
    config: Mapping[str, object],
    seed: int = 42,
    count: int | None = None,
    rate: float | None = None,
    streams: Sequence[str] = STREAMS,
    bad_ratio: float = 0.0,
    start: datetime | None = None,
    stop: threading.Event | None = None,
    create_topics: bool = True,
    partitions: int | None = None,
    topic_prefix: str = "",
    timeout: float = 5.0,
) -> dict[str, int]:
    """Produce the demo world's messages; returns messages delivered per topic.

    Args:
        config: librdkafka client settings (at least `bootstrap.servers`).
        count: send exactly this many messages, then flush and return.
        rate: messages per second, paced without drift; event times are then the real time.
            Without `count` it runs until `stop` is set.
        start: simulated time of the first event in count mode (default: now).
        stop: set it to end the run early (after a flush).
        partitions: partition count for topics it creates (default: each stream spec's).
        topic_prefix: prepended to every topic name (tests use it to stay apart).
        timeout: seconds to wait for the broker to answer and for topics to appear.

    Raises:
        FreshlakeConfigError: the broker is unreachable or a topic cannot be created.
        FreshlakeError: some messages were not delivered.
    """
    if count is not None and count < 0:
        msg = f"count must be >= 0, got {count}"
        raise ValueError(msg)
    if rate is not None and rate <= 0:
        msg = f"rate must be > 0 messages per second, got {rate}"
        raise ValueError(msg)
    clock = (lambda: datetime.now(UTC)) if rate else None
    world = DemoWorld(
        seed=seed,
        start=start or datetime.now(UTC),
        streams=streams,
        bad_ratio=bad_ratio,
        clock=clock,
    )
    topics = {topic: topic_prefix + topic for topic in world.topics().values()}
    check_reachable(config, timeout=timeout)
    if create_topics:
        wanted = {
            topics[stream_by_name(s).topic]: partitions or stream_by_name(s).partitions for s in world.streams
        }
        ensure_topics(config, topics=wanted, timeout=timeout)
    delivered = dict.fromkeys(topics.values(), 0)
    errors: list[str] = []

    def on_delivery(err: object, message: object) -> None:
        if err is None:
            delivered[message.topic()] += 1  # type: ignore[attr-defined]
            return
        errors.append(str(err))
        if len(errors) <= 5:  # the first few say why; the summary has the count
            log.warning("demo message not delivered", extra={"error": str(err)})

    producer = make_producer(config)
    log.info(
        "demo producer started",
        extra={
            "topics": sorted(topics.values()),
            "seed": seed,
            "count": count,
            "rate": rate,
            "bad_ratio": bad_ratio,
        },
    )
    began, sent = time.monotonic(), 0
    messages = world.messages()
    try:
        while count is None or sent < count:
            if stop is not None and stop.is_set():
                break
            if rate:
                delay = began + sent / rate - time.monotonic()  # schedule from t0: no drift
                if delay > 0 and _sleep(delay, stop):
                    break
            _send(producer, next(messages), topics, on_delivery)
            sent += 1
    finally:
        unflushed = producer.flush(30.0)
    failed = len(errors) + unflushed
    log.info(
        "demo producer finished",
        extra={
            "sent": sent,
            "delivered": delivered,
            "failed": failed,
            "seconds": round(time.monotonic() - began, 3),
        },
    )
    if failed:
        first = errors[0] if errors else "still queued after 30s"
        msg = (
            f"{failed} of {sent} demo messages were not delivered to "
            f"{config.get('bootstrap.servers')} (first error: {first})"
        )
        raise FreshlakeError(msg)
    return delivered


def make_producer(config: Mapping[str, object]) -> Producer:
    """An idempotent producer; lz4 when this librdkafka build has it, else uncompressed."""
    from confluent_kafka import KafkaException, Producer

    settings = {**PRODUCER_DEFAULTS, **config}
    try:
        return Producer(settings)
    except KafkaException as exc:
        if "compression" not in str(exc):
            raise
        return Producer({**settings, "compression.type": "none"})


def _send(
    producer: Producer,
    message: DemoMessage,
    topics: Mapping[str, str],
    on_delivery: Callable[[object, object], None],
) -> None:
    """Queue one message; a full local queue is drained by polling, never by dropping."""
    while True:
        try:
            producer.produce(
                topics[message.topic],
                key=message.key,
                value=message.value,
                headers=list(message.headers) or None,
                timestamp=message.timestamp_ms,
                on_delivery=on_delivery,
            )
            break
        except BufferError:
            producer.poll(0.1)
    producer.poll(0)


def _sleep(seconds: float, stop: threading.Event | None) -> bool:
    """Sleep, waking early when `stop` is set; True means stop."""
    if stop is None:
        time.sleep(seconds)
        return False
    return stop.wait(seconds)


def _stream_list(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in STREAMS]
    if unknown or not names:
        msg = f"unknown stream(s) {', '.join(unknown) or '(none)'}; choose from {','.join(STREAMS)}"
        raise argparse.ArgumentTypeError(msg)
    return names


def build_parser() -> argparse.ArgumentParser:
    from freshlake.cli.args import Parser, positive_float, positive_int, ratio

    parser = Parser(prog="python -m examples.flight_assistant.producer", description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", help="HOST:PORT (default: $KAFKA_BOOTSTRAP_SERVERS)")
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--count", type=positive_int, help="send N messages, then exit")
    amount.add_argument("--rate", type=positive_float, help="messages per second until Ctrl-C (default 5)")
    parser.add_argument("--seed", type=int, default=42, help="same seed, same events")
    parser.add_argument("--bad-ratio", type=ratio, default=0.0, help="share of malformed messages")
    parser.add_argument(
        "--streams",
        type=_stream_list,
        default=STREAMS,
        help="comma-separated subset of " + ",".join(STREAMS),
    )
    parser.add_argument("--partitions", type=positive_int, help="for topics it creates")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from freshlake.cli.args import stop_on_signal
    from freshlake.kafka.connection import client_config

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stop = stop_on_signal()
    rate = args.rate if args.count or args.rate else 5.0  # neither given: a gentle default
    try:
        sent = produce_demo(
            config=client_config(bootstrap=args.bootstrap),
            seed=args.seed,
            count=args.count,
            rate=rate,
            streams=args.streams,
            bad_ratio=args.bad_ratio,
            stop=stop,
            partitions=args.partitions,
        )
    except FreshlakeError as exc:
        print(f"flight_assistant producer: {exc}", file=sys.stderr)
        return 1
    print(" ".join(f"{topic}={n}" for topic, n in sorted(sent.items())), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
