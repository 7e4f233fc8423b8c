"""Which notifications a set of observations calls for, given the incidents already open.

Pure: no clock, no network, no Dagster. One incident per (asset, condition) with a stable
`dedup_key`; a WARN or FAIL opens it with one `trigger`, WARN -> FAIL re-triggers it with a higher
severity (same key, same incident), PASS resolves it. Anything else, however often it is seen, sends
nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from freshlake.streams import FreshnessState as State

Severity = Literal["warning", "critical"]
Action = Literal["trigger", "resolve"]

SEVERITY: dict[str, Severity] = {"WARN": "warning", "FAIL": "critical"}
_RANK: dict[str, int] = {"warning": 1, "critical": 2}
CURSOR_VERSION = 1


def dedup_key(asset: str, condition: str) -> str:
    """The key PagerDuty groups one incident under: `freshlake:<asset>:<condition>`."""
    return f"freshlake:{asset}:{condition}"


@dataclass(frozen=True, kw_only=True)
class Observation:
    """The current state of one condition ("freshness" or a check name) of one asset."""

    asset: str
    condition: str
    state: State
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dedup_key(self) -> str:
        return dedup_key(self.asset, self.condition)


@dataclass(frozen=True, kw_only=True)
class Incident:
    """An open incident: the highest severity paged so far and when it was first triggered."""

    asset: str
    condition: str
    severity: Severity
    since: float

    @property
    def dedup_key(self) -> str:
        return dedup_key(self.asset, self.condition)


@dataclass(frozen=True, kw_only=True)
class Notification:
    """One event to send: a `trigger` (new or escalated incident) or a `resolve`."""

    action: Action
    asset: str
    condition: str
    state: State
    severity: Severity | None
    previous: State | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dedup_key(self) -> str:
        return dedup_key(self.asset, self.condition)

    @property
    def summary(self) -> str:
        if self.action == "resolve":
            return f"[freshlake] RESOLVED {self.asset} {self.condition} is {self.state} again"
        return f"[freshlake] {self.state} {self.asset} {self.condition}"


def decide(open_incidents: Mapping[str, Incident], observations: Iterable[Observation]) -> list[Notification]:
    """The notifications that take the open incidents to the observed states.

    Args:
        open_incidents: incidents already paged, by `dedup_key` (from the sensor cursor).
        observations: the current state of each watched condition; UNKNOWN changes nothing.
    """
    out: list[Notification] = []
    for obs in observations:
        incident = open_incidents.get(obs.dedup_key)
        if obs.state in SEVERITY:
            severity = SEVERITY[obs.state]
            if incident is not None and _RANK[severity] <= _RANK[incident.severity]:
                continue  # already paged at this severity or higher: one page per incident
            out.append(
                Notification(
                    action="trigger",
                    asset=obs.asset,
                    condition=obs.condition,
                    state=obs.state,
                    severity=severity,
                    previous="WARN" if incident is not None else None,
                    details=obs.details,
                )
            )
        elif obs.state == "PASS" and incident is not None:
            out.append(
                Notification(
                    action="resolve",
                    asset=obs.asset,
                    condition=obs.condition,
                    state="PASS",
                    severity=None,
                    previous="FAIL" if incident.severity == "critical" else "WARN",
                    details=obs.details,
                )
            )
    return out


def apply(
    open_incidents: Mapping[str, Incident], delivered: Iterable[Notification], *, now: float
) -> dict[str, Incident]:
    """The open incidents after `delivered` notifications (only those that reached the receiver)."""
    result = dict(open_incidents)
    for note in delivered:
        if note.action == "resolve":
            result.pop(note.dedup_key, None)
            continue
        known = result.get(note.dedup_key)
        severity = note.severity or "critical"
        result[note.dedup_key] = Incident(
            asset=note.asset,
            condition=note.condition,
            severity=severity,
            since=known.since if known is not None else now,
        )
    return result


def loads(cursor: str | None) -> dict[str, dict[str, Incident]]:
    """Open incidents per alert target from a sensor cursor; an unreadable cursor starts empty."""
    if not cursor:
        return {}
    try:
        data = json.loads(cursor)
        if data.get("v") != CURSOR_VERSION:
            return {}
        return {
            target: {key: Incident(**fields) for key, fields in incidents.items()}
            for target, incidents in data["open"].items()
        }
    except (ValueError, TypeError, KeyError, AttributeError):
        return {}


def dumps(open_by_target: Mapping[str, Mapping[str, Incident]]) -> str:
    """The sensor cursor: JSON, stable key order."""
    return json.dumps(
        {
            "v": CURSOR_VERSION,
            "open": {
                target: {key: asdict(incident) for key, incident in sorted(incidents.items())}
                for target, incidents in sorted(open_by_target.items())
            },
        },
        sort_keys=True,
        separators=(",", ":"),
    )
