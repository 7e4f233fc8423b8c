"""PostgreSQL SIGKILLed and restarted under a running `dagster-daemon` on the prod profile.

The daemon (no webserver: 2 cores) loads this checkout's code location on one test stream and its
offsets sensor launches streaming runs through the queued run coordinator, all on the stack's
Postgres-backed instance; runs embed through the profile's token-guarded embedding service (a
hash embedder in it, so no model is loaded). PostgreSQL goes down under a running run, once an
earlier run has succeeded, while events are still being produced. The daemon must stay up and
keep launching runs, and raw, `current` and LanceDB must end with every offset exactly once.

What Dagster 1.13 / dagster-postgres 0.29 do (seen in the daemon's log): every connect is retried
5 times (~6 s in all, not configurable in dagster.yaml), so a plain restart (~0.3 s) is ridden
out. Past that, daemon iterations fail and are tried again on their next tick, and a run whose
event write fails is marked failed and retried by `run_retries`. The daemon also starts fresh
code servers every 60 s, and a code server that starts while Postgres is down fails to load
(it opens the instance): the location stays in error until the next reload, up to 60 s after
Postgres is back. Until then sensors do not tick and an automatic retry attempted in that window
is dropped ("Failed to retry run"); the offsets sensor then starts a run from raw's committed
offsets, so nothing is lost.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from freshlake.procs import stop_group
from tests.demo_streams import EXAMPLE_FILE
from tests.prod.helpers import Producer, current_state, flights_spec, log_events, model, raw_rows

pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parents[2]
EVENTS_BEFORE, EVENTS_AFTER = 1000, 500
# Bursts, not a trickle: Tansu on S3 writes one object per produced batch and lists them all on
# each fetch, so 1,500 one-record batches slow every fetch to seconds (seen: "no fetch answer").
BURST, BURST_GAP_S = 40, 1.5
# Streaming runs (the default mode) kept short, so several runs start and end around the restart.
BATCHING = {"max_records_per_run": 200, "max_wait_seconds": 1, "max_run_seconds": 15, "idle_seconds": 5}
FIRST_SUCCESS_S, DRAIN_S, HEARTBEAT_S, STOP_S = 300, 240, 90, 30


def write_streams(path: Path, *, name: str, topic: str) -> Path:
    """One stream file: the example's `flights` stream renamed onto `topic` (its own tables)."""
    import yaml

    example = yaml.safe_load(EXAMPLE_FILE.read_text())
    flights = next(s for s in example["streams"] if s["name"] == "flights")
    path.write_text(
        yaml.safe_dump({"streams": [{**flights, "name": name, "topic": topic, "batching": BATCHING}]})
    )
    return path


def produce_in_bursts(producer: Producer, numbers: range) -> threading.Thread:
    """`numbers` in bursts of `BURST`, each flushed, `BURST_GAP_S` apart, from a thread."""

    def produce() -> None:
        for start in range(numbers.start, numbers.stop, BURST):
            producer.produce(range(start, min(start + BURST, numbers.stop)))
            producer.flush(30)
            time.sleep(BURST_GAP_S)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    return thread


class Daemon:
    """`dagster-daemon run` in its own process group: the code server and the run workers it
    launches are in that group too, so stopping the group leaves no process."""

    def __init__(self, *, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "dagster._daemon", "run", "-w", str(ROOT / "workspace.yaml")],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def tail(self, chars: int = 3000) -> str:
        return f"daemon log tail:\n{self.log()[-chars:]}"

    def stop(self) -> None:
        """SIGINT to the group (the daemon's and the run workers' clean path), SIGKILL what is left."""
        gone = stop_group(self.process, sig=signal.SIGINT, timeout=STOP_S)
        assert gone, f"processes of the daemon's group {self.process.pid} survived SIGKILL"


def wait_until(
    check: Callable[[], bool], *, timeout: float, what: str, daemon: Daemon, required: bool = True
) -> bool:
    """Poll `check` (its exceptions count as "not yet": Postgres or a table may be missing).
    Not `required`: False on timeout, for the caller's own assertions to say what is off."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert daemon.alive(), f"the daemon exited (code {daemon.process.returncode}); {daemon.tail()}"
        with contextlib.suppress(Exception):
            if check():
                return True
        time.sleep(1)
    assert not required, f"{what}: not within {timeout:.0f}s; {daemon.tail()}"
    return False


def stream_runs(instance, *, name: str) -> list:
    """Run records of the stream's streaming runs (sensor-launched and their retries), oldest first."""
    import dagster as dg

    from freshlake.assets.streaming import STREAMING_TAG

    records = instance.get_run_records(filters=dg.RunsFilter(tags={STREAMING_TAG: name}))
    return sorted(records, key=lambda r: r.create_timestamp)


def failure_of(instance, run_id: str) -> str:
    """The first step or run failure message of a run, shortened."""
    import dagster as dg

    for kind in (dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE):
        for record in instance.get_records_for_run(run_id, of_type=kind).records:
            event = record.event_log_entry.dagster_event
            error = getattr(event.event_specific_data, "error", None)
            text = error.message if error is not None else (event.message or "")
            return " ".join(text.split())[:240]
    return "(no failure event)"


# What the daemon's log shows of an outage (each message is logged twice: Dagster's colored handler
# and a plain `LEVEL:logger:` copy, which is not counted).
DAEMON_SIGNS = {
    "connect retries": "Retrying failed database connection",
    "daemon iterations failed": "Caught error:",
    "sensor/asset daemon errors": "caught an error",
    "heartbeats not written": "Failed to add heartbeat",
    "code server loads failed": "Error while importing code",
    "automatic retries dropped": "Failed to retry run",
}


def daemon_signs(text: str) -> dict[str, int]:
    lines = [
        line for line in text.splitlines() if not line.startswith(("INFO:dag", "WARNING:dag", "ERROR:dag"))
    ]
    return {what: sum(sign in line for line in lines) for what, sign in DAEMON_SIGNS.items()}


def describe(instance, record, *, since: float) -> tuple[str, str, float, str, str]:
    """(run id, status, created s after `since`, launched by, failure) of a run record."""
    run = record.dagster_run
    parent = run.tags.get("dagster/parent_run_id")
    origin = f"retry of {parent[:8]}" if parent and "dagster/retry_number" in run.tags else "sensor"
    failure = failure_of(instance, run.run_id) if run.is_failure else ""
    return (
        run.run_id[:8],
        run.status.value,
        round(record.create_timestamp.timestamp() - since, 1),
        origin,
        failure,
    )


def lance_documents(storage, spec) -> dict[str, tuple[int, int]]:
    """key -> (partition, offset) of its first chunk in the live LanceDB table; no chunk twice."""
    store = storage.live_store(spec)
    assert store is not None, "no live LanceDB table"
    rows = store.table.to_arrow().to_pylist()
    chunks = Counter((r["key"], r["chunk_index"]) for r in rows)
    assert max(chunks.values()) == 1, "a chunk written twice in LanceDB"
    return {r["key"]: (r["source_partition"], r["source_offset"]) for r in rows if r["chunk_index"] == 0}


@contextlib.contextmanager
def running_daemon(env: dict[str, str], log_path: Path) -> Iterator[Daemon]:
    daemon = Daemon(env=env, log_path=log_path)
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.mark.parametrize("down_s", [0, 15, 45], ids=["restart", "down-15s", "down-45s"])
def test_postgres_restarted_under_the_daemon_loses_and_doubles_nothing(
    prod_stack, kafka_config, tmp_path, down_s
) -> None:
    """`down_s` 0: `Postgres.restart()` (SIGKILL + start, inside dagster-postgres's ~6 s of connect
    retries); 15: past them; 45: likely to span one of the daemon's 60 s code-server reloads."""
    import dagster as dg

    from freshlake.config import load_streams
    from freshlake.resources.storage import StorageResource
    from tests.prod.slow_embedder import SlowService

    topic = flights_spec(kafka_config).topic  # creates the topic (3 partitions)
    name = f"pgdaemon_{uuid.uuid4().hex[:6]}"
    streams = write_streams(tmp_path / "streams.yaml", name=name, topic=topic)
    spec = load_streams(str(streams)).stream(name)
    storage = StorageResource()  # the profile's FRESHLAKE_DELTA_URI / _LANCE_URI / storage options
    tables, current_uri = storage.raw_tables(spec), storage.delta_uri(spec, "current")
    producer = Producer(kafka_config, topic)

    with (
        SlowService(token=prod_stack.embedder_token, delay=0) as embedder,
        dg.DagsterInstance.from_config(str(prod_stack.dagster_home)) as instance,
    ):
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        env = {
            **os.environ,
            **prod_stack.env(),
            "FRESHLAKE_STREAMS": str(streams),
            "FRESHLAKE_EMBEDDER_URL": embedder.url,
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
        with running_daemon(env, tmp_path / "daemon.log") as daemon:
            before = produce_in_bursts(producer, range(EVENTS_BEFORE))
            wait_until(
                lambda: any(r.dagster_run.is_success for r in stream_runs(instance, name=name)),
                timeout=FIRST_SUCCESS_S,
                what="a streaming run succeeded before the restart",
                daemon=daemon,
            )
            wait_until(  # under a run: its worker writes events to Postgres as batches land
                lambda: any(
                    r.dagster_run.status == dg.DagsterRunStatus.STARTED and time.time() - r.start_time > 3
                    for r in stream_runs(instance, name=name)
                ),
                timeout=FIRST_SUCCESS_S,
                what="a streaming run in progress",
                daemon=daemon,
            )
            # From this (long-lived) thread: the server's PR_SET_PDEATHSIG fires when the thread
            # that started it exits.
            restart_began = time.time()
            if down_s:
                prod_stack.postgres.kill()
                time.sleep(down_s)
                prod_stack.postgres.process = None
                prod_stack.postgres.start()
            else:
                prod_stack.postgres.restart()
            restarted = time.time()
            after = produce_in_bursts(producer, range(EVENTS_BEFORE, EVENTS_BEFORE + EVENTS_AFTER))
            before.join(120)
            after.join(120)
            assert producer.flush(60) == 0
            assert not producer.failed, producer.failed[:3]
            log = log_events(kafka_config, topic)
            assert sorted(log.values()) == list(range(EVENTS_BEFORE + EVENTS_AFTER)), "the broker lost events"

            def drained() -> bool:
                if any(not r.dagster_run.is_finished for r in stream_runs(instance, name=name)):
                    return False
                current = current_state(current_uri, tables.storage_options)
                return (
                    sorted(raw_rows(tables)) == sorted((p, o, v) for (p, o), v in log.items())
                    and {key: log[c] for key, c in current.items()} == model(log.values())
                    and lance_documents(storage, spec) == current
                )

            drained_in_time = wait_until(
                drained, timeout=DRAIN_S, what="drained", daemon=daemon, required=False
            )
            wait_until(
                lambda: all(
                    (beat := instance.get_daemon_heartbeats().get(kind)) is not None
                    and beat.timestamp > restarted
                    for kind in instance.get_required_daemon_types()
                ),
                timeout=HEARTBEAT_S,
                what="every daemon thread beat after the restart",
                daemon=daemon,
            )
            assert daemon.alive(), daemon.tail()
            runs = stream_runs(instance, name=name)
            summary = [describe(instance, r, since=restart_began) for r in runs]
            daemon_log = daemon.log()

    back = restarted - restart_began
    relaunched = min((s[2] - back for s in summary if s[2] > 0), default=None)
    print(f"\n[{down_s=}] Postgres down {back:.1f}s; first run created {relaunched}s after it was back")
    print(f"runs (id, status, created s after the restart began, launched by, failure): {summary}")
    print(f"daemon log: {daemon_signs(daemon_log)}")
    rows = raw_rows(tables)
    coords = [(p, o) for p, o, _ in rows]
    assert len(coords) == len(set(coords)), "an offset twice in raw"
    assert {(p, o): v for p, o, v in rows} == log, "raw != the topic's records"
    current = current_state(current_uri, tables.storage_options)
    assert {key: log[c] for key, c in current.items()} == model(log.values()), "current != the model"
    assert lance_documents(storage, spec) == current, "LanceDB documents != current"
    failed = [s for s in summary if s[1] == "FAILURE"]
    runs_seen = (
        f"{len(summary)} runs, {len(failed)} failed: {summary}; daemon log: {daemon_signs(daemon_log)}"
    )
    assert drained_in_time, (
        f"raw, current and LanceDB not complete with all runs ended in {DRAIN_S}s; {runs_seen}"
    )
    assert any(s[1] == "SUCCESS" and s[2] <= 0 for s in summary), f"no run succeeded before; {runs_seen}"
    assert any(s[1] == "SUCCESS" and s[2] > 0 for s in summary), (
        f"no run the sensor launched after the restart succeeded; {runs_seen}"
    )
