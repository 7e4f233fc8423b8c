"""Interim: the demo world's specs, read from the example's streams file (moves with the demo)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from freshlake.config import load_streams
from freshlake.streams import StreamSpec

EXAMPLE_FILE = Path(__file__).resolve().parents[3] / "examples" / "flight_assistant" / "streams.yaml"


@cache
def stream_by_name(name: str) -> StreamSpec:
    return load_streams(EXAMPLE_FILE).stream(name)
