"""A sensor whose every tick fails is one terminal line, not one per tick, and its recovery one
more. The ticks are real: Dagster's own sensor daemon evaluates a real sensor (in process) and
writes them to a real instance on `tmp_path`; the watcher reads them as `freshlake dev` does."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time, instance_for_test
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
from dagster._daemon.sensor import execute_sensor_iteration

from freshlake.devwatch import Watcher
from tests.demo_streams import demo_stream

# The sensor raises what its mode file says, or skips (a healthy tick with nothing to launch).
DEFS = """
from pathlib import Path

import dagster as dg

MODE = Path({mode!r})


class OffsetsWentBackwards(Exception):
    pass


@dg.sensor(name="flights_offsets", minimum_interval_seconds=1, default_status=dg.DefaultSensorStatus.RUNNING)
def flights_offsets(context):
    mode = MODE.read_text()
    if mode.startswith("raise "):
        raise OffsetsWentBackwards(mode.removeprefix("raise "))
    if mode.startswith("keyerror "):
        raise KeyError(mode.removeprefix("keyerror "))
    return dg.SkipReason("no new offsets")


defs = dg.Definitions(sensors=[flights_offsets])
"""

BACKWARDS = "flights[0] ends at offset 0 but the raw table already holds up to {n}\nrun `freshlake reset`"


@dataclass
class Stack:
    tmp_path: Path
    instance: object
    workspace: object
    mode: Path
    clock: float  # Dagster's clock: two seconds on per tick, past the sensor's minimum interval

    def tick(self, mode: str) -> None:
        """One real sensor tick in `mode`, as the daemon runs it."""
        self.mode.write_text(mode)
        self.clock += 2
        with freeze_time(self.clock):
            list(
                execute_sensor_iteration(
                    self.workspace,
                    logging.getLogger("test_devwatch_sensors"),
                    threadpool_executor=None,
                    submit_threadpool_executor=None,
                )
            )

    def watcher(self, *, since: float) -> Watcher:
        w = Watcher(
            dagster_home=self.tmp_path,
            streams=[demo_stream("flights")],
            ui_url="http://ui",
            say=print,
            since=since,
            logs=self.tmp_path / "logs",
        )
        w._instance = self.instance
        return w


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    mode = tmp_path / "mode"
    mode.write_text("skip")
    defs = tmp_path / "sensor_defs.py"
    defs.write_text(DEFS.format(mode=str(mode)))
    (tmp_path / "dagster").mkdir()
    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(python_file=str(defs), attribute="defs"), location_name="freshlake"
    )
    with (
        instance_for_test(temp_dir=str(tmp_path / "dagster")) as instance,
        create_test_daemon_workspace_context(InProcessWorkspaceLoadTarget(origin), instance) as workspace,
    ):
        yield Stack(tmp_path=tmp_path, instance=instance, workspace=workspace, mode=mode, clock=time.time())


def test_a_failing_sensor_is_one_line_until_it_recovers(stack: Stack) -> None:
    watcher = stack.watcher(since=stack.clock)
    stack.tick("skip")
    assert watcher.poll() == []  # healthy: nothing

    stack.tick("raise " + BACKWARDS.format(n=703))
    (line,) = watcher.poll()
    assert line == (
        "sensor failing: flights_offsets: OffsetsWentBackwards: flights[0] ends at offset 0 but the raw"
        " table already holds up to 703 run `freshlake reset`  (shown once until it recovers; "
        f"http://ui/locations/freshlake/sensors/flights_offsets, {stack.tmp_path / 'logs' / 'dagster.log'})"
    )
    assert watcher.poll() == []  # no new tick
    stack.tick("raise " + BACKWARDS.format(n=703))
    stack.tick("raise " + BACKWARDS.format(n=705))  # only a number differs: the same error
    assert watcher.poll() == []
    assert "sensors failing: flights_offsets " in watcher.status_line()

    stack.tick("skip")
    (line,) = watcher.poll()
    assert line.startswith("sensor recovered: flights_offsets (failing since ")
    assert "sensors failing: none " in watcher.status_line()
    stack.tick("skip")
    assert watcher.poll() == []

    stack.tick("raise " + BACKWARDS.format(n=9))  # failing again after a recovery: a new line
    (line,) = watcher.poll()
    assert line.startswith("sensor failing: flights_offsets: OffsetsWentBackwards: ")


def test_another_error_of_a_failing_sensor_is_a_new_line(stack: Stack) -> None:
    watcher = stack.watcher(since=stack.clock)
    stack.tick("raise " + BACKWARDS.format(n=703))
    assert len(watcher.poll()) == 1
    stack.tick("keyerror 'alert_target'")
    (line,) = watcher.poll()
    assert line.startswith("sensor failing: flights_offsets: KeyError: ")
    assert "alert_target" in line


def test_ticks_of_an_earlier_session_are_not_printed(stack: Stack) -> None:
    stack.tick("raise " + BACKWARDS.format(n=703))
    watcher = stack.watcher(since=stack.clock + 1)  # `freshlake dev` started again after that tick
    assert watcher.poll() == []
    stack.tick("raise " + BACKWARDS.format(n=703))
    assert len(watcher.poll()) == 1
