"""The `freshlake` command. A usage mistake ends in one line that says what to do."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import NoReturn

from freshlake.errors import FreshlakeError

log = logging.getLogger("freshlake")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line that names the fix, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def _number(text: str, kind: type[int] | type[float]) -> int | float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _positive_int(text: str) -> int:
    value = int(_number(text, int))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _ratio(text: str) -> float:
    value = float(_number(text, float))
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _port(text: str) -> int:
    value = int(_number(text, int))
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"must be a TCP port (1-65535), got {text}")
    return value


def _stream_list(text: str) -> tuple[str, ...]:
    from freshlake.streams import DEMO_STREAMS

    known = [s.name for s in DEMO_STREAMS]
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown stream(s) {', '.join(unknown) or '(none)'}; choose from {','.join(known)}"
        )
    return names


def _stream_name(text: str) -> str:
    from freshlake.streams import DEMO_STREAMS

    known = [s.name for s in DEMO_STREAMS if s.document is not None]
    if text not in known:
        raise argparse.ArgumentTypeError(
            f"unknown or unembedded stream {text!r}; choose from {','.join(known)}"
        )
    return text


def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


def cmd_broker(args: argparse.Namespace) -> int:
    from freshlake.kafka.broker import start_broker
    from freshlake.kafka.topics import ensure_topics
    from freshlake.settings import data_paths
    from freshlake.streams import demo_topics

    paths = data_paths().ensure()
    with start_broker(port=args.port, log_path=paths.logs / "broker.log") as broker:
        if not args.no_topics:
            topics = {t: args.partitions for t in demo_topics()}
            ensure_topics({"bootstrap.servers": broker.bootstrap}, topics=topics)
        print(f"bootstrap={broker.bootstrap}", flush=True)
        wait_for_signal()
    return 0


def cmd_produce_demo(args: argparse.Namespace) -> int:
    from freshlake.demo.producer import produce_demo
    from freshlake.kafka.connection import client_config

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    rate = args.rate if args.count or args.rate else 5.0  # neither given: a gentle default
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
    print(" ".join(f"{topic}={n}" for topic, n in sorted(sent.items())), flush=True)
    return 0


def cmd_embedder(args: argparse.Namespace) -> int:
    from freshlake.embed.cli import run_embedder

    return run_embedder(
        host=args.host,
        port=args.port,
        precision=args.precision,
        batch_size=args.batch_size,
        device=args.device,
    )


def cmd_search(args: argparse.Namespace) -> int:
    from freshlake.search_cli import run_search

    return run_search(
        query=args.query,
        streams=args.stream,
        mode=args.mode,
        k=args.k,
        where=args.where,
        as_json=args.json,
    )


def cmd_status(args: argparse.Namespace) -> int:
    from freshlake.ops_cli import run_status

    return run_status(as_json=args.json, bootstrap=args.bootstrap)


def cmd_trace(args: argparse.Namespace) -> int:
    from freshlake.ops_cli import run_trace

    return run_trace(target=args.target, stream=args.stream, bootstrap=args.bootstrap)


def cmd_alerts(args: argparse.Namespace) -> int:
    from freshlake.alerts.cli import run_alerts_test

    return run_alerts_test()


def cmd_dev(args: argparse.Namespace) -> int:
    from freshlake.dev import run_dev

    return run_dev(
        ui_port=args.port,
        broker_port=args.broker_port,
        rate=args.rate,
        producer=not args.no_producer,
        workspace=args.workspace,
    )


def build_parser() -> argparse.ArgumentParser:
    from freshlake.streams import DEMO_STREAMS

    parser = _Parser(prog="freshlake", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    broker = sub.add_parser("broker", help="run the embedded Kafka-compatible broker (Tansu)")
    broker.add_argument("--port", type=_port, help="port on 127.0.0.1 (default: a free one)")
    broker.add_argument("--partitions", type=_positive_int, default=3, help="per demo topic")
    broker.add_argument("--no-topics", action="store_true", help="do not create the demo topics")
    broker.set_defaults(func=cmd_broker)

    produce = sub.add_parser("produce-demo", help="produce the flight-assistant demo events")
    produce.add_argument("--bootstrap", help="HOST:PORT (default: $KAFKA_BOOTSTRAP_SERVERS)")
    amount = produce.add_mutually_exclusive_group()
    amount.add_argument("--count", type=_positive_int, help="send N messages, then exit")
    amount.add_argument("--rate", type=float, help="messages per second until Ctrl-C (default 5)")
    produce.add_argument("--seed", type=int, default=42, help="same seed, same events")
    produce.add_argument("--bad-ratio", type=_ratio, default=0.0, help="share of malformed")
    produce.add_argument(
        "--streams",
        type=_stream_list,
        default=tuple(s.name for s in DEMO_STREAMS),
        help="comma-separated subset of " + ",".join(s.name for s in DEMO_STREAMS),
    )
    produce.add_argument("--partitions", type=_positive_int, help="for topics it creates")
    produce.set_defaults(func=cmd_produce_demo)

    embedder = sub.add_parser("embedder", help="serve the embedding model warm over HTTP")
    embedder.add_argument("--host", default="127.0.0.1", help="bind address")
    embedder.add_argument("--port", type=_port, default=8765, help="port (default 8765)")
    embedder.add_argument(
        "--precision",
        choices=("float32", "bfloat16"),
        default=None,
        help="default: float32 (see freshlake.embed.models)",
    )
    embedder.add_argument("--batch-size", type=_positive_int, default=64, help="encode batch")
    embedder.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    embedder.set_defaults(func=cmd_embedder)

    search = sub.add_parser("search", help="search the processed store")
    search.add_argument("query", help="what to look for, in words")
    search.add_argument(
        "--stream",
        action="append",
        type=_stream_name,
        help="stream to search (repeatable; default: every embedded stream)",
    )
    search.add_argument("--mode", choices=("vector", "fts", "hybrid"), default="hybrid")
    search.add_argument("--k", type=_positive_int, default=5, help="hits to return")
    search.add_argument("--where", help="SQL filter on the vector rows, e.g. \"status = 'cancelled'\"")
    search.add_argument("--json", action="store_true", help="one JSON document on stdout")
    search.set_defaults(func=cmd_search)

    status = sub.add_parser("status", help="per stream: offsets, lag, freshness; exit 1 if out of SLO")
    status.add_argument("--bootstrap", help="HOST:PORT (default: $KAFKA_BOOTSTRAP_SERVERS)")
    status.add_argument("--json", action="store_true", help="one JSON document on stdout")
    status.set_defaults(func=cmd_status)

    trace = sub.add_parser("trace", help="provenance of a chunk or key, back to its Kafka offset")
    trace.add_argument("target", help="a chunk id (stream:key:index) or a key (with --stream)")
    trace.add_argument("--stream", type=_stream_name, help="the stream of a bare key")
    trace.add_argument("--bootstrap", help="HOST:PORT to re-read the offset from (optional)")
    trace.set_defaults(func=cmd_trace)

    alerts = sub.add_parser("alerts", help="on-call alert targets (PagerDuty v2, Slack webhook)")
    alerts.add_argument("action", choices=("test",), help="test: send a trigger and a resolve")
    alerts.set_defaults(func=cmd_alerts)

    dev = sub.add_parser("dev", help="broker + demo producer + Dagster UI and daemon (make run)")
    dev.add_argument("--port", type=_port, default=3000, help="Dagster UI port")
    dev.add_argument("--broker-port", type=_port, help="embedded broker port (default: free)")
    dev.add_argument("--rate", type=float, default=5.0, help="demo events per second")
    dev.add_argument("--no-producer", action="store_true", help="do not run the demo producer")
    dev.add_argument("--workspace", default="workspace.yaml", help="Dagster workspace file")
    dev.set_defaults(func=cmd_dev)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:  # name the subcommand's help, not the top-level one
        subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        subparsers.choices[args.command].error(f"unrecognized arguments: {' '.join(extras)}")
    # freshlake's own logs at INFO; libraries (alembic, dagster, httpx...) only when they warn.
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except FreshlakeError as exc:
        print(f"freshlake {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
