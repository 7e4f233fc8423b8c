"""The flight-assistant example's streams, read through the loader like every entry point."""

from __future__ import annotations

from pathlib import Path

from freshlake.config import load_streams

EXAMPLE_FILE = Path(__file__).resolve().parent.parent / "examples" / "flight_assistant" / "streams.yaml"
DEMO = load_streams(EXAMPLE_FILE)
DEMO_STREAMS = DEMO.streams


def demo_stream(name: str):
    return DEMO.stream(name)
