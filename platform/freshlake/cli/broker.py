"""`freshlake broker`: the embedded Kafka-compatible broker (Tansu), with the streams' topics."""

from __future__ import annotations

import argparse

from freshlake.cli.args import add_streams_option, load, positive_int, tcp_port, wait_for_signal


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("broker", help="run the embedded Kafka-compatible broker (Tansu)")
    parser.add_argument("--port", type=tcp_port, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument(
        "--partitions", type=positive_int, help="per topic (default: each stream's `partitions`)"
    )
    parser.add_argument("--no-topics", action="store_true", help="create no topics (no streams file read)")
    add_streams_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from freshlake.kafka.broker import start_broker
    from freshlake.kafka.topics import ensure_topics
    from freshlake.settings import data_paths

    topics = {} if args.no_topics else load(args).topics  # a bad file fails before the broker starts
    if args.partitions:
        topics = dict.fromkeys(topics, args.partitions)
    paths = data_paths().ensure()
    with start_broker(port=args.port, log_path=paths.logs / "broker.log", data_dir=paths.broker) as broker:
        if topics:
            ensure_topics({"bootstrap.servers": broker.bootstrap}, topics=topics)
        print(f"bootstrap={broker.bootstrap}", flush=True)
        wait_for_signal()
    return 0
