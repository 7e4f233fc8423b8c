"""Usage mistakes end in one line that says what to do, not a stack trace or a usage dump; every
command that reads streams reads them through the loader, and a streams-file mistake exits 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.demo_streams import EXAMPLE_FILE

ROOT = Path(__file__).resolve().parents[2]
STREAM_COMMANDS = {
    "broker": [],
    "dev": [],
    "search": ["refund"],
    "status": [],
    "trace": ["flights:UA1:0"],
    "alerts": ["test"],
}
BAD_STREAMS = "streams:\n  - name: orders\n    key_field: order_idd\n    fields: {order_id: string}\n"


def freshlake(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "FRESHLAKE_STREAMS"}
    return subprocess.run(
        [sys.executable, "-m", "freshlake.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**environment, **(env or {})},
    )


def producer(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "examples.flight_assistant.producer", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.parametrize(
    "command", ["init", "broker", "dev", "embedder", "search", "status", "trace", "alerts"]
)
def test_every_command_has_help(command: str) -> None:
    result = freshlake(command, "--help")
    assert result.returncode == 0
    assert "usage: freshlake " + command in result.stdout


def test_produce_demo_is_the_example_not_the_library() -> None:
    assert freshlake("produce-demo", "--count", "1").returncode == 2
    result = producer("--help")
    assert result.returncode == 0 and "--bad-ratio" in result.stdout and "--streams" in result.stdout


def test_unknown_option_is_one_line_naming_help() -> None:
    result = freshlake("status", "--colour", "red")
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "--colour" in line and "freshlake status --help" in line


def test_bad_values_are_explained() -> None:
    assert "between 0 and 1" in one_line(producer("--bad-ratio", "2").stderr)
    assert "unknown stream" in one_line(producer("--streams", "ships").stderr)
    assert "TCP port" in one_line(freshlake("broker", "--port", "99999").stderr)


@pytest.mark.parametrize("command", sorted(STREAM_COMMANDS))
def test_a_missing_streams_file_is_the_loaders_message_and_exit_2(command: str, tmp_path) -> None:
    result = freshlake(command, *STREAM_COMMANDS[command], cwd=tmp_path)  # no ./streams.yaml here
    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr)
    assert line.startswith(f"freshlake {command}: ") and str(tmp_path / "streams.yaml") in line
    assert "FRESHLAKE_STREAMS" in line and "freshlake init" in line


@pytest.mark.parametrize("how", ["option", "env"])
@pytest.mark.parametrize("command", sorted(STREAM_COMMANDS))
def test_an_invalid_streams_file_names_file_stream_and_field(command: str, how: str, tmp_path) -> None:
    bad = tmp_path / "mine.yaml"
    bad.write_text(BAD_STREAMS)
    args, env = ([*STREAM_COMMANDS[command], "--streams", str(bad)], None)
    if how == "env":
        args, env = (STREAM_COMMANDS[command], {"FRESHLAKE_STREAMS": str(bad)})
    result = freshlake(command, *args, env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"freshlake {command}: the streams configuration has")
    assert f"{bad}, stream 'orders', field 'key_field'" in result.stderr


def test_a_stream_not_in_the_file_exits_2_naming_the_choices() -> None:
    result = freshlake("search", "refund", "--stream", "ships", "--streams", str(EXAMPLE_FILE))
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "'ships'" in line and "flights, bookings, policies" in line and "feedback" not in line
    result = freshlake("status", "--stream", "ships", env={"FRESHLAKE_STREAMS": str(EXAMPLE_FILE)})
    assert result.returncode == 2 and "'ships'" in one_line(result.stderr)


def test_a_bad_producer_command_exits_2_before_anything_starts(tmp_path) -> None:
    args = ("dev", "--streams", str(EXAMPLE_FILE), "--workspace", str(ROOT / "workspace.yaml"))
    result = freshlake(
        *args, "--producer", "no-such-producer --rate 5", env={"FRESHLAKE_HOME": str(tmp_path)}
    )
    assert result.returncode == 2
    assert "'no-such-producer'" in one_line(result.stderr)
    result = freshlake(*args, "--producer", "python -c 'unclosed", env={"FRESHLAKE_HOME": str(tmp_path)})
    assert result.returncode == 2 and "not a command line" in one_line(result.stderr)
    assert not (tmp_path / "logs").exists()  # refused before the broker or Dagster started


def test_unreachable_bootstrap_is_one_line_naming_the_variable() -> None:
    result = freshlake(
        "status",
        "--streams",
        str(EXAMPLE_FILE),
        env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "KAFKA_SECURITY_PROTOCOL": "nonsense"},
    )
    assert result.returncode == 1
    assert "KAFKA_SECURITY_PROTOCOL" in one_line(result.stderr)
    result = producer("--count", "1", env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert "127.0.0.1:1" in line and "KAFKA_BOOTSTRAP_SERVERS" in line


def test_missing_bootstrap_says_how_to_get_one() -> None:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    result = subprocess.run(
        [sys.executable, "-m", "examples.flight_assistant.producer", "--count", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 1
    assert "KAFKA_BOOTSTRAP_SERVERS" in one_line(result.stderr)


@pytest.mark.integration
def test_busy_port_is_one_line(broker) -> None:
    result = freshlake("broker", "--port", str(broker.port), "--no-topics")
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert f"port {broker.port}" in line and "busy" in line


@pytest.mark.integration
def test_broker_creates_the_topics_of_the_streams_file(tmp_path) -> None:
    """`freshlake broker --streams FILE`: that file's topics exist once it prints its address."""
    import signal

    from freshlake.kafka.topics import existing_topics

    mine = tmp_path / "mine.yaml"
    mine.write_text(
        "streams:\n  - name: stock\n    topic: stock-levels\n    key_field: sku\n    partitions: 2\n"
        "    event_time_field: at\n    fields: {sku: string, at: timestamp}\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "freshlake.cli", "broker", "--streams", str(mine)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "FRESHLAKE_HOME": str(tmp_path / "home")},
    )
    try:
        first = process.stdout.readline()  # type: ignore[union-attr]
        assert first.startswith("bootstrap="), first
        topics = existing_topics({"bootstrap.servers": first.strip().split("=", 1)[1]})
        assert topics.get("stock-levels") == 2, topics
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
