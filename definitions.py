"""This checkout's code location: the streams of `$FRESHLAKE_STREAMS`, else the flight-assistant
example, built when Dagster loads the location (a config mistake shows in the UI as a load error)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

EXAMPLE = Path(__file__).parent / "examples" / "flight_assistant" / "streams.yaml"


@dg.definitions
def defs() -> dg.Definitions:
    from freshlake.components.definitions import definitions_from_file

    return definitions_from_file(default=str(EXAMPLE))
