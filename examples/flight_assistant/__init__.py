"""The flight-assistant example: its streams file and a deterministic event generator for it.

`streams.yaml` is the configuration freshlake reads (`make run` points FRESHLAKE_STREAMS at it);
`world.py` and `producer.py` make events that fit it (`python -m examples.flight_assistant.producer`).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from freshlake.config import StreamsConfig, load_streams
from freshlake.streams import StreamSpec

STREAMS_FILE = Path(__file__).resolve().parent / "streams.yaml"


@cache
def example_streams() -> StreamsConfig:
    """The example's streams, read through the loader like every entry point."""
    return load_streams(STREAMS_FILE)


def stream_by_name(name: str) -> StreamSpec:
    return example_streams().stream(name)
