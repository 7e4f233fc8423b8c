"""What `freshlake dev` prints while it runs: one line per failed run, per page, and per sensor
that starts failing or recovers; nothing routine.

Dagster's own output goes to `$FRESHLAKE_HOME/logs/dagster.log`; this reads the instance instead
(run records, the check and freshness states the alert sensor pages on, decided the same way, so
the terminal shows a page even where no alert target is configured; and each sensor's newest
tick, since a sensor that raises every tick launches no run that could fail). At Ctrl-C it
cancels the runs in flight through Dagster (CANCELED, not a FAILURE that run retries would start
again).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from freshlake.streams import StreamSpec

log = logging.getLogger(__name__)

POLL_SECONDS = 5.0
CANCEL_WAIT_SECONDS = 15.0
REASON_CHARS = 160


class Watcher:
    """Polls the Dagster instance of `dagster_home`; `say` gets each line to print."""

    def __init__(
        self,
        *,
        dagster_home: Path,
        streams: Sequence[StreamSpec],
        ui_url: str,
        say: Callable[[str], None],
        since: float | None = None,
        logs: Path | None = None,
    ) -> None:
        self.dagster_home, self.ui_url, self.say, self.logs = dagster_home, ui_url, say, logs
        self.since = datetime.fromtimestamp(since or time.time(), tz=UTC)
        self.asset_keys, self.check_keys = _watched(streams)
        self.seen_runs: set[str] = set()
        self.open_incidents: dict = {}
        self.failing_sensors: dict[str, _Failing] = {}  # selector id -> the failure last printed
        self._last_tick: dict[str, int] = {}  # selector id -> id of the newest tick looked at
        self._instance: Any = None

    @property
    def instance(self):
        if self._instance is None:
            from dagster import DagsterInstance

            self._instance = DagsterInstance.from_config(str(self.dagster_home))
        return self._instance

    def poll(self) -> list[str]:
        """New failed runs, page/resolve decisions and sensor failures/recoveries since the last
        poll, as lines. Each source on its own: one that cannot be read does not hide the others."""
        lines: list[str] = []
        for source in (self._failed_runs, self._pages, self._sensor_ticks):
            try:
                lines += source()
            except Exception as exc:
                log.debug("watcher source %s failed: %s", source.__name__, exc)
        return lines

    def run(self, stop: threading.Event, *, interval: float = POLL_SECONDS) -> None:
        while not stop.wait(interval):
            try:
                for line in self.poll():
                    self.say(line)
            except Exception as exc:  # the watcher is a convenience: never take dev down
                log.debug("watcher poll failed: %s", exc)

    def _failed_runs(self) -> list[str]:
        from dagster import DagsterRunStatus, RunsFilter

        records = self.instance.get_run_records(
            filters=RunsFilter(statuses=[DagsterRunStatus.FAILURE], updated_after=self.since), limit=50
        )
        lines = []
        for record in reversed(records):
            run = record.dagster_run
            if run.run_id in self.seen_runs:
                continue
            self.seen_runs.add(run.run_id)
            lines.append(
                f"run failed: {run.job_name} {run.run_id[:8]}: {self._reason(run.run_id)}"
                f"  ({self.ui_url}/runs/{run.run_id})"
            )
        return lines

    def _reason(self, run_id: str) -> str:
        from dagster import DagsterEventType

        records = self.instance.all_logs(
            run_id, of_type={DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE}
        )
        for record in records:
            event = record.dagster_event
            data = getattr(event, "event_specific_data", None)
            error = getattr(data, "error", None)
            while error is not None and getattr(error, "cause", None) is not None:
                error = error.cause  # Dagster's wrapper first, the code's own error last
            if error is not None and getattr(error, "message", None):
                return _one_line(error.message)
        if records and records[-1].dagster_event is not None:
            return _one_line(records[-1].dagster_event.message or "failed")
        return "failed"

    def _pages(self) -> list[str]:
        from freshlake.alerts import incidents
        from freshlake.sensors.alerts import observe

        observations = observe(self.instance, asset_keys=self.asset_keys, check_keys=self.check_keys)
        notes = incidents.decide(self.open_incidents, observations)
        self.open_incidents = incidents.apply(self.open_incidents, notes, now=time.time())
        lines = []
        for note in notes:
            if note.action == "resolve":
                lines.append(f"resolved: {note.asset} {note.condition} is {note.state} again")
                continue
            why = note.details.get("description") or note.details.get("since") or ""
            lines.append(
                f"page: {note.state} {note.asset} {note.condition}" + (f": {_one_line(why)}" if why else "")
            )
        return lines

    def _sensor_ticks(self) -> list[str]:
        """A line when a running sensor's newest finished tick fails with an error not already
        printed for it (digits aside: counts and offsets in a message change from tick to tick),
        and one when a sensor that was printed as failing finishes a tick without error again.
        Cheap: one read of the sensor states and one of their newest ticks (one per sensor where
        the storage has no batch query)."""
        from dagster._core.scheduler.instigation import InstigatorType, TickStatus

        instance = self.instance
        if instance.schedule_storage is None:  # an ephemeral instance keeps no ticks
            return []
        states = [
            s for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR) if s.is_running
        ]
        finished = [TickStatus.FAILURE, TickStatus.SUCCESS, TickStatus.SKIPPED]
        if instance.supports_batch_tick_queries:
            # The newest two, filtered here: Dagster 1.13's SQL get_batch_ticks raises when given
            # `statuses`. A tick in progress is STARTED; the one before it is finished.
            newest = instance.get_batch_ticks([s.selector_id for s in states], limit=2)
        else:
            newest = {
                s.selector_id: instance.get_ticks(
                    s.instigator_origin_id, s.selector_id, limit=1, statuses=finished
                )
                for s in states
            }
        lines = []
        for state in sorted(states, key=lambda s: s.name):
            tick = next((t for t in newest.get(state.selector_id) or [] if t.status in finished), None)
            if tick is None:
                continue
            if (
                tick.timestamp < self.since.timestamp()
                or self._last_tick.get(state.selector_id) == tick.tick_id
            ):
                continue  # a tick of an earlier session, or one already looked at
            self._last_tick[state.selector_id] = tick.tick_id
            failing = self.failing_sensors.get(state.selector_id)
            if tick.status != TickStatus.FAILURE:
                if failing is not None:
                    del self.failing_sensors[state.selector_id]
                    since = datetime.fromtimestamp(failing.since).astimezone().strftime("%H:%M:%S")
                    lines.append(f"sensor recovered: {state.name} (failing since {since})")
                continue
            summary = _sensor_error(tick.error)
            shape = re.sub(r"\d+", "#", summary)
            if failing is not None and failing.shape == shape:
                continue  # the same error again: printed once
            self.failing_sensors[state.selector_id] = _Failing(
                name=state.name, shape=shape, since=failing.since if failing else tick.timestamp
            )
            where = self._sensor_url(state) + (f", {self.logs / 'dagster.log'}" if self.logs else "")
            lines.append(f"sensor failing: {state.name}: {summary}  (shown once until it recovers; {where})")
        for gone in set(self.failing_sensors) - {s.selector_id for s in states}:
            del self.failing_sensors[gone]  # stopped in the UI, or no longer defined: not failing
        return lines

    def _sensor_url(self, state) -> str:
        """The sensor's page in the UI, as the UI spells it (no `__repository__@` for the default)."""
        from urllib.parse import quote

        origin = state.origin.repository_origin
        location = quote(origin.code_location_origin.location_name, safe="")
        repo = "" if origin.repository_name == "__repository__" else f"{origin.repository_name}@"
        return f"{self.ui_url}/locations/{repo}{location}/sensors/{quote(state.name, safe='')}"

    def status_line(self) -> str:
        """One line on demand (Enter in the terminal): runs in flight, failures, open pages,
        failing sensors."""
        from dagster import DagsterRunStatus, RunsFilter

        flying = self.instance.get_runs(
            filters=RunsFilter(
                statuses=[DagsterRunStatus.QUEUED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]
            )
        )
        jobs = sorted({r.job_name for r in flying})
        pages = sorted(f"{i.asset} {i.condition}" for i in self.open_incidents.values())
        sensors = sorted(f.name for f in self.failing_sensors.values())
        return (
            f"status: {len(flying)} runs queued or running ({', '.join(jobs) or 'none'}); "
            f"{len(self.seen_runs)} failed since start; pages open: {', '.join(pages) or 'none'}; "
            f"sensors failing: {', '.join(sensors) or 'none'} "
            f"(`freshlake status` for lags, {self.ui_url})"
        )

    def on_enter(self, stop: threading.Event, lines) -> None:
        """Print `status_line()` for every line typed (`lines`: the terminal's stdin)."""
        for _ in iter(lines.readline, ""):
            if stop.is_set():
                return
            try:
                self.say(self.status_line())
            except Exception as exc:
                log.debug("status line failed: %s", exc)

    def cancel_runs(self) -> str | None:
        """Cancel every run still queued or in flight; wait for them to end. A line, or None."""
        from dagster import DagsterRunStatus, RunsFilter

        instance = self.instance
        queued = instance.get_runs(
            filters=RunsFilter(statuses=[DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED])
        )
        for run in queued:
            instance.report_run_canceled(run, message="freshlake dev stopped before this run started")
        flying = instance.get_runs(
            filters=RunsFilter(statuses=[DagsterRunStatus.STARTING, DagsterRunStatus.STARTED])
        )
        for run in flying:
            try:
                instance.run_launcher.terminate(run.run_id)
            except Exception as exc:  # its code server is gone: the group's SIGINT ends it
                log.debug("terminate %s: %s", run.run_id, exc)
        deadline = time.monotonic() + CANCEL_WAIT_SECONDS
        ids = [r.run_id for r in flying]
        while ids and time.monotonic() < deadline:
            ids = [i for i in ids if not (instance.get_run_by_id(i) or _Done).is_finished]
            time.sleep(0.3)
        if not (queued or flying):
            return None
        return f"cancelled {len(flying)} running and {len(queued)} queued runs" + (
            f" ({len(ids)} still stopping)" if ids else ""
        )


class _Done:
    is_finished = True


@dataclass(frozen=True, slots=True, kw_only=True)
class _Failing:
    """A sensor printed as failing: its name, its error's shape, and its first failed tick's time."""

    name: str
    shape: str
    since: float


# Dagster's wrappers around the sensor's own error; the unreachable-code-server error is kept:
# its own message ("Unable to reach the user code server for sensor ...") says it best.
_WRAPPERS = frozenset({"SensorExecutionError", "DagsterUserCodeProcessError", "DagsterUserCodeLoadError"})


def _sensor_error(error) -> str:
    """The sensor code's own error in one line, `Class: message`, without Dagster's wrappers."""
    while error is not None and error.cls_name in _WRAPPERS and error.cause is not None:
        error = error.cause
    if error is None:
        return "failed"
    message = re.sub(r"^[\w.]+\.(\w+): ", r"\1: ", str(error.message).strip())  # no module path
    return _one_line(message or error.cls_name or "failed")


def _watched(streams: Sequence[StreamSpec]) -> tuple[list, list]:
    """What the alert sensor watches: freshness of each layer, and every check of the stream."""
    from freshlake.assets.checks import (
        consumer_lag_check_key,
        event_time_lag_check_key,
        quarantine_check_key,
    )
    from freshlake.assets.keys import current_key, embeddings_key, quarantine_key, raw_key

    assets, checks = [], []
    for spec in streams:
        assets += [raw_key(spec), quarantine_key(spec), current_key(spec)]
        if spec.document is not None:
            assets.append(embeddings_key(spec))
        checks += [consumer_lag_check_key(spec), event_time_lag_check_key(spec), quarantine_check_key(spec)]
    return assets, checks


def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= REASON_CHARS else line[: REASON_CHARS - 3] + "..."
