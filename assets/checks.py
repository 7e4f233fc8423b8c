"""Lag checks per stream: consumer lag (records) and event-time lag (seconds), from the spec's SLO.

One op measures both (one watermark read), so they run in every ingest run after the assets they
check; `sensors/lag.py` reports the same evaluations every ~30 s when no run happens.
"""

from datetime import datetime

import dagster as dg

from freshlake.assets.keys import embeddings_key, raw_key
from freshlake.lag import StreamLag, judge
from freshlake.resources.kafka import KafkaResource
from freshlake.resources.storage import StorageResource
from freshlake.streams import StreamSpec

CONSUMER_LAG = "consumer_lag"
EVENT_TIME_LAG = "event_time_lag"


def consumer_lag_check_key(spec: StreamSpec) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(raw_key(spec), CONSUMER_LAG)


def event_time_lag_check_key(spec: StreamSpec) -> dg.AssetCheckKey:
    """On the searchable asset: embeddings, or raw for a stream that is not embedded."""
    target = embeddings_key(spec) if spec.document is not None else raw_key(spec)
    return dg.AssetCheckKey(target, EVENT_TIME_LAG)


def measure(spec: StreamSpec, *, kafka: KafkaResource, storage: StorageResource, now: datetime | None = None):
    from freshlake.lag import measure_lag

    return measure_lag(
        spec,
        kafka_config=kafka.client_config(),
        raw_uri=storage.delta_uri(spec, "raw"),
        current_uri=storage.delta_uri(spec, "current"),
        lance_uri=storage.lance_uri(),
        storage_options=storage.storage_options,
        now=now,
    )


def lag_evaluations(spec: StreamSpec, lag: StreamLag) -> dict[dg.AssetCheckKey, dict]:
    """Check key -> AssetCheckResult / AssetCheckEvaluation keyword arguments (passed, severity,
    metadata, description), so a run and the sensor report identical results."""
    slo = spec.freshness
    verdict = judge(lag, spec)
    common = {"measured_at": dg.MetadataValue.timestamp(lag.measured_at)}
    consumer_meta = {
        **common,
        "consumer_lag": lag.consumer_lag if lag.consumer_lag is not None else -1,
        "watermark": lag.watermark_total,
        "committed": lag.committed_total,
        "max_consumer_lag": slo.max_consumer_lag,
    }
    seconds = lag.event_time_lag_seconds
    event_meta = {
        **common,
        "event_time_lag_seconds": round(seconds, 3) if seconds is not None else -1.0,
        "warn_after_seconds": slo.warn_after_seconds,
        "fail_after_seconds": slo.fail_after_seconds,
        "event_time_source": lag.event_time_source,
    }
    if lag.newest_event_time is not None:
        event_meta["newest_event_time"] = dg.MetadataValue.timestamp(lag.newest_event_time)
    if lag.error is not None:
        consumer_desc = f"lag unknown, Kafka unreadable: {lag.error}"
    elif lag.consumer_lag is None:
        consumer_desc = "lag unknown"
    else:
        consumer_desc = f"{lag.consumer_lag} records behind (max {slo.max_consumer_lag})"
    event_desc = (
        "no searchable data yet"
        if seconds is None
        else f"newest searchable event is {seconds:.0f}s old (warn {slo.warn_after_seconds}s, "
        f"fail {slo.fail_after_seconds}s)"
    )
    return {
        consumer_lag_check_key(spec): {
            "passed": verdict.consumer_lag != "FAIL",
            "severity": dg.AssetCheckSeverity.ERROR,
            "metadata": consumer_meta,
            "description": consumer_desc,
        },
        event_time_lag_check_key(spec): {
            "passed": verdict.event_time_lag not in ("WARN", "FAIL"),
            "severity": dg.AssetCheckSeverity.ERROR
            if verdict.event_time_lag == "FAIL"
            else dg.AssetCheckSeverity.WARN,
            "metadata": event_meta,
            "description": event_desc,
        },
    }


def build_lag_checks(spec: StreamSpec) -> list[dg.AssetChecksDefinition]:
    consumer, event = consumer_lag_check_key(spec), event_time_lag_check_key(spec)
    slo = spec.freshness

    @dg.multi_asset_check(
        name=f"{spec.name}_lag_checks",
        specs=[
            dg.AssetCheckSpec(
                name=CONSUMER_LAG,
                asset=consumer.asset_key,
                blocking=False,
                description=f"Kafka records not yet in raw; fails above {slo.max_consumer_lag}.",
            ),
            dg.AssetCheckSpec(
                name=EVENT_TIME_LAG,
                asset=event.asset_key,
                blocking=False,
                description=(
                    f"now - newest searchable event time; warns above {slo.warn_after_seconds}s, "
                    f"fails above {slo.fail_after_seconds}s."
                ),
            ),
        ],
        can_subset=True,
        op_tags={"freshlake/stream": spec.name},
    )
    def _lag_checks(context: dg.AssetCheckExecutionContext, kafka: KafkaResource, storage: StorageResource):
        results = lag_evaluations(spec, measure(spec, kafka=kafka, storage=storage))
        for key in context.selected_asset_check_keys:
            yield dg.AssetCheckResult(asset_key=key.asset_key, check_name=key.name, **results[key])

    return [_lag_checks]
