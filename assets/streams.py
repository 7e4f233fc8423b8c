"""The asset factory: one stream spec in, that stream's assets, job and sensor out."""

from __future__ import annotations

import dagster as dg

from assets.raw import build_raw_assets, quarantine_key, raw_key
from assets.topics import topic_asset_spec
from freshlake.streams import StreamSpec
from sensors.offsets import STREAM_TAG, build_offsets_sensor


def build_stream_definitions(spec: StreamSpec) -> dg.Definitions:
    raw = build_raw_assets(spec)
    job = dg.define_asset_job(
        name=f"{spec.name}_ingest",
        selection=dg.AssetSelection.assets(raw_key(spec), quarantine_key(spec)),
        tags={STREAM_TAG: spec.name},
        executor_def=dg.in_process_executor,
        description=f"Kafka `{spec.topic}` -> {spec.name} raw (and quarantine).",
    )
    return dg.Definitions(
        assets=[topic_asset_spec(spec), raw],
        jobs=[job],
        sensors=[build_offsets_sensor(spec, job=job)],
    )
