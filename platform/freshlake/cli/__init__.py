"""The `freshlake` command: one module per subcommand. A usage mistake ends in one line that says
what to do; a streams-file mistake prints the loader's message. Both exit 2; a failure of the work
itself (broker unreachable, SLO failed) exits 1."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from freshlake.cli import alerts, broker, dev, embedder, init, reset, search, serve, status, trace
from freshlake.cli.args import Parser, UsageError, use_running_dev
from freshlake.errors import FreshlakeError

log = logging.getLogger("freshlake")

COMMANDS = (init, broker, dev, embedder, search, serve, status, trace, alerts, reset)
# Commands that read the running stack: they find what `freshlake dev` started (dev.json).
CLIENT_COMMANDS = frozenset({"search", "serve", "status", "trace", "alerts"})


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="freshlake", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in COMMANDS:
        command.register(sub)
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
        if args.command in CLIENT_COMMANDS:
            use_running_dev()
        return func(args)
    except UsageError as exc:
        print(f"freshlake {args.command}: {exc}", file=sys.stderr)
        return 2
    except FreshlakeError as exc:
        print(f"freshlake {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
