"""`freshlake dev`: broker, warm embedder, Dagster UI and daemon, and an optional producer."""

from __future__ import annotations

import argparse
import os
import shlex
import shutil

from freshlake.cli.args import UsageError, add_streams_option, load, tcp_port

PRODUCER_ENV = "FRESHLAKE_PRODUCER"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("dev", help="broker + Dagster UI and daemon (+ a producer) on this machine")
    parser.add_argument("--port", type=tcp_port, default=3000, help="Dagster UI port")
    parser.add_argument("--broker-port", type=tcp_port, help="embedded broker port (default: free)")
    parser.add_argument("--workspace", default="workspace.yaml", help="Dagster workspace file")
    parser.add_argument(
        "--producer",
        metavar="CMD",
        help=f"a command to start once the broker is up, with KAFKA_BOOTSTRAP_SERVERS set, "
        f"stopped at Ctrl-C (default: ${PRODUCER_ENV})",
    )
    parser.add_argument("--no-producer", action="store_true", help="start no producer, whatever is set")
    parser.add_argument(
        "--profile",
        choices=("embedded", "prod"),
        default=os.environ.get("FRESHLAKE_PROFILE") or "embedded",
        help="embedded: durable local broker, SQLite Dagster, local disk; prod: SASL_SSL broker on "
        "durable storage, Postgres-backed Dagster, Delta/LanceDB on S3 (loopback), token-guarded "
        "embedder (default: $FRESHLAKE_PROFILE, else embedded)",
    )
    add_streams_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from freshlake.dev import run_dev

    command = None if args.no_producer else (args.producer or os.environ.get(PRODUCER_ENV) or None)
    producer = split_command(command) if command else None
    return run_dev(
        streams=load(args),
        ui_port=args.port,
        broker_port=args.broker_port,
        producer=producer,
        workspace=args.workspace,
        profile=args.profile,
    )


def split_command(command: str) -> list[str]:
    """The argv of a producer command line, split as a shell would (it is not run by one)."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        argv, why = [], str(exc)
    else:
        why = "it is empty"
    if not argv:
        msg = f"--producer {command!r} is not a command line ({why}): pass it as one quoted argument"
        raise UsageError(msg)
    if shutil.which(argv[0]) is None:
        msg = f"--producer {command!r}: no program {argv[0]!r} here or on PATH; give its path"
        raise UsageError(msg)
    return argv
