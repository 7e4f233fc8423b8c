"""What every command shares: one-line usage errors, value checks, and the `--streams` option.

Public so that example entry points (`python -m examples.flight_assistant.producer`) parse their
flags the same way.
"""

from __future__ import annotations

import argparse
import signal
import threading
from typing import NoReturn

from freshlake.config import STREAMS_ENV, StreamsConfig, load_streams
from freshlake.dev import NO_BROKER
from freshlake.errors import FreshlakeConfigError


class UsageError(FreshlakeConfigError):
    """A mistake in what was typed or in the streams file: the command exits 2, not 1."""


class StreamsConfigError(UsageError):
    """The streams file is missing or invalid, or a stream named on the command line is not in it."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line that names the fix, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def _number(text: str, kind: type[int] | type[float]) -> int | float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def positive_int(text: str) -> int:
    value = int(_number(text, int))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(_number(text, float))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def ratio(text: str) -> float:
    value = float(_number(text, float))
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def tcp_port(text: str) -> int:
    value = int(_number(text, int))
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"must be a TCP port (1-65535), got {text}")
    return value


def add_streams_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--streams",
        metavar="FILE",
        help=f"streams file or folder (default: ${STREAMS_ENV}, else ./streams.yaml)",
    )


def load(args: argparse.Namespace) -> StreamsConfig:
    """The streams of `--streams` / `$FRESHLAKE_STREAMS` / ./streams.yaml; errors exit 2."""
    try:
        return load_streams(args.streams)
    except FreshlakeConfigError as exc:
        raise StreamsConfigError(str(exc)) from None


def stream_names(config: StreamsConfig, names: list[str] | None, *, embedded: bool = False) -> list[str]:
    """`names` checked against `config` (embedded ones only when `embedded`); an unknown one exits 2."""
    choices = config.document_streams if embedded else config.streams
    known = [s.name for s in choices]
    unknown = [n for n in names or () if n not in known]
    if unknown:
        kind = "embedded stream" if embedded else "stream"
        msg = (
            f"unknown {kind} {', '.join(map(repr, unknown))} in {config.path}: "
            f"choose from {', '.join(known) or '(none)'}"
        )
        raise StreamsConfigError(msg)
    return list(names or ())


def stop_on_signal() -> threading.Event:
    """An event set by SIGINT or SIGTERM, for loops that finish their work before they stop."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    stop_on_signal().wait()


def kafka_config(bootstrap: str | None) -> dict[str, object]:
    """librdkafka settings from `--bootstrap`, `$KAFKA_*` or the running `freshlake dev`; without
    any of them one message that says how to get one (never "start the broker", "unset it")."""
    from freshlake.kafka.connection import client_config
    from freshlake.settings import bootstrap_servers

    if not bootstrap and bootstrap_servers() is None:
        msg = f"no Kafka address and no running `freshlake dev` here: {NO_BROKER}"
        raise FreshlakeConfigError(msg)
    return client_config(bootstrap=bootstrap)


def use_running_dev() -> None:
    """Take the addresses of the `freshlake dev` on this `$FRESHLAKE_HOME` for every variable
    that is unset (broker, warm embedder, DAGSTER_HOME, streams file)."""
    import os

    from freshlake.dev import apply_dev_state
    from freshlake.settings import data_paths

    apply_dev_state(os.environ, home=data_paths().home)
