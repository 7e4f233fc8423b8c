"""`freshlake_alerts`: pages on freshness state changes and failed asset checks, once per incident.

Reads the freshness state the Dagster daemon records (FRESHNESS_STATE_CHANGE events, via
`instance.get_freshness_state_records`) and the latest completed evaluation of each watched check;
the cursor holds the incidents each target has been told about, updated only on delivery.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import dagster as dg

from freshlake.alerts import incidents
from freshlake.alerts.incidents import Observation, State
from freshlake.alerts.notify import ALERTS_OFF, RetryPolicy, alert_targets, send

FRESHNESS = "freshness"


def build_alert_sensor(
    *,
    asset_keys: Iterable[dg.AssetKey],
    check_keys: Iterable[dg.AssetCheckKey] = (),
    name: str = "freshlake_alerts",
    interval_seconds: int = 15,
    retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen, safe as a default
) -> dg.SensorDefinition:
    """A sensor that turns freshness states of `asset_keys` and results of `check_keys` into alerts."""
    assets = tuple(asset_keys)
    checks = tuple(check_keys)

    @dg.sensor(
        name=name,
        minimum_interval_seconds=interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Sends PagerDuty / Slack-style alerts on freshness WARN/FAIL and failed checks.",
    )
    def _alerts(context: dg.SensorEvaluationContext) -> dg.SensorResult | dg.SkipReason:
        return evaluate(context, asset_keys=assets, check_keys=checks, retry=retry, now=time.time())

    return _alerts


def observe(
    instance: dg.DagsterInstance,
    *,
    asset_keys: Sequence[dg.AssetKey],
    check_keys: Sequence[dg.AssetCheckKey],
) -> list[Observation]:
    """Current state of each watched condition, as the daemon and the check runs recorded it."""
    out: list[Observation] = []
    records = instance.get_freshness_state_records(list(asset_keys)) if asset_keys else {}
    for key in asset_keys:
        record = records.get(key)
        state = record.freshness_state.value if record is not None else "UNKNOWN"
        details = {"since": record.updated_at.isoformat()} if record is not None else {}
        out.append(
            Observation(
                asset=key.to_user_string(),
                condition=FRESHNESS,
                state=_state(state),
                details=details,
            )
        )
    summaries = (
        instance.event_log_storage.get_asset_check_summary_records(list(check_keys)) if check_keys else {}
    )
    for key in check_keys:
        summary = summaries.get(key)
        record = summary.last_completed_check_execution_record if summary is not None else None
        evaluation = record.event.asset_check_evaluation if record is not None and record.event else None
        if evaluation is None:
            state: State = "UNKNOWN"
            details: dict[str, Any] = {}
        else:
            severity = evaluation.severity
            state = (
                "PASS"
                if evaluation.passed
                else ("WARN" if severity == dg.AssetCheckSeverity.WARN else "FAIL")
            )
            details = {k: _plain(v) for k, v in evaluation.metadata.items()}
            if evaluation.description:
                details["description"] = evaluation.description
        out.append(
            Observation(
                asset=key.asset_key.to_user_string(), condition=key.name, state=state, details=details
            )
        )
    return out


def evaluate(
    context: dg.SensorEvaluationContext,
    *,
    asset_keys: Sequence[dg.AssetKey],
    check_keys: Sequence[dg.AssetCheckKey],
    retry: RetryPolicy,
    now: float,
) -> dg.SensorResult | dg.SkipReason:
    targets = alert_targets()
    if not targets:
        context.log.warning(ALERTS_OFF)
        return dg.SkipReason(ALERTS_OFF)
    observations = observe(context.instance, asset_keys=asset_keys, check_keys=check_keys)
    by_target = incidents.loads(context.cursor)
    sent: list[str] = []
    failed: list[str] = []
    for target in targets:
        open_now = by_target.get(target.kind, {})
        delivered = []
        for note in incidents.decide(open_now, observations):
            result = send(target, note, retry=retry)
            if not result.ok:
                # The receiver is down: leave this and later notifications for the next tick.
                context.log.error(
                    f"{target.kind} {note.action} {note.dedup_key} not delivered after "
                    f"{result.attempts} tries: {result.error}; will retry next tick"
                )
                failed.append(f"{target.kind}:{note.dedup_key}")
                break
            context.log.info(f"{target.kind} {note.action} {note.dedup_key} ({note.state})")
            delivered.append(note)
            sent.append(f"{target.kind} {note.action} {note.dedup_key}")
        by_target[target.kind] = incidents.apply(open_now, delivered, now=now)
    cursor = incidents.dumps(by_target)
    if failed:
        reason = f"{len(sent)} alerts sent, not delivered (retried next tick): {', '.join(failed)}"
    elif sent:
        reason = f"sent: {'; '.join(sent)}"
    else:
        open_count = sum(len(v) for v in by_target.values())
        reason = f"no state change ({len(observations)} conditions watched, {open_count} incidents open)"
    return dg.SensorResult(skip_reason=reason, cursor=cursor)


def _state(value: str) -> State:
    return value if value in ("PASS", "WARN", "FAIL") else "UNKNOWN"  # type: ignore[return-value]


def _plain(value: Any) -> Any:
    value = getattr(value, "value", value)
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)
