"""`freshlake status`: per stream, offsets, lag and SLO state; exit 1 when any stream fails its SLO.

Reads the stores from `store_roots()` (`FRESHLAKE_HOME`, `FRESHLAKE_DELTA_URI`,
`FRESHLAKE_LANCE_URI`) and Kafka from `--bootstrap`, `KAFKA_*`, or the running `freshlake dev`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime

from freshlake.cli.args import add_streams_option, load, stream_names
from freshlake.streams import StreamSpec


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("status", help="per stream: offsets, lag, freshness; exit 1 if out of SLO")
    parser.add_argument("--bootstrap", help="HOST:PORT (default: $KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--stream", action="append", metavar="NAME", help="only this stream (repeatable)")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    add_streams_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load(args)
    wanted = stream_names(config, args.stream)
    specs = [s for s in config.streams if not wanted or s.name in wanted]
    return run_status(as_json=args.json, bootstrap=args.bootstrap, specs=specs)


def run_status(
    *,
    as_json: bool,
    specs: Sequence[StreamSpec],
    bootstrap: str | None = None,
    now: datetime | None = None,
) -> int:
    """Print each stream's lag and SLO state; 1 when any fails its SLO."""
    from freshlake.cli.args import kafka_config
    from freshlake.settings import storage_options, store_roots
    from freshlake.status import exit_code, last_runs_from_dagster, render, render_json, status_report

    delta_root, lance_root = store_roots()
    statuses = status_report(
        kafka_config=kafka_config(bootstrap),
        delta_root=delta_root,
        lance_root=lance_root,
        storage_options=storage_options() or None,
        specs=specs,
        now=now,
        last_runs=last_runs_from_dagster(specs),
    )
    print(render_json(statuses) if as_json else render(statuses, colour=sys.stdout.isatty()))
    return exit_code(statuses)
