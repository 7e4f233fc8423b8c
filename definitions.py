"""The one code location: every stream's assets, checks and sensors, built from its spec."""

from __future__ import annotations

import dagster as dg

from assets.maintenance import build_maintenance_definitions
from assets.streams import build_stream_definitions
from freshlake.streams import DEMO_STREAMS
from resources.embedder import EmbedderResource
from resources.kafka import KafkaResource
from resources.storage import StorageResource

defs = dg.Definitions.merge(
    *(build_stream_definitions(spec) for spec in DEMO_STREAMS),
    build_maintenance_definitions(DEMO_STREAMS),
    dg.Definitions(
        resources={
            "kafka": KafkaResource(),
            "storage": StorageResource(),
            "embedder": EmbedderResource(),
        }
    ),
)
