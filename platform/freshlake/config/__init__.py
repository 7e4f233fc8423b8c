"""Streams are configuration: a YAML file (or folder) the user owns, validated at load."""

from freshlake.config.load import STREAMS_ENV, StreamsConfig, load_streams, streams_path

__all__ = ["STREAMS_ENV", "StreamsConfig", "load_streams", "streams_path"]
