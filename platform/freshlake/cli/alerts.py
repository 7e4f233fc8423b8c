"""`freshlake alerts test`: a test trigger then resolve to every configured alert target."""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import TextIO

from freshlake.alerts.incidents import Notification
from freshlake.alerts.notify import ALERTS_OFF, RetryPolicy, alert_targets, send
from freshlake.cli.args import add_streams_option, load
from freshlake.streams import StreamSpec

TEST_ASSET = "freshlake/alerts_test"
TEST_CONDITION = "test"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("alerts", help="on-call alert targets (PagerDuty v2, Slack webhook)")
    parser.add_argument("action", choices=("test",), help="test: send a trigger and a resolve")
    add_streams_option(parser)
    parser.set_defaults(func=lambda args: run_alerts_test(specs=load(args).streams))


def run_alerts_test(
    *,
    env: Mapping[str, str] | None = None,
    retry: RetryPolicy = RetryPolicy(),  # noqa: B008 - frozen, safe as a default
    out: TextIO | None = None,
    specs: Sequence[StreamSpec] = (),
) -> int:
    """Send a test trigger and resolve to each target; one line per target. Exit code 1 when none is
    configured or any delivery failed. The trigger names the SLOs of `specs`, so whoever receives
    it sees which streams page them."""
    out = out or sys.stdout
    targets = alert_targets(env=env)
    if not targets:
        print(f"freshlake alerts test: {ALERTS_OFF}", file=out)
        return 1
    trigger = Notification(
        action="trigger",
        asset=TEST_ASSET,
        condition=TEST_CONDITION,
        state="WARN",
        severity="warning",
        details={
            "note": "test alert from `freshlake alerts test`; resolved right away",
            **({"streams": _slos(specs)} if specs else {}),
        },
    )
    resolve = Notification(
        action="resolve", asset=TEST_ASSET, condition=TEST_CONDITION, state="PASS", severity=None
    )
    code = 0
    for target in targets:
        results = []
        for note in (trigger, resolve):
            result = send(target, note, retry=retry)
            results.append(result)
            if not result.ok:
                break
        if all(r.ok for r in results) and len(results) == 2:
            line = f"ok      {target.kind:<9} {_where(target.url)}: trigger + resolve delivered"
        else:
            code = 1
            bad = results[-1]
            step = "trigger" if len(results) == 1 else "resolve"
            line = (
                f"FAILED  {target.kind:<9} {_where(target.url)}: "
                f"{step} after {bad.attempts} tries: {bad.error}"
            )
        print(line, file=out)
    return code


def _where(url: str) -> str:
    """Scheme and host only: a webhook URL's path is a secret."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _slos(specs: Sequence[StreamSpec]) -> str:
    return ", ".join(
        f"{s.name} (warn {s.freshness.warn_after_seconds:g}s, fail {s.freshness.fail_after_seconds:g}s)"
        for s in specs
    )
