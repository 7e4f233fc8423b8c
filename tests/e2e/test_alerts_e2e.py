"""Freshness alerts end to end: the daemon's freshness states page a real local receiver.

`freshlake dev` runs the `flights` stream with 60 s / 90 s windows (tests/e2e/short_windows); the
test produces events itself, so it can stop and restart the stream:
producer on -> every asset PASS; producer off -> WARN, then FAIL, one `trigger` per incident and
severity; producer on again -> one `resolve` per incident, and nothing more.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from freshlake.alerts.incidents import dedup_key
from tests.e2e.devproc import freshlake_dev
from tests.receiver import Received, local_receiver

pytestmark = pytest.mark.e2e

WORKSPACE = Path(__file__).resolve().parent / "short_windows" / "workspace.yaml"
STREAM = "flights"
ASSETS = (f"{STREAM}/raw", f"{STREAM}/quarantine", f"{STREAM}/current", f"{STREAM}/embeddings")
FRESHNESS_KEYS = {dedup_key(asset, "freshness") for asset in ASSETS}
ROUTING_KEY = "test-routing-key"
DAEMON_INTERVAL_S = 5  # FRESHNESS_DAEMON_INTERVAL_SECONDS (Dagster's default is 30)


class Producer:
    """The demo producer for one stream in a thread, stoppable and restartable."""

    def __init__(self, bootstrap: str) -> None:
        self.config = {"bootstrap.servers": bootstrap}
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.errors: list[BaseException] = []

    def start(self, *, seed: int) -> None:
        from examples.flight_assistant.producer import produce_demo

        self.stop_event = threading.Event()

        def run(stop: threading.Event = self.stop_event) -> None:
            try:
                produce_demo(
                    config=self.config, seed=seed, rate=5, streams=(STREAM,), stop=stop, create_topics=False
                )
            except BaseException as exc:  # reported by the test, not lost in the thread
                self.errors.append(exc)

        self.thread = threading.Thread(target=run, name="test-producer", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread is not None:
            self.thread.join(timeout=30)
            assert not self.thread.is_alive(), "producer did not stop"
        assert not self.errors, self.errors


def freshness_states(dagster_home: Path) -> dict[str, str]:
    """Asset -> PASS/WARN/FAIL/UNKNOWN as the daemon recorded it (read like the alert sensor does)."""
    import dagster as dg

    keys = [dg.AssetKey.from_user_string(a) for a in ASSETS]
    try:
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            records = instance.get_freshness_state_records(keys)
    except Exception:  # SQLite busy while the daemon writes: the next poll reads it
        return {}
    return {
        key.to_user_string(): (records[key].freshness_state.value if key in records else "UNKNOWN")
        for key in keys
    }


def pagerduty_events(receiver: Received) -> list[dict[str, Any]]:
    return [b for b in receiver.bodies if isinstance(b, dict)]


def wait_for(what: str, condition: Callable[[], bool], *, timeout: float, context: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(1)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{context()}")


@pytest.mark.timeout(480)
def test_freshness_pages_once_per_incident_and_resolves(tmp_path) -> None:
    with local_receiver() as pagerduty, local_receiver() as slack:
        env = {
            "FRESHNESS_DAEMON_INTERVAL_SECONDS": str(DAEMON_INTERVAL_S),
            "FRESHLAKE_PAGERDUTY_URL": pagerduty.url,
            "FRESHLAKE_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
            "FRESHLAKE_SLACK_WEBHOOK_URL": slack.url,
        }
        args = ["--workspace", str(WORKSPACE), "--no-producer"]
        with freshlake_dev(tmp_path, args=args, env=env) as dev:
            home, log_path, bootstrap = dev.home, dev.log_path, dev.bootstrap
            producer: Producer | None = None
            seen: list[tuple[float, dict[str, str]]] = []
            started = time.monotonic()

            def states() -> dict[str, str]:
                now = freshness_states(home / "dagster")
                if now and (not seen or seen[-1][1] != now):
                    seen.append((round(time.monotonic() - started, 1), now))
                return now

            def context() -> str:
                events = [
                    (e["event_action"], e["dedup_key"], e.get("payload", {}).get("severity"))
                    for e in pagerduty_events(pagerduty)
                ]
                return (
                    f"freshness states seen: {seen}\npagerduty: {events}\n"
                    f"dev log tail:\n{log_path.read_text()[-4000:]}"
                )

            try:
                # Producer on: the sensors ingest, embed, and every watched asset is PASS.
                producer = Producer(bootstrap)
                producer.start(seed=1)
                wait_for(
                    "every asset PASS with the producer on",
                    lambda: set(states().values()) == {"PASS"},
                    timeout=150,
                    context=context,
                )
                assert pagerduty_events(pagerduty) == []  # nothing to page while fresh

                # Producer off: WARN after 60 s, FAIL after 90 s; one trigger per incident and severity.
                producer.stop()
                stopped = time.monotonic()
                wait_for(
                    "every asset WARN",
                    lambda: set(states().values()) == {"WARN"},
                    timeout=120,
                    context=context,
                )
                assert time.monotonic() - stopped >= 50, context()  # not before the warn window

                def all_failed_and_paged() -> bool:
                    triggered = {
                        e["dedup_key"]
                        for e in pagerduty_events(pagerduty)
                        if e["event_action"] == "trigger" and e["payload"]["severity"] == "critical"
                    }
                    return set(states().values()) == {"FAIL"} and FRESHNESS_KEYS <= triggered

                wait_for(
                    "every asset FAIL and paged critical", all_failed_and_paged, timeout=90, context=context
                )
                time.sleep(12)  # more sensor ticks see the same FAIL: they must not page again
                triggers = [e for e in pagerduty_events(pagerduty) if e["event_action"] == "trigger"]
                assert all(e["event_action"] == "trigger" for e in pagerduty_events(pagerduty)), context()
                for key in FRESHNESS_KEYS:
                    severities = [e["payload"]["severity"] for e in triggers if e["dedup_key"] == key]
                    assert severities == ["warning", "critical"], (key, context())
                counts = Counter((e["dedup_key"], e["payload"]["severity"]) for e in triggers)
                assert all(n == 1 for n in counts.values()), (counts, context())
                assert {e["routing_key"] for e in triggers} == {ROUTING_KEY}
                paged = {e["dedup_key"] for e in triggers}

                # Producer on again: fresh materializations -> PASS -> one resolve per incident.
                producer.start(seed=2)

                def all_resolved() -> bool:
                    resolved = {
                        e["dedup_key"] for e in pagerduty_events(pagerduty) if e["event_action"] == "resolve"
                    }
                    return set(states().values()) == {"PASS"} and paged <= resolved

                wait_for("every incident resolved", all_resolved, timeout=120, context=context)
                time.sleep(12)  # more ticks see PASS: no second resolve, no new trigger
                events = pagerduty_events(pagerduty)
                by_key: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
                for e in events:
                    by_key[e["dedup_key"]].append((e["event_action"], e.get("payload", {}).get("severity")))
                assert set(by_key) == paged, context()
                for key, actions in by_key.items():
                    assert actions[-1] == ("resolve", None), (key, context())
                    assert [a for a, _ in actions].count("resolve") == 1, (key, context())
                # Slack got the same notifications, one message each.
                slack_texts = [b["text"] for b in slack.bodies]
                assert len(slack_texts) == len(events), (slack_texts, context())
                for key in FRESHNESS_KEYS:
                    asset = key.split(":")[1]
                    assert sum(f"{asset} freshness" in t and "RESOLVED" in t for t in slack_texts) == 1
            finally:
                if producer is not None:
                    producer.stop_event.set()
                    if producer.thread is not None:
                        producer.thread.join(timeout=30)
