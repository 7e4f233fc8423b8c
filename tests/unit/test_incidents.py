"""The incident state machine: one trigger per incident, escalation on the same key, one resolve."""

from __future__ import annotations

import pytest

from freshlake.alerts.incidents import (
    Incident,
    Observation,
    apply,
    decide,
    dedup_key,
    dumps,
    loads,
)

ASSET = "docs/raw"


def obs(state: str, condition: str = "freshness", asset: str = ASSET) -> Observation:
    return Observation(asset=asset, condition=condition, state=state, details={"lag": 3})


def run(states: list[str], *, condition: str = "freshness") -> list[tuple[str, str | None]]:
    """Feed one state per tick, delivering everything; the (action, severity) sent over all ticks."""
    open_: dict[str, Incident] = {}
    sent = []
    for tick, state in enumerate(states):
        notes = decide(open_, [obs(state, condition)])
        sent += [(n.action, n.severity) for n in notes]
        open_ = apply(open_, notes, now=float(tick))
    return sent


def test_dedup_key_is_stable_per_asset_and_condition():
    assert dedup_key("docs/raw", "freshness") == "freshlake:docs/raw:freshness"
    assert obs("FAIL", "consumer_lag").dedup_key == "freshlake:docs/raw:consumer_lag"


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        (["PASS"] * 5, []),
        (["PASS", "WARN", "WARN", "WARN"], [("trigger", "warning")]),
        (["PASS", "FAIL", "FAIL", "FAIL", "PASS", "PASS"], [("trigger", "critical"), ("resolve", None)]),
        (
            ["PASS", "WARN", "WARN", "FAIL", "FAIL", "PASS"],
            [("trigger", "warning"), ("trigger", "critical"), ("resolve", None)],
        ),
        # De-escalation pages nobody; a later FAIL is not a new page either.
        (["FAIL", "WARN", "FAIL", "WARN", "PASS"], [("trigger", "critical"), ("resolve", None)]),
        # UNKNOWN (daemon not run yet, check never executed) neither opens nor closes anything.
        (["UNKNOWN", "UNKNOWN"], []),
        (["FAIL", "UNKNOWN", "FAIL", "UNKNOWN", "PASS"], [("trigger", "critical"), ("resolve", None)]),
        # A resolved incident that comes back is a new incident.
        (["WARN", "PASS", "WARN"], [("trigger", "warning"), ("resolve", None), ("trigger", "warning")]),
    ],
)
def test_state_sequences(states, expected):
    assert run(states) == expected


def test_escalation_keeps_the_incident_and_its_start():
    open_ = apply({}, decide({}, [obs("WARN")]), now=10.0)
    notes = decide(open_, [obs("FAIL")])
    assert [(n.action, n.severity, n.previous, n.dedup_key) for n in notes] == [
        ("trigger", "critical", "WARN", "freshlake:docs/raw:freshness")
    ]
    after = apply(open_, notes, now=20.0)
    assert list(after) == ["freshlake:docs/raw:freshness"]
    assert after["freshlake:docs/raw:freshness"].since == 10.0
    assert after["freshlake:docs/raw:freshness"].severity == "critical"


def test_undelivered_notifications_are_decided_again():
    notes = decide({}, [obs("FAIL")])
    still_open = apply({}, [], now=1.0)  # delivery failed: nothing recorded
    assert decide(still_open, [obs("FAIL")]) == notes


def test_conditions_are_independent():
    observations = [obs("FAIL", "freshness"), obs("PASS", "consumer_lag"), obs("WARN", "event_time_lag")]
    notes = decide({}, observations)
    assert [(n.condition, n.action) for n in notes] == [
        ("freshness", "trigger"),
        ("event_time_lag", "trigger"),
    ]
    open_ = apply({}, notes, now=0.0)
    notes = decide(open_, [obs("PASS", "freshness"), obs("WARN", "event_time_lag")])
    assert [(n.condition, n.action) for n in notes] == [("freshness", "resolve")]


def test_resolve_without_open_incident_is_not_sent():
    assert decide({}, [obs("PASS")]) == []


def test_summary_and_details():
    (trigger,) = decide({}, [obs("FAIL")])
    assert trigger.summary == "[freshlake] FAIL docs/raw freshness"
    assert trigger.details == {"lag": 3}
    (resolve,) = decide(apply({}, [trigger], now=0.0), [obs("PASS")])
    assert resolve.previous == "FAIL"
    assert "RESOLVED" in resolve.summary


def test_cursor_round_trip_per_target():
    open_ = apply({}, decide({}, [obs("WARN"), obs("FAIL", "consumer_lag")]), now=5.0)
    cursor = dumps({"pagerduty": open_, "slack": {}})
    assert loads(cursor) == {"pagerduty": open_, "slack": {}}
    assert dumps(loads(cursor)) == cursor


@pytest.mark.parametrize("cursor", [None, "", "not json", "[]", '{"v": 99, "open": {}}', '{"v": 1}'])
def test_unreadable_cursor_starts_empty(cursor):
    assert loads(cursor) == {}
