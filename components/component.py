"""The Dagster-native form: a Component type whose attributes point at the user's streams file,
the way dagster-sling's component points at a `replication.yaml` the user owns.

    # defs/streams/defs.yaml
    type: freshlake.components.FreshlakeStreams
    attributes:
      streams: streams.yaml        # relative to this defs.yaml; a file or a folder of them
"""

from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from freshlake.components.definitions import build_definitions


@dataclass
class FreshlakeStreams(dg.Component, dg.Resolvable):
    """Every stream of a freshlake streams file: assets, checks, sensors, jobs and resources.

    Args:
        streams: the streams file or folder, relative to the component's `defs.yaml`.
        model_code: the vector space (model@precision); empty reads it from the environment.
    """

    streams: str = "streams.yaml"
    model_code: str = ""

    def streams_path(self, context: dg.ComponentLoadContext) -> Path:
        path = Path(self.streams).expanduser()
        return path if path.is_absolute() else context.path / path

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        from freshlake.config import load_streams

        specs = load_streams(self.streams_path(context)).streams
        return build_definitions(streams=specs, model_code=self.model_code or None)
