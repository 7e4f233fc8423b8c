"""Stream specs in, one `Definitions` out: every stream's assets, checks, jobs and sensors,
maintenance, the feedback datasets, the alert sensor and the resources they share."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from freshlake.assets.feedback import build_feedback_definitions
from freshlake.assets.maintenance import build_maintenance_definitions
from freshlake.assets.partitions import with_partition_starts
from freshlake.components.stream import build_stream_definitions
from freshlake.resources.embedder import EmbedderResource
from freshlake.resources.kafka import KafkaResource
from freshlake.resources.storage import StorageResource
from freshlake.sensors.alerts import build_alert_sensor
from freshlake.streams import StreamSpec


def build_definitions(*, streams: Sequence[StreamSpec], model_code: str | None = None) -> dg.Definitions:
    """`model_code` (model@precision) names the vector space; None reads it from the environment
    (`FRESHLAKE_EMBED_PRECISION`), so the code version follows the embedder's settings."""
    if model_code is None:
        from freshlake.embed.factory import model_code_from_env

        model_code = model_code_from_env()
    streams = with_partition_starts(streams, storage=StorageResource())  # the first data's partition
    per_stream = [build_stream_definitions(spec, model_code=model_code) for spec in streams]
    watched = [
        key
        for stream in per_stream
        for asset in stream.assets or ()
        if isinstance(asset, dg.AssetsDefinition)
        for key in asset.keys
        if asset.specs_by_key[key].freshness_policy is not None
    ]
    checks = [key for stream in per_stream for check in stream.asset_checks or () for key in check.check_keys]
    return dg.Definitions.merge(
        *per_stream,
        build_maintenance_definitions(streams),
        build_feedback_definitions(streams),
        dg.Definitions(sensors=[build_alert_sensor(asset_keys=watched, check_keys=checks)]),
        dg.Definitions(
            resources={
                "kafka": KafkaResource(),
                "storage": StorageResource(),
                "embedder": EmbedderResource(),
            }
        ),
    )


def definitions_from_file(path: str | None = None, *, default: str | None = None) -> dg.Definitions:
    """The definitions of the streams file `path` (else `$FRESHLAKE_STREAMS`, else `default`).

    A configuration mistake raises `FreshlakeConfigError` here, while the code location loads,
    so the Dagster UI shows the message instead of a run failing later.
    """
    from freshlake.config import load_streams

    return build_definitions(streams=load_streams(path, default=default).streams)
