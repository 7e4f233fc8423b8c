"""What `freshlake dev` prints while it runs: one line per failed run and per page or resolve,
read from a real (ephemeral) Dagster instance; nothing when nothing changed."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from freshlake.assets.checks import quarantine_check_key
from freshlake.devwatch import Watcher
from tests.demo_streams import demo_stream

SPEC = demo_stream("flights")


@pytest.fixture
def watcher(tmp_path: Path):
    with dg.DagsterInstance.ephemeral() as instance:
        w = Watcher(dagster_home=tmp_path, streams=[SPEC], ui_url="http://ui", say=print, since=0)
        w._instance = instance
        yield w


def report(instance: dg.DagsterInstance, *, passed: bool, description: str) -> None:
    key = quarantine_check_key(SPEC)
    instance.report_runless_asset_event(
        dg.AssetCheckEvaluation(
            asset_key=key.asset_key,
            check_name=key.name,
            passed=passed,
            severity=dg.AssetCheckSeverity.WARN,
            description=description,
        )
    )


def test_a_page_and_its_resolve_are_one_line_each(watcher: Watcher) -> None:
    assert watcher.poll() == []
    report(watcher.instance, passed=False, description="1 of 150 messages quarantined")
    assert watcher.poll() == ["page: WARN flights/quarantine quarantine: 1 of 150 messages quarantined"]
    report(watcher.instance, passed=False, description="2 of 160 messages quarantined")
    assert watcher.poll() == []  # the same incident: no second line
    report(watcher.instance, passed=True, description="clean")
    assert watcher.poll() == ["resolved: flights/quarantine quarantine is PASS again"]
    assert watcher.poll() == []


def test_the_status_line_on_demand(watcher: Watcher) -> None:
    import io
    import threading

    report(watcher.instance, passed=False, description="1 of 150 messages quarantined")
    watcher.poll()
    said: list[str] = []
    watcher.say = said.append
    watcher.on_enter(threading.Event(), io.StringIO("\n\n"))  # Enter twice, then end of input
    assert len(said) == 2
    assert said[0].startswith("status: 0 runs queued or running (none); 0 failed since start; ")
    assert "pages open: flights/quarantine quarantine" in said[0]


def test_a_failed_run_is_one_line_with_its_reason_and_link(watcher: Watcher) -> None:
    instance = watcher.instance

    @dg.op
    def boom() -> None:
        raise ValueError("the broker said no\nand a second line")

    @dg.job(name="flights_ingest")
    def failing() -> None:
        boom()

    run = failing.execute_in_process(instance=instance, raise_on_error=False)
    assert not run.success
    (line,) = watcher.poll()
    assert line.startswith(f"run failed: flights_ingest {run.run_id[:8]}: ")
    assert "ValueError: the broker said no and a second line" in line and line.endswith(
        f"(http://ui/runs/{run.run_id})"
    )
    assert watcher.poll() == []  # once


def test_cancel_runs_cancels_runs_not_started(watcher: Watcher) -> None:
    instance = watcher.instance

    @dg.op
    def noop() -> None:
        pass

    @dg.job
    def waiting() -> None:
        noop()

    queued = instance.create_run_for_job(waiting, status=dg.DagsterRunStatus.NOT_STARTED)
    assert watcher.cancel_runs() == "cancelled 0 running and 1 queued runs"
    assert instance.get_run_by_id(queued.run_id).status == dg.DagsterRunStatus.CANCELED
    assert watcher.cancel_runs() is None
