"""`freshlake status`: per stream, watermark, committed offset, lag, event-time lag, SLO state.

Exit code 0 when every stream is within its SLO, 1 when any stream FAILs (consumer lag over
`max_consumer_lag`, event-time lag over the fail window, or Kafka unreadable): usable from cron
or a container health check. The last run comes from Dagster only when `DAGSTER_HOME` is set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from freshlake.lag import StreamLag, Verdict, judge, measure_lag
from freshlake.streams import StreamSpec

COLOURS = {"PASS": "\033[32m", "WARN": "\033[33m", "FAIL": "\033[31m", "UNKNOWN": "\033[90m"}
RESET = "\033[0m"


@dataclass(frozen=True, kw_only=True)
class LastRun:
    run_id: str
    status: str
    ended_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class StreamStatus:
    spec: StreamSpec
    lag: StreamLag
    verdict: Verdict
    last_run: LastRun | None = None

    @property
    def failing(self) -> bool:
        return self.verdict.state == "FAIL"

    def as_dict(self) -> dict[str, Any]:
        lag = self.lag
        seconds = lag.event_time_lag_seconds
        return {
            "stream": self.spec.name,
            "topic": lag.topic,
            "watermark": lag.watermark_total,
            "committed": lag.committed_total,
            "consumer_lag": lag.consumer_lag,
            "event_time_lag_seconds": None if seconds is None else round(seconds, 3),
            "newest_event_time": None if lag.newest_event_time is None else lag.newest_event_time.isoformat(),
            "event_time_source": lag.event_time_source,
            "state": self.verdict.state,
            "reasons": list(self.verdict.reasons),
            "slo": {
                "warn_after_seconds": self.spec.freshness.warn_after_seconds,
                "fail_after_seconds": self.spec.freshness.fail_after_seconds,
                "max_consumer_lag": self.spec.freshness.max_consumer_lag,
            },
            "last_run": None
            if self.last_run is None
            else {
                "run_id": self.last_run.run_id,
                "status": self.last_run.status,
                "ended_at": None if self.last_run.ended_at is None else self.last_run.ended_at.isoformat(),
            },
            "error": lag.error,
        }


STATUS_TIMEOUT_S = 5.0


def probe_storage_options(options: Mapping[str, str] | None, *, timeout: float) -> dict[str, str] | None:
    """`options` with a retry budget a status probe can afford. Writers ride out an outage with
    long backed-off retries (tens of seconds); a person waiting on `freshlake status` wants the
    answer, or the store's error, within `timeout`."""
    if not options:
        return None if options is None else {}
    return {
        **options,
        "retry_timeout": f"{max(1.0, timeout - 1.0):g}s",
        "backoff_config.init_backoff": "100ms",
        "backoff_config.max_backoff": "1s",
        "backoff_config.base": "2",
    }


def status_report(
    *,
    kafka_config: Mapping[str, object],
    delta_root: str,
    lance_root: str,
    specs: Sequence[StreamSpec],
    storage_options: Mapping[str, str] | None = None,
    now: datetime | None = None,
    last_runs: Mapping[str, LastRun] | None = None,
    timeout: float = STATUS_TIMEOUT_S,
) -> list[StreamStatus]:
    """Measure and judge every stream in `specs`, all at once within about `timeout` seconds.

    One metadata request first: a broker that does not answer costs `timeout` once, not once per
    stream, and every stream then reports the same error (its Delta/LanceDB side still measured).
    """
    import threading
    import time
    from concurrent.futures import Future, wait

    from freshlake.errors import FreshlakeError
    from freshlake.kafka.topics import cluster_metadata

    started = time.monotonic()
    config = dict(kafka_config)
    storage_options = probe_storage_options(storage_options, timeout=timeout)
    try:
        # Leaves ~2 s of the budget for the reason of a refusal (login, certificate) and the stores.
        cluster_metadata(config, timeout=max(1.0, timeout - 2.0))
        down = None
    except FreshlakeError as exc:
        down = _down_message(config, exc)
    left = max(1.0, timeout - (time.monotonic() - started))

    def one(spec: StreamSpec) -> StreamLag:
        if down is not None:  # the stores only: asking Kafka again would wait again
            return _offline_lag(
                spec,
                delta_root=delta_root,
                lance_root=lance_root,
                storage_options=storage_options,
                now=now,
                error=down,
            )
        return measure_lag(
            spec,
            kafka_config=config,
            raw_uri=f"{delta_root}/{spec.name}/raw",
            current_uri=f"{delta_root}/{spec.name}/current",
            lance_uri=lance_root,
            storage_options=storage_options,
            now=now,
            timeout=left,
        )

    # One daemon thread per stream, not a pool: a probe stuck in a store's retries must not keep
    # the process alive after the answer is printed (a pool's workers are joined at exit).
    futures: dict[str, Future[StreamLag]] = {spec.name: Future() for spec in specs}

    def probe(spec: StreamSpec, future: Future[StreamLag]) -> None:
        try:
            future.set_result(one(spec))
        except BaseException as exc:
            future.set_exception(exc)

    for spec in specs:
        threading.Thread(
            target=probe, args=(spec, futures[spec.name]), name=f"status-{spec.name}", daemon=True
        ).start()
    wait(futures.values(), timeout=left + 1.0)
    out = []
    for spec in specs:
        future = futures[spec.name]
        if future.done() and future.exception() is None:
            lag = future.result()
        else:
            why = "no answer within the status timeout" if not future.done() else str(future.exception())
            lag = StreamLag(stream=spec.name, topic=spec.topic, measured_at=now or _now(), error=why)
        out.append(
            StreamStatus(
                spec=spec, lag=lag, verdict=judge(lag, spec), last_run=(last_runs or {}).get(spec.name)
            )
        )
    return out


def _down_message(config: Mapping[str, object], exc: Exception) -> str:
    text = str(exc)
    if not text.startswith("no Kafka broker answers"):
        return text  # a rejected login, an untrusted certificate: the connection module's words
    from freshlake.dev import NO_BROKER

    return f"no Kafka broker answers at {config.get('bootstrap.servers')}: {NO_BROKER}"


def _offline_lag(
    spec: StreamSpec,
    *,
    delta_root: str,
    lance_root: str,
    storage_options: Mapping[str, str] | None,
    now: datetime | None,
    error: str,
) -> StreamLag:
    from freshlake.lag import newest_current_event_time, newest_searchable_event_time

    if spec.document is not None:
        newest = newest_searchable_event_time(
            lance_uri=lance_root, stream=spec.name, storage_options=storage_options
        )
        source = "lancedb"
    else:
        newest = newest_current_event_time(
            f"{delta_root}/{spec.name}/current", storage_options=storage_options
        )
        source = "delta-current"
    return StreamLag(
        stream=spec.name,
        topic=spec.topic,
        measured_at=now or _now(),
        newest_event_time=newest,
        event_time_source=source if newest is not None else "none",
        error=error,
    )


def _now() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)


def exit_code(statuses: Sequence[StreamStatus]) -> int:
    return 1 if any(s.failing for s in statuses) else 0


def last_runs_from_dagster(
    specs: Sequence[StreamSpec], *, env: Mapping[str, str] | None = None
) -> dict[str, LastRun]:
    """The newest run per stream (tag `freshlake/stream`), when `DAGSTER_HOME` is set; else {}."""
    env = os.environ if env is None else env
    home = env.get("DAGSTER_HOME")
    if not home or not os.path.exists(os.path.join(home, "dagster.yaml")):
        return {}
    try:
        from dagster import DagsterInstance, RunsFilter

        out: dict[str, LastRun] = {}
        with DagsterInstance.get() as instance:
            for spec in specs:
                records = instance.get_run_records(
                    filters=RunsFilter(tags={"freshlake/stream": spec.name}), limit=1
                )
                if records:
                    record = records[0]
                    out[spec.name] = LastRun(
                        run_id=record.dagster_run.run_id,
                        status=record.dagster_run.status.value,
                        ended_at=record.end_time and datetime.fromtimestamp(record.end_time).astimezone(),
                    )
        return out
    except Exception:  # the last run is a nicety: status must still print
        return {}


def render(statuses: Sequence[StreamStatus], *, colour: bool) -> str:
    """A fixed-width table, one line per stream, then the reasons for anything not PASS."""
    header = ["STREAM", "WATERMARK", "COMMITTED", "LAG", "EVENT LAG", "STATE", "LAST RUN"]
    rows = []
    for s in statuses:
        d = s.as_dict()
        seconds = d["event_time_lag_seconds"]
        run = "-" if s.last_run is None else f"{s.last_run.status.lower()} {s.last_run.run_id[:8]}"
        rows.append(
            [
                s.spec.name,
                "?" if s.lag.error else str(d["watermark"]),
                "?" if s.lag.error else str(d["committed"]),
                "?" if d["consumer_lag"] is None else str(d["consumer_lag"]),
                "-" if seconds is None else _duration(seconds),
                s.verdict.state,
                run,
            ]
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    for s, row in zip(statuses, rows, strict=True):
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=True)]
        if colour:
            cells[5] = COLOURS[s.verdict.state] + cells[5] + RESET
        lines.append("  ".join(cells).rstrip())
    shared = set.intersection(*(set(s.verdict.reasons) for s in statuses)) if len(statuses) > 1 else set()
    lines += [f"every stream: {reason}" for reason in sorted(shared)]  # a broker down: said once
    for s in statuses:
        lines += [f"{s.spec.name}: {reason}" for reason in s.verdict.reasons if reason not in shared]
    return "\n".join(lines)


def render_json(statuses: Sequence[StreamStatus]) -> str:
    return json.dumps([s.as_dict() for s in statuses], indent=2)


def _duration(seconds: float) -> str:
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{sign}{seconds / size:.1f}{unit}"
    return f"{sign}{seconds:.1f}s"
