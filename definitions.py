"""The one code location: every stream's assets, checks and sensors, built from its spec."""

from __future__ import annotations

import dagster as dg

from assets.feedback import build_feedback_definitions
from assets.maintenance import build_maintenance_definitions
from assets.streams import build_stream_definitions
from freshlake.streams import DEMO_STREAMS
from resources.embedder import EmbedderResource
from resources.kafka import KafkaResource
from resources.storage import StorageResource
from sensors.alerts import build_alert_sensor


def build_definitions(*, model_code: str) -> dg.Definitions:
    streams = [build_stream_definitions(spec, model_code=model_code) for spec in DEMO_STREAMS]
    watched = [
        key
        for stream in streams
        for asset in stream.assets or ()
        if isinstance(asset, dg.AssetsDefinition)
        for key in asset.keys
        if asset.specs_by_key[key].freshness_policy is not None
    ]
    checks = [key for stream in streams for check in stream.asset_checks or () for key in check.check_keys]
    return dg.Definitions.merge(
        *streams,
        build_maintenance_definitions(DEMO_STREAMS),
        build_feedback_definitions(DEMO_STREAMS),
        dg.Definitions(sensors=[build_alert_sensor(asset_keys=watched, check_keys=checks)]),
        dg.Definitions(
            resources={
                "kafka": KafkaResource(),
                "storage": StorageResource(),
                "embedder": EmbedderResource(),
            }
        ),
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Built when Dagster loads the code location (not at import): the embedding precision in
    the environment is part of the embeddings' code version."""
    from freshlake.embed.factory import model_code_from_env

    return build_definitions(model_code=model_code_from_env())
