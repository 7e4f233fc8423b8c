"""Checks per stream: consumer lag (records) and event-time lag (seconds), from the spec's SLO,
and quarantine (messages refused in the last window, severity by their share of it).

One op evaluates all three (one watermark read, two small scans), so they run in every ingest run
after the assets they check; streaming runs evaluate them between batches and `sensors/lag.py`
reports the same evaluations every ~30 s when no run happens (which is also how a quarantine
failure resolves: a whole window without a refused message).
"""

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import dagster as dg

from freshlake.assets.keys import embeddings_key, quarantine_key, raw_key
from freshlake.lag import StreamLag, judge
from freshlake.resources.kafka import KafkaResource
from freshlake.resources.storage import StorageResource
from freshlake.streams import StreamSpec

CONSUMER_LAG = "consumer_lag"
EVENT_TIME_LAG = "event_time_lag"
QUARANTINE = "quarantine"
# The window a quarantined message keeps the check failing, and the share of the window's
# messages from which it is an ERROR (below: a WARN). Read when evaluated, not at import.
QUARANTINE_WINDOW_ENV = "FRESHLAKE_QUARANTINE_WINDOW_SECONDS"
QUARANTINE_ERROR_SHARE_ENV = "FRESHLAKE_QUARANTINE_ERROR_SHARE"
DEFAULT_QUARANTINE_WINDOW_S = 900.0
DEFAULT_QUARANTINE_ERROR_SHARE = 0.01
LATEST_ERRORS = 5


def quarantine_check_key(spec: StreamSpec) -> dg.AssetCheckKey:
    return dg.AssetCheckKey(quarantine_key(spec), QUARANTINE)


def quarantine_window_seconds() -> float:
    return _env_number(QUARANTINE_WINDOW_ENV, DEFAULT_QUARANTINE_WINDOW_S)


def quarantine_error_share() -> float:
    return _env_number(QUARANTINE_ERROR_SHARE_ENV, DEFAULT_QUARANTINE_ERROR_SHARE)


def _env_number(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name) or default)
    except ValueError:
        return default
    return value if value > 0 else default


@dataclass(frozen=True, kw_only=True)
class QuarantineWindow:
    """What the quarantine table holds, total and in the window ending at `measured_at`."""

    measured_at: datetime
    window_seconds: float
    quarantined: int = 0  # refused messages ingested in the window
    ingested: int = 0  # raw rows ingested in the window
    total: int = 0  # rows in the quarantine table
    classes: dict[str, int] = field(default_factory=dict)  # error class -> count, in the window
    latest: list[dict] = field(default_factory=list)  # newest first: partition, offset, class, message

    @property
    def share(self) -> float:
        seen = self.quarantined + self.ingested
        return self.quarantined / seen if seen else 0.0


def measure_quarantine(
    spec: StreamSpec,
    *,
    storage: StorageResource,
    now: datetime | None = None,
    window_seconds: float | None = None,
) -> QuarantineWindow:
    """Count the window's refused and ingested messages (by `ingested_at`); missing tables are empty."""
    import pyarrow.compute as pc

    now = now or datetime.now(UTC)
    window = window_seconds or quarantine_window_seconds()
    cutoff = now - timedelta(seconds=window)
    base = QuarantineWindow(measured_at=now, window_seconds=window)
    quarantine = _dataset(storage.delta_uri(spec, "quarantine"), storage.storage_options)
    if quarantine is None:
        return base
    recent = pc.field("ingested_at") >= pc.scalar(cutoff)
    total = quarantine.count_rows()
    rows = quarantine.to_table(
        columns=[
            "kafka_partition",
            "kafka_offset",
            "kafka_key",
            "error_class",
            "error_message",
            "ingested_at",
        ],
        filter=recent,
    )
    if rows.num_rows == 0:
        return QuarantineWindow(**{**base.__dict__, "total": total})
    raw = _dataset(storage.delta_uri(spec, "raw"), storage.storage_options)
    ingested = raw.count_rows(filter=recent) if raw is not None else 0
    rows = rows.sort_by([("ingested_at", "descending"), ("kafka_offset", "descending")])
    classes: dict[str, int] = {}
    for name in rows.column("error_class").to_pylist():
        classes[name] = classes.get(name, 0) + 1
    latest = [
        {
            "partition": r["kafka_partition"],
            "offset": r["kafka_offset"],
            "error_class": r["error_class"],
            "error_message": _short(r["error_message"]),
        }
        for r in rows.slice(0, LATEST_ERRORS).to_pylist()
    ]
    return QuarantineWindow(
        **{
            **base.__dict__,
            "quarantined": rows.num_rows,
            "ingested": ingested,
            "total": total,
            "classes": dict(sorted(classes.items(), key=lambda kv: -kv[1])),
            "latest": latest,
        }
    )


def _dataset(uri: str, storage_options):
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        return DeltaTable(uri, storage_options=dict(storage_options or {})).to_pyarrow_dataset()
    except TableNotFoundError:
        return None


def _short(text: str | None, limit: int = 200) -> str:
    text = text or ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def quarantine_evaluation(spec: StreamSpec, window: QuarantineWindow) -> dict:
    """AssetCheckResult / AssetCheckEvaluation keyword arguments of the quarantine check."""
    threshold = quarantine_error_share()
    minutes = f"{window.window_seconds / 60:g} min"
    metadata: dict = {
        "measured_at": dg.MetadataValue.timestamp(window.measured_at),
        "quarantined_in_window": window.quarantined,
        "messages_in_window": window.quarantined + window.ingested,
        "quarantined_share_percent": round(100 * window.share, 3),
        "error_from_share_percent": round(100 * threshold, 3),
        "window_seconds": window.window_seconds,
        "rows_quarantined_total": window.total,
    }
    if window.classes:
        metadata["error_classes"] = ", ".join(f"{name} x{n}" for name, n in window.classes.items())
    if window.latest:
        newest = window.latest[0]
        metadata["latest_errors"] = dg.MetadataValue.md(
            "\n".join(
                f"- p{e['partition']}@{e['offset']} `{e['error_class']}`: {e['error_message']}"
                for e in window.latest
            )
        )
    if window.quarantined == 0:
        description = f"no message quarantined in the last {minutes} ({window.total} in the table)"
    else:
        level = "ERROR" if window.share >= threshold else "WARN"
        description = (
            f"{window.quarantined} of {window.quarantined + window.ingested} messages quarantined in the "
            f"last {minutes} ({100 * window.share:.2g} % of the window's messages: {level}, "
            f"ERROR from {100 * threshold:g} %): "
            f"{metadata['error_classes']}; latest p{newest['partition']}@{newest['offset']}: "
            f"{newest['error_message']} (`freshlake trace --stream {spec.name} p{newest['partition']}@"
            f"{newest['offset']}` shows it)"
        )
    return {
        "passed": window.quarantined == 0,
        "severity": dg.AssetCheckSeverity.ERROR if window.share >= threshold else dg.AssetCheckSeverity.WARN,
        "metadata": metadata,
        "description": description,
    }


def quarantine_evaluations(
    spec: StreamSpec, *, storage: StorageResource, now: datetime | None = None
) -> dict[dg.AssetCheckKey, dict]:
    return {
        quarantine_check_key(spec): quarantine_evaluation(
            spec, measure_quarantine(spec, storage=storage, now=now)
        )
    }


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
        "max_consumer_lag": slo.max_consumer_lag,
    }
    if lag.error is None:  # unknown values are left out, never a sentinel
        consumer_meta["watermark"] = lag.watermark_total
        consumer_meta["committed"] = lag.committed_total
    if lag.consumer_lag is not None:
        consumer_meta["consumer_lag"] = lag.consumer_lag
    seconds = lag.event_time_lag_seconds
    event_meta = {
        **common,
        "warn_after_seconds": slo.warn_after_seconds,
        "fail_after_seconds": slo.fail_after_seconds,
        "event_time_source": lag.event_time_source,
    }
    if seconds is not None:
        event_meta["event_time_lag_seconds"] = round(seconds, 3)
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
    quarantine = quarantine_check_key(spec)
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
            dg.AssetCheckSpec(
                name=QUARANTINE,
                asset=quarantine.asset_key,
                blocking=False,
                description=(
                    "Fails while messages were quarantined in the last window "
                    f"(${QUARANTINE_WINDOW_ENV}, default {DEFAULT_QUARANTINE_WINDOW_S:g}s): WARN below "
                    f"a share of the window's messages (${QUARANTINE_ERROR_SHARE_ENV}, default "
                    f"{DEFAULT_QUARANTINE_ERROR_SHARE:.0%}), ERROR from it."
                ),
            ),
        ],
        can_subset=True,
        op_tags={"freshlake/stream": spec.name},
    )
    def _lag_checks(context: dg.AssetCheckExecutionContext, kafka: KafkaResource, storage: StorageResource):
        selected = context.selected_asset_check_keys
        results = {}
        if selected - {quarantine}:
            results.update(lag_evaluations(spec, measure(spec, kafka=kafka, storage=storage)))
        if quarantine in selected:
            results.update(quarantine_evaluations(spec, storage=storage))
        for key in selected:
            yield dg.AssetCheckResult(asset_key=key.asset_key, check_name=key.name, **results[key])

    return [_lag_checks]
