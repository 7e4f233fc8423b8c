"""Asset keys of a stream's layers, in one place so every module names them the same way."""

import dagster as dg

from freshlake.streams import StreamSpec


def topic_key(spec: StreamSpec) -> dg.AssetKey:
    return dg.AssetKey(["kafka", spec.topic])


def raw_key(spec: StreamSpec) -> dg.AssetKey:
    return dg.AssetKey([spec.name, "raw"])


def quarantine_key(spec: StreamSpec) -> dg.AssetKey:
    return dg.AssetKey([spec.name, "quarantine"])


def current_key(spec: StreamSpec) -> dg.AssetKey:
    return dg.AssetKey([spec.name, "current"])


def embeddings_key(spec: StreamSpec) -> dg.AssetKey:
    return dg.AssetKey([spec.name, "embeddings"])


def finetuning_key(spec: StreamSpec) -> dg.AssetKey:
    return dg.AssetKey([spec.name, "finetuning"])
