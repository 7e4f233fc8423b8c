"""`<stream>_lag`: evaluates the lag and quarantine checks every ~30 s, whether or not a run happens.

The evaluations are returned as `SensorResult(asset_events=[AssetCheckEvaluation, ...])`; the
sensor daemon records them with `instance.report_runless_asset_event`. No run is launched, so a
tick costs one watermark read and two small table scans instead of a run process (~4.5 s), and
the checks keep reporting while the stream is idle or its runs are failing, which is exactly
when they matter.
"""

from __future__ import annotations

import dagster as dg

from freshlake.assets.checks import lag_evaluations, measure, quarantine_evaluations
from freshlake.resources.kafka import KafkaResource
from freshlake.resources.storage import StorageResource
from freshlake.streams import StreamSpec


def build_lag_sensor(spec: StreamSpec, *, interval_seconds: int = 30) -> dg.SensorDefinition:
    @dg.sensor(
        name=f"{spec.name}_lag",
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Reports `{spec.name}` lag and quarantine checks every {interval_seconds}s.",
    )
    def _lag(context: dg.SensorEvaluationContext, kafka: KafkaResource, storage: StorageResource):
        return evaluate(spec, kafka=kafka, storage=storage)

    return _lag


def evaluate(
    spec: StreamSpec, *, kafka: KafkaResource, storage: StorageResource, now=None
) -> dg.SensorResult:
    lag = measure(spec, kafka=kafka, storage=storage, now=now)
    evaluations = {**lag_evaluations(spec, lag), **quarantine_evaluations(spec, storage=storage, now=now)}
    events = [
        dg.AssetCheckEvaluation(asset_key=key.asset_key, check_name=key.name, blocking=False, **kwargs)
        for key, kwargs in evaluations.items()
    ]
    return dg.SensorResult(asset_events=events)
