"""Runs a killed `freshlake dev` left in flight are canceled at the next start, on a real
SQLite instance as the embedded default writes it."""

from __future__ import annotations

import uuid

import dagster as dg

from freshlake.dagster_instance import cancel_orphaned_runs, write_instance_config

Status = dg.DagsterRunStatus


def test_runs_left_in_flight_are_canceled_and_finished_ones_kept(tmp_path) -> None:
    home = tmp_path / "dagster"
    assert cancel_orphaned_runs(dagster_home=home) == 0  # a first start: no instance yet
    write_instance_config(dagster_home=home)
    ids: dict[Status, str] = {}
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for status in (Status.STARTED, Status.STARTING, Status.CANCELING, Status.NOT_STARTED, Status.SUCCESS):
            ids[status] = str(uuid.uuid4())
            instance.add_run(dg.DagsterRun(job_name="j", run_id=ids[status], status=status))
    assert cancel_orphaned_runs(dagster_home=home) == 4
    with dg.DagsterInstance.from_config(str(home)) as instance:
        after = {status: instance.get_run_by_id(run_id).status for status, run_id in ids.items()}
        logs = instance.all_logs(ids[Status.STARTED])
    assert after == {
        Status.STARTED: Status.CANCELED,
        Status.STARTING: Status.CANCELED,
        Status.CANCELING: Status.CANCELED,
        Status.NOT_STARTED: Status.CANCELED,
        Status.SUCCESS: Status.SUCCESS,
    }
    assert any("killed" in (entry.message or "") for entry in logs)  # the UI says why
    assert cancel_orphaned_runs(dagster_home=home) == 0
