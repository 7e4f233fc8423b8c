"""`kafka/<topic>`: the topics as external assets, so lineage starts where the data does."""

from __future__ import annotations

import dagster as dg

from freshlake.assets.keys import topic_key
from freshlake.streams import StreamSpec


def topic_asset_spec(spec: StreamSpec) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=topic_key(spec),
        group_name=spec.name,
        description=f"Kafka topic `{spec.topic}` ({spec.format}). {spec.description}".strip(),
        kinds={"kafka"},
        metadata={"topic": spec.topic, "format": spec.format, "key_field": spec.key_field},
    )
