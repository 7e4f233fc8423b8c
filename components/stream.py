"""The asset factory: one stream spec in, that stream's assets, job and sensor out."""

from __future__ import annotations

import dagster as dg

from freshlake.assets.checks import build_lag_checks
from freshlake.assets.keys import current_key, embeddings_key, quarantine_key, raw_key
from freshlake.assets.processed import build_current_asset, build_embeddings_asset
from freshlake.assets.raw import build_raw_assets
from freshlake.assets.streaming import build_streaming_job
from freshlake.assets.topics import topic_asset_spec
from freshlake.sensors.lag import build_lag_sensor
from freshlake.sensors.offsets import STREAM_TAG, build_offsets_sensor
from freshlake.streams import StreamSpec


def build_stream_definitions(spec: StreamSpec, *, model_code: str | None = None) -> dg.Definitions:
    """`model_code` names the vector space the embeddings are built in (model@precision)."""
    assets = [build_raw_assets(spec), build_current_asset(spec)]
    keys = [raw_key(spec), quarantine_key(spec), current_key(spec)]
    if spec.document is not None:
        assets.append(build_embeddings_asset(spec, model_code=model_code))
        keys.append(embeddings_key(spec))
    # One run serves the whole chain: raw -> current -> embeddings, in process.
    job = dg.define_asset_job(
        name=f"{spec.name}_ingest",
        selection=dg.AssetSelection.assets(*keys),
        tags={STREAM_TAG: spec.name},
        executor_def=dg.in_process_executor,
        description=f"Kafka `{spec.topic}` -> {spec.name} raw -> current -> embeddings.",
    )
    # Streaming mode: the offsets sensor keeps one long-lived run of this job going instead; the
    # ingest job stays for manual runs (and serves `per_batch` streams).
    streaming = build_streaming_job(spec)
    return dg.Definitions(
        assets=[topic_asset_spec(spec), *assets],
        asset_checks=build_lag_checks(spec),  # run in every ingest run, and by the lag sensor
        jobs=[job, streaming],
        sensors=[build_offsets_sensor(spec, job=job, streaming_job=streaming), build_lag_sensor(spec)],
    )
