"""`freshlake trace`: the provenance of a chunk or key, back to its Kafka offset."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from freshlake.cli.args import add_streams_option, load, stream_names
from freshlake.streams import StreamSpec


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("trace", help="provenance of a chunk or key, back to its Kafka offset")
    parser.add_argument(
        "target",
        help="a chunk id (stream:key:index), or with --stream a key or a Kafka offset (p0@703: "
        "partition 0, offset 703); quarantined messages are found too, with the reason",
    )
    parser.add_argument("--stream", metavar="NAME", help="the stream of a bare key or offset")
    parser.add_argument("--bootstrap", help="HOST:PORT to re-read the offset from (optional)")
    add_streams_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load(args)
    stream_names(config, [args.stream] if args.stream else None)
    return run_trace(target=args.target, stream=args.stream, bootstrap=args.bootstrap, specs=config.streams)


def run_trace(
    *, target: str, stream: str | None, specs: Sequence[StreamSpec], bootstrap: str | None = None
) -> int:
    """Print the provenance chain of a chunk id or a stream key; 1 when nothing is found.

    Each Kafka offset is re-read from the broker to confirm it; without a reachable broker the
    chain still prints from Delta alone.
    """
    from freshlake.cli.args import kafka_config
    from freshlake.errors import FreshlakeConfigError
    from freshlake.settings import storage_options, store_roots
    from freshlake.trace import trace

    delta_root, lance_root = store_roots()
    try:
        kafka = kafka_config(bootstrap)
    except FreshlakeConfigError:
        kafka = None
    report = trace(
        chunk_id_or_key=target,
        stream=stream,
        delta_root=delta_root,
        lance_root=lance_root,
        storage_options=storage_options() or None,
        kafka_config=kafka,
        specs=specs,
    )
    print(report.render())
    return 0 if report.found else 1
