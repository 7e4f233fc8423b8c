"""Alert payloads and delivery against a real local HTTP receiver; `freshlake alerts test`."""

from __future__ import annotations

import io
import socket

import pytest

from freshlake.alerts.incidents import Notification
from freshlake.alerts.notify import (
    ALERTS_OFF,
    AlertTarget,
    RetryPolicy,
    alert_targets,
    alerts_configured,
    pagerduty_event,
    post_json,
    send,
    slack_message,
)
from freshlake.cli.alerts import run_alerts_test
from freshlake.errors import FreshlakeConfigError
from tests.receiver import local_receiver

FAST = RetryPolicy(tries=4, base_seconds=0.01, timeout_seconds=2)
TRIGGER = Notification(
    action="trigger",
    asset="docs/current",
    condition="freshness",
    state="FAIL",
    severity="critical",
    previous="WARN",
    details={"since": "2026-11-21T10:00:00+00:00"},
)
RESOLVE = Notification(
    action="resolve", asset="docs/current", condition="freshness", state="PASS", severity=None
)


def test_pagerduty_trigger_payload():
    assert pagerduty_event(TRIGGER, routing_key="rk") == {
        "routing_key": "rk",
        "event_action": "trigger",
        "dedup_key": "freshlake:docs/current:freshness",
        "payload": {
            "summary": "[freshlake] FAIL docs/current freshness",
            "source": "freshlake",
            "severity": "critical",
            "component": "docs/current",
            "group": "docs",
            "class": "freshness",
            "custom_details": {"state": "FAIL", "previous": "WARN", "since": "2026-11-21T10:00:00+00:00"},
        },
    }


def test_pagerduty_resolve_payload_has_only_the_keys():
    assert pagerduty_event(RESOLVE, routing_key="rk") == {
        "routing_key": "rk",
        "event_action": "resolve",
        "dedup_key": "freshlake:docs/current:freshness",
    }


def test_slack_message():
    message = slack_message(TRIGGER)
    assert message["text"].endswith("[freshlake] FAIL docs/current freshness")
    assert message["blocks"][0]["text"]["text"] == message["text"]
    fields = " ".join(f["text"] for f in message["blocks"][1]["fields"])
    assert "`freshlake:docs/current:freshness`" in fields and "(was WARN)" in fields
    assert "since=" in message["blocks"][2]["elements"][0]["text"]
    assert "RESOLVED" in slack_message(RESOLVE)["text"]


def test_targets_from_env():
    assert alert_targets(env={}) == []
    assert not alerts_configured(env={"FRESHLAKE_SLACK_WEBHOOK_URL": "  "})
    env = {
        "FRESHLAKE_PAGERDUTY_URL": "http://127.0.0.1:9/v2/enqueue",
        "FRESHLAKE_PAGERDUTY_ROUTING_KEY": "rk",
        "FRESHLAKE_SLACK_WEBHOOK_URL": "http://127.0.0.1:9/hook",
    }
    assert [t.kind for t in alert_targets(env=env)] == ["pagerduty", "slack"]
    assert alerts_configured(env=env)


def test_pagerduty_url_without_routing_key_names_the_fix():
    with pytest.raises(FreshlakeConfigError, match="FRESHLAKE_PAGERDUTY_ROUTING_KEY"):
        alert_targets(env={"FRESHLAKE_PAGERDUTY_URL": "http://127.0.0.1:9/"})


def test_send_posts_json_to_the_receiver():
    with local_receiver() as rx:
        result = send(AlertTarget(kind="pagerduty", url=rx.url + "v2/enqueue", routing_key="rk"), TRIGGER)
    assert result.ok and result.attempts == 1 and result.status == 202
    assert rx.requests[0][0] == "/v2/enqueue"
    assert rx.bodies == [pagerduty_event(TRIGGER, routing_key="rk")]


def test_retries_5xx_with_backoff_then_succeeds():
    slept: list[float] = []
    with local_receiver(fail_first=[500, 500]) as rx:
        result = post_json(rx.url, {"x": 1}, retry=RetryPolicy(base_seconds=0.5), sleep=slept.append)
    assert result.ok and result.attempts == 3
    assert rx.statuses == [500, 500, 202]
    assert slept == [0.5, 1.0]


def test_retries_are_bounded():
    slept: list[float] = []
    with local_receiver(fail_first=[503] * 10) as rx:
        result = post_json(rx.url, {"x": 1}, retry=RetryPolicy(tries=4, base_seconds=0.5), sleep=slept.append)
    assert not result.ok and result.attempts == 4 and result.status == 503
    assert len(rx.requests) == 4
    assert slept == [0.5, 1.0, 2.0]


def test_4xx_is_not_retried():
    with local_receiver(fail_first=[400]) as rx:
        result = post_json(rx.url, {"x": 1}, retry=FAST)
    assert not result.ok and result.attempts == 1 and result.status == 400
    assert "400" in (result.error or "")
    assert len(rx.requests) == 1


def test_connection_refused_is_retried():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connection refused
        slept: list[float] = []
        result = post_json(f"http://127.0.0.1:{port}/", {"x": 1}, retry=FAST, sleep=slept.append)
    assert not result.ok and result.status is None and result.attempts == 4
    assert len(slept) == 3 and "refused" in (result.error or "").lower()


def test_alerts_test_sends_trigger_and_resolve_to_each_target():
    with local_receiver() as pd, local_receiver() as slack:
        env = {
            "FRESHLAKE_PAGERDUTY_URL": pd.url,
            "FRESHLAKE_PAGERDUTY_ROUTING_KEY": "rk",
            "FRESHLAKE_SLACK_WEBHOOK_URL": slack.url + "services/T000/B000/SECRET",
        }
        out = io.StringIO()
        assert run_alerts_test(env=env, retry=FAST, out=out) == 0
    assert [b["event_action"] for b in pd.bodies] == ["trigger", "resolve"]
    assert len({b["dedup_key"] for b in pd.bodies}) == 1
    assert len(slack.bodies) == 2 and all("text" in b and "blocks" in b for b in slack.bodies)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and all(line.startswith("ok") for line in lines)
    assert "SECRET" not in out.getvalue()


def test_alerts_test_reports_a_failing_target():
    with local_receiver(fail_first=[500] * 4) as pd:
        env = {"FRESHLAKE_PAGERDUTY_URL": pd.url, "FRESHLAKE_PAGERDUTY_ROUTING_KEY": "rk"}
        out = io.StringIO()
        assert run_alerts_test(env=env, retry=FAST, out=out) == 1
    assert out.getvalue().startswith("FAILED  pagerduty") and "trigger after 4 tries" in out.getvalue()


def test_alerts_test_without_targets_exits_1():
    out = io.StringIO()
    assert run_alerts_test(env={}, out=out) == 1
    assert ALERTS_OFF in out.getvalue()
