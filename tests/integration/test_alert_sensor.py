"""The alert sensor over many ticks, with freshness states recorded the way the daemon records them
(FreshnessStateChange runless events) and check results as AssetCheckEvaluation events, sending to
real local HTTP receivers."""

from __future__ import annotations

import time
from collections.abc import Iterator

import dagster as dg
import pytest
from dagster._core.definitions.freshness import FreshnessState, FreshnessStateChange

from freshlake.alerts.notify import ALERTS_OFF, RetryPolicy
from freshlake.sensors.alerts import build_alert_sensor
from tests.receiver import Received, local_receiver

RAW = dg.AssetKey(["docs", "raw"])
CURRENT = dg.AssetKey(["docs", "current"])
LAG = dg.AssetCheckKey(RAW, "consumer_lag")
FAST = RetryPolicy(tries=2, base_seconds=0.01, timeout_seconds=2)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


@pytest.fixture
def receivers(monkeypatch) -> Iterator[tuple[Received, Received]]:
    with local_receiver() as pd, local_receiver() as slack:
        monkeypatch.setenv("FRESHLAKE_PAGERDUTY_URL", pd.url + "v2/enqueue")
        monkeypatch.setenv("FRESHLAKE_PAGERDUTY_ROUTING_KEY", "test-routing-key")
        monkeypatch.setenv("FRESHLAKE_SLACK_WEBHOOK_URL", slack.url + "hook")
        yield pd, slack


class Ticker:
    """Evaluates the sensor like the daemon does: one context per tick, the cursor carried over."""

    def __init__(self, instance: dg.DagsterInstance, sensor: dg.SensorDefinition):
        self.instance, self.sensor, self.cursor = instance, sensor, None

    def tick(self) -> dg.SensorResult | dg.SkipReason:
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor)
        result = self.sensor(context)
        if isinstance(result, dg.SensorResult):
            assert not result.run_requests
            self.cursor = result.cursor
        return result


def set_freshness(instance: dg.DagsterInstance, key: dg.AssetKey, new: str, previous: str) -> None:
    # Exactly what dagster._daemon.freshness.FreshnessDaemon._evaluate_asset emits on a state change.
    instance._report_runless_asset_event(
        asset_event=FreshnessStateChange(
            key=key,
            new_state=FreshnessState(new),
            previous_state=FreshnessState(previous),
            state_change_timestamp=time.time(),
        )
    )


def check_result(instance: dg.DagsterInstance, *, passed: bool, lag: int) -> None:
    instance.report_runless_asset_event(
        dg.AssetCheckEvaluation(
            asset_key=LAG.asset_key,
            check_name=LAG.name,
            passed=passed,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"lag_records": lag},
        )
    )


def pd_events(rx: Received) -> list[tuple[str, str, str | None]]:
    return [(b["event_action"], b["dedup_key"], b.get("payload", {}).get("severity")) for b in rx.bodies]


def test_sensor_definition():
    sensor = build_alert_sensor(asset_keys=[RAW], check_keys=[LAG])
    assert sensor.name == "freshlake_alerts"
    assert sensor.minimum_interval_seconds == 15
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_alerts_off_without_urls(instance, monkeypatch):
    for name in ("FRESHLAKE_PAGERDUTY_URL", "FRESHLAKE_SLACK_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    set_freshness(instance, RAW, "FAIL", "PASS")
    result = Ticker(instance, build_alert_sensor(asset_keys=[RAW])).tick()
    assert isinstance(result, dg.SkipReason)
    assert result.skip_message == ALERTS_OFF


def test_freshness_warn_fail_pass_pages_once_and_resolves_once(instance, receivers):
    pd, slack = receivers
    ticker = Ticker(instance, build_alert_sensor(asset_keys=[RAW, CURRENT], check_keys=[LAG], retry=FAST))
    for _ in range(3):  # nothing recorded yet: UNKNOWN, nothing sent
        ticker.tick()
    set_freshness(instance, RAW, "PASS", "UNKNOWN")
    set_freshness(instance, CURRENT, "PASS", "UNKNOWN")
    for _ in range(3):
        ticker.tick()
    assert pd.bodies == [] and slack.bodies == []

    set_freshness(instance, RAW, "WARN", "PASS")
    for _ in range(5):
        ticker.tick()
    set_freshness(instance, RAW, "FAIL", "WARN")
    for _ in range(5):
        ticker.tick()
    set_freshness(instance, RAW, "PASS", "FAIL")
    for _ in range(5):
        ticker.tick()

    key = "freshlake:docs/raw:freshness"
    assert pd_events(pd) == [
        ("trigger", key, "warning"),
        ("trigger", key, "critical"),
        ("resolve", key, None),
    ]
    assert len(slack.bodies) == 3
    assert pd.requests[0][0] == "/v2/enqueue" and slack.requests[0][0] == "/hook"
    assert pd.bodies[0]["routing_key"] == "test-routing-key"
    assert pd.bodies[0]["payload"]["component"] == "docs/raw"


def test_failed_check_pages_once_and_resolves_once(instance, receivers):
    pd, _ = receivers
    ticker = Ticker(instance, build_alert_sensor(asset_keys=[], check_keys=[LAG], retry=FAST))
    check_result(instance, passed=True, lag=0)
    ticker.tick()
    for lag in (500, 900, 1200):  # fails in three runs in a row: still one incident
        check_result(instance, passed=False, lag=lag)
        ticker.tick()
        ticker.tick()
    check_result(instance, passed=True, lag=3)
    for _ in range(3):
        ticker.tick()
    key = "freshlake:docs/raw:consumer_lag"
    assert pd_events(pd) == [("trigger", key, "critical"), ("resolve", key, None)]
    assert pd.bodies[0]["payload"]["custom_details"]["lag_records"] == 500


def test_warn_severity_check_maps_to_warning(instance, receivers):
    pd, _ = receivers
    instance.report_runless_asset_event(
        dg.AssetCheckEvaluation(
            asset_key=RAW, check_name="event_time_lag", passed=False, severity=dg.AssetCheckSeverity.WARN
        )
    )
    check = dg.AssetCheckKey(RAW, "event_time_lag")
    Ticker(instance, build_alert_sensor(asset_keys=[], check_keys=[check], retry=FAST)).tick()
    assert pd_events(pd) == [("trigger", "freshlake:docs/raw:event_time_lag", "warning")]


def test_failed_delivery_is_retried_next_tick_without_double_paging(instance, receivers):
    pd, slack = receivers
    ticker = Ticker(instance, build_alert_sensor(asset_keys=[RAW], retry=FAST))
    set_freshness(instance, RAW, "FAIL", "PASS")
    slack.fail_next([500, 500])  # Slack down for one tick (both tries); PagerDuty fine
    first = ticker.tick()
    assert "not delivered" in (first.skip_reason.skip_message or "")
    assert len(pd.bodies) == 1 and slack.bodies == []
    for _ in range(3):
        ticker.tick()
    assert len(pd.bodies) == 1, "PagerDuty was paged again for a delivered incident"
    assert len(slack.bodies) == 1
    assert len(slack.requests) == 3  # 2 failed tries + 1 delivery


def test_bad_cursor_is_not_fatal(instance, receivers):
    pd, _ = receivers
    set_freshness(instance, RAW, "WARN", "PASS")
    sensor = build_alert_sensor(asset_keys=[RAW], retry=FAST)
    result = sensor(dg.build_sensor_context(instance=instance, cursor="garbage"))
    assert isinstance(result, dg.SensorResult) and len(pd.bodies) == 1
