"""A quarantined message pages once and resolves, end to end: `freshlake dev` (flights alone,
tests/e2e/short_windows) with a 30 s quarantine window, good events from the demo producer and one
malformed message; the local PagerDuty receiver gets one trigger then one resolve for
`flights/quarantine:quarantine`, the terminal shows the page and its resolution as one line each,
and `freshlake trace` (no variable but FRESHLAKE_HOME) shows the message and its reason."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.devproc import freshlake_dev
from tests.e2e.test_alerts_e2e import WORKSPACE, Producer, pagerduty_events, wait_for
from tests.receiver import local_receiver

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
KEY = "freshlake:flights/quarantine:quarantine"
WINDOW_S = 30
BAD = b'{"flight_id": "BAD7", "status": "boarding", "event_time": "yesterday-ish", "version": 1}'


@pytest.mark.timeout(420)
def test_a_quarantined_message_pages_once_resolves_and_traces(tmp_path) -> None:
    from confluent_kafka import Producer as KafkaProducer

    with local_receiver() as pagerduty:
        env = {
            "FRESHLAKE_QUARANTINE_WINDOW_SECONDS": str(WINDOW_S),
            "FRESHLAKE_PAGERDUTY_URL": pagerduty.url,
            "FRESHLAKE_PAGERDUTY_ROUTING_KEY": "test-routing-key",
        }
        args = ["--workspace", str(WORKSPACE), "--no-producer"]
        with freshlake_dev(tmp_path, args=args, env=env) as dev:
            producer = Producer(dev.bootstrap)
            producer.start(seed=3)

            def ours() -> list[tuple[str, str | None]]:
                return [
                    (e["event_action"], e.get("payload", {}).get("severity"))
                    for e in pagerduty_events(pagerduty)
                    if e["dedup_key"] == KEY
                ]

            def context() -> str:
                return f"pages: {ours()}\n{dev.log_tail()}"

            try:
                time.sleep(20)  # good traffic first: the window's share is of real messages
                kafka = KafkaProducer({"bootstrap.servers": dev.bootstrap})
                kafka.produce("flights", key=b"BAD7", value=BAD)
                assert kafka.flush(10) == 0
                sent = time.monotonic()
                wait_for("the quarantine page", lambda: bool(ours()), timeout=120, context=context)
                paged_after = time.monotonic() - sent
                wait_for(
                    "its resolve",
                    lambda: ("resolve", None) in ours(),
                    timeout=WINDOW_S + 120,
                    context=context,
                )
                resolved_after = time.monotonic() - sent
                time.sleep(10)  # more ticks: no second page
                actions = [a for a, _ in ours()]
                assert actions == ["trigger", "resolve"], context()
                assert ours()[0][1] in ("warning", "critical")
                assert resolved_after >= WINDOW_S, (resolved_after, context())
                print(f"paged {paged_after:.0f}s after the message, resolved after {resolved_after:.0f}s")

                terminal = dev.log_path.read_text()
                assert (
                    sum(
                        "page: " in line and "flights/quarantine quarantine" in line
                        for line in terminal.splitlines()
                    )
                    == 1
                ), terminal
                assert "resolved: flights/quarantine quarantine" in terminal, terminal

                base = {
                    k: v
                    for k, v in os.environ.items()
                    if not k.startswith(("KAFKA_", "FRESHLAKE_", "DAGSTER_HOME"))
                }
                traced = subprocess.run(
                    [sys.executable, "-m", "freshlake.cli", "trace", "BAD7", "--stream", "flights"],
                    cwd=ROOT,
                    env={**base, "FRESHLAKE_HOME": str(dev.home)},
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert traced.returncode == 0, traced.stdout + traced.stderr
                assert "QUARANTINED" in traced.stdout and "yesterday-ish" in traced.stdout, traced.stdout
            finally:
                producer.stop_event.set()
                if producer.thread is not None:
                    producer.thread.join(timeout=30)
