"""Usage mistakes end in one line that says what to do, not a stack trace or a usage dump."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def freshlake(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "freshlake.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.parametrize("command", ["broker", "produce-demo", "dev"])
def test_every_command_has_help(command: str) -> None:
    result = freshlake(command, "--help")
    assert result.returncode == 0
    assert "usage: freshlake " + command in result.stdout


def test_unknown_option_is_one_line_naming_help() -> None:
    result = freshlake("produce-demo", "--colour", "red")
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "--colour" in line and "freshlake produce-demo --help" in line


def test_bad_values_are_explained() -> None:
    assert "between 0 and 1" in one_line(freshlake("produce-demo", "--bad-ratio", "2").stderr)
    assert "unknown stream" in one_line(freshlake("produce-demo", "--streams", "ships").stderr)
    assert "TCP port" in one_line(freshlake("broker", "--port", "99999").stderr)


def test_unreachable_bootstrap_is_one_line_naming_the_variable() -> None:
    result = freshlake("produce-demo", "--count", "1", env={"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert "127.0.0.1:1" in line and "KAFKA_BOOTSTRAP_SERVERS" in line


def test_missing_bootstrap_says_how_to_get_one() -> None:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    result = subprocess.run(
        [sys.executable, "-m", "freshlake.cli", "produce-demo", "--count", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 1
    assert "KAFKA_BOOTSTRAP_SERVERS" in one_line(result.stderr)


@pytest.mark.integration
def test_busy_port_is_one_line(broker) -> None:
    result = freshlake("broker", "--port", str(broker.port))
    assert result.returncode == 1
    line = one_line(result.stderr)
    assert f"port {broker.port}" in line and "busy" in line
