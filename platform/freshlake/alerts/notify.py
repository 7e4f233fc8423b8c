"""Alert payloads (PagerDuty Events API v2, Slack-compatible webhook) and their delivery over HTTP.

Targets come from the environment, read on demand: `FRESHLAKE_PAGERDUTY_URL` with
`FRESHLAKE_PAGERDUTY_ROUTING_KEY`, and `FRESHLAKE_SLACK_WEBHOOK_URL`. Any URL works, so a local
receiver can stand in for either service. Stdlib only.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from freshlake.alerts.incidents import Notification
from freshlake.errors import FreshlakeConfigError

log = logging.getLogger("freshlake.alerts")

TargetKind = Literal["pagerduty", "slack"]
ALERTS_OFF = (
    "alerts are off: set FRESHLAKE_PAGERDUTY_URL (with FRESHLAKE_PAGERDUTY_ROUTING_KEY) "
    "or FRESHLAKE_SLACK_WEBHOOK_URL"
)
_EMOJI = {"trigger": ":rotating_light:", "resolve": ":white_check_mark:"}


@dataclass(frozen=True, kw_only=True)
class AlertTarget:
    """One receiver: where to POST and, for PagerDuty, the integration's routing key."""

    kind: TargetKind
    url: str
    routing_key: str | None = None


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Bounded exponential backoff: `tries` attempts, waiting base, 2*base, 4*base... between them."""

    tries: int = 4
    base_seconds: float = 0.5
    timeout_seconds: float = 5.0


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """What happened to one POST: delivered or not, the last HTTP status, attempts, last error."""

    ok: bool
    status: int | None
    attempts: int
    error: str | None = None


def alert_targets(*, env: Mapping[str, str] | None = None) -> list[AlertTarget]:
    """The configured targets, PagerDuty first; empty when alerts are off."""
    env = os.environ if env is None else env
    targets: list[AlertTarget] = []
    pd_url = (env.get("FRESHLAKE_PAGERDUTY_URL") or "").strip()
    if pd_url:
        routing_key = (env.get("FRESHLAKE_PAGERDUTY_ROUTING_KEY") or "").strip()
        if not routing_key:
            msg = (
                "FRESHLAKE_PAGERDUTY_URL is set but FRESHLAKE_PAGERDUTY_ROUTING_KEY is not: set it to the "
                "integration key of the PagerDuty service (any string for a local receiver)"
            )
            raise FreshlakeConfigError(msg)
        targets.append(AlertTarget(kind="pagerduty", url=pd_url, routing_key=routing_key))
    slack_url = (env.get("FRESHLAKE_SLACK_WEBHOOK_URL") or "").strip()
    if slack_url:
        targets.append(AlertTarget(kind="slack", url=slack_url))
    return targets


def alerts_configured(*, env: Mapping[str, str] | None = None) -> bool:
    """True when at least one alert target has a URL."""
    return bool(alert_targets(env=env))


def pagerduty_event(note: Notification, *, routing_key: str) -> dict[str, Any]:
    """A PagerDuty Events API v2 event; a `resolve` carries only the routing and dedup keys."""
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": note.action,
        "dedup_key": note.dedup_key,
    }
    if note.action == "trigger":
        event["payload"] = {
            "summary": note.summary[:1024],
            "source": "freshlake",
            "severity": note.severity or "critical",
            "component": note.asset,
            "group": note.asset.split("/", 1)[0],
            "class": note.condition,
            "custom_details": {"state": note.state, "previous": note.previous, **dict(note.details)},
        }
    return event


def slack_message(note: Notification) -> dict[str, Any]:
    """A Slack-compatible incoming-webhook message: `text` for notifications, `blocks` for the channel."""
    text = f"{_EMOJI[note.action]} {note.summary}"
    fields = [
        f"*asset*\n`{note.asset}`",
        f"*condition*\n{note.condition}",
        f"*state*\n{note.state}" + (f" (was {note.previous})" if note.previous else ""),
        f"*dedup key*\n`{note.dedup_key}`",
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    if note.details:
        lines = ", ".join(f"{k}={v}" for k, v in sorted(note.details.items()))
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": lines[:2000]}]})
    return {"text": text, "blocks": blocks}


def payload_for(target: AlertTarget, note: Notification) -> dict[str, Any]:
    if target.kind == "pagerduty":
        return pagerduty_event(note, routing_key=target.routing_key or "")
    return slack_message(note)


def _retryable(status: int) -> bool:
    return status >= 500 or status == 429


def post_json(
    url: str,
    body: Mapping[str, Any],
    *,
    retry: RetryPolicy = RetryPolicy(),
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """POST `body` as JSON; retry 5xx, 429 and connection errors with backoff, never other 4xx."""
    data = json.dumps(body, default=str).encode()
    status: int | None = None
    error: str | None = None
    for attempt in range(1, retry.tries + 1):
        request = urllib.request.Request(
            url, data=data, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=retry.timeout_seconds) as response:
                return Delivery(ok=True, status=response.status, attempts=attempt)
        except urllib.error.HTTPError as exc:
            status, error = exc.code, f"HTTP {exc.code} {exc.reason}"
            if not _retryable(exc.code):
                return Delivery(ok=False, status=status, attempts=attempt, error=error)
        except (urllib.error.URLError, OSError) as exc:
            status, error = None, f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        if attempt < retry.tries:
            delay = retry.base_seconds * 2 ** (attempt - 1)
            log.warning("alert POST failed (%s), retry %d in %.1fs", error, attempt, delay)
            sleep(delay)
    return Delivery(ok=False, status=status, attempts=retry.tries, error=error)


def send(
    target: AlertTarget,
    note: Notification,
    *,
    retry: RetryPolicy = RetryPolicy(),
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """Deliver one notification to one target."""
    return post_json(target.url, payload_for(target, note), retry=retry, sleep=sleep)
