"""Freshness: event produced to Kafka -> searchable in LanceDB, through the whole `freshlake dev` stack.

Starts `freshlake dev --streams FILE` without a producer (broker, warm embedder, Dagster webserver
+ daemon) with a temporary FRESHLAKE_HOME, produces hand-made flight events with unique keys at a
steady rate to one topic, polls the stream's LanceDB table until every event's (partition, offset)
has a row, then reads the runs of that stream from the Dagster instance to split the latency into:
sensor wait (produce -> run created), run launch (created -> first step start), and the raw /
current / embeddings step durations. JSON to stdout and `bench/results/freshness.json`.

    .venv/bin/python -m bench.freshness [--rate 20] [--events 300] [--stream flights] [--streams FILE]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
UP_TIMEOUT_S = 240.0
SEARCHABLE_TIMEOUT_S = 180.0
POLL_S = 0.2


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "n": len(values),
        "p50": round(statistics.median(values), 3),
        "p95": round(pct(values, 95), 3),
        "max": round(max(values), 3),
        "min": round(min(values), 3),
    }


class LoadSampler(threading.Thread):
    """1-minute load average, sampled every second while the measurement runs."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="load-sampler")
        self.samples: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(1.0):
            self.samples.append(os.getloadavg()[0])


# -- the stack ----------------------------------------------------------------------------------


def start_dev(home: Path, log_path: Path, port: int, streams: str) -> tuple[subprocess.Popen[bytes], str]:
    env = {k: v for k, v in os.environ.items() if k not in {"KAFKA_BOOTSTRAP_SERVERS", "DAGSTER_HOME"}}
    env.update(FRESHLAKE_HOME=str(home), PYTHONUNBUFFERED="1")
    log = log_path.open("w")
    dev = subprocess.Popen(
        [sys.executable, "-m", "freshlake.cli", "dev", "--streams", streams, "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + UP_TIMEOUT_S
    while time.monotonic() < deadline:
        if dev.poll() is not None:
            msg = f"freshlake dev exited with {dev.returncode}:\n{log_path.read_text()[-3000:]}"
            raise RuntimeError(msg)
        found = re.search(r"freshlake is up: .* broker (\S+)", log_path.read_text())
        if found:
            return dev, found.group(1)
        time.sleep(0.5)
    stop_dev(dev)
    msg = f"freshlake dev not up after {UP_TIMEOUT_S:.0f}s:\n{log_path.read_text()[-3000:]}"
    raise RuntimeError(msg)


def stop_dev(dev: subprocess.Popen[bytes]) -> int:
    """SIGINT (its clean path: dagster group, embedder, broker), then wait; kill only as a last resort."""
    if dev.poll() is None:
        dev.send_signal(signal.SIGINT)
        try:
            dev.wait(timeout=90)
        except subprocess.TimeoutExpired:
            dev.kill()
            dev.wait()
    return dev.returncode


# -- producing ----------------------------------------------------------------------------------


class Events:
    """Produce flight events with unique keys; remember produce time and (partition, offset)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from confluent_kafka import Producer

        from examples.flight_assistant.producer import PRODUCER_DEFAULTS

        self.topic = topic
        settings = {**PRODUCER_DEFAULTS, "bootstrap.servers": bootstrap, "linger.ms": 5}
        try:
            self.producer = Producer(settings)
        except Exception:  # no lz4 in this librdkafka build
            self.producer = Producer({**settings, "compression.type": "none"})
        self.tag = uuid.uuid4().hex[:6]
        self.produced_at: dict[str, float] = {}  # key -> wall time of produce()
        self.position: dict[str, tuple[int, int]] = {}  # key -> (partition, offset)
        self.errors: list[str] = []

    def close(self) -> None:
        if self.producer is not None:
            self.producer.flush(5)
            self.producer = None  # drops the client (and its broker connections)

    def _deliver(self, err: object, message: Any) -> None:
        if err is not None:
            self.errors.append(str(err))
            return
        self.position[message.key().decode()] = (message.partition(), message.offset())

    def send(self, i: int, phase: str) -> str:
        now = datetime.now(UTC)
        key = f"BX{i:05d}-{self.tag}-{phase}"
        departs = (now + timedelta(hours=2)).replace(second=0, microsecond=0)
        record = {
            "flight_id": key,
            "flight_number": f"BX{100 + i % 900}",
            "airline": "Bench Air",
            "origin": "SFO",
            "origin_city": "San Francisco",
            "destination": "JFK",
            "destination_city": "New York",
            "status": "delayed" if i % 3 else "scheduled",
            "scheduled_departure": departs.isoformat(timespec="microseconds"),
            "estimated_departure": (departs + timedelta(minutes=15 * (i % 4))).isoformat(
                timespec="microseconds"
            ),
            "gate": f"B{i % 40 + 1}",
            "delay_minutes": 15 * (i % 4),
            "reason": "late inbound aircraft" if i % 4 else None,
            "event_time": now.isoformat(timespec="microseconds"),
            "version": 1,
        }
        value = json.dumps(record, separators=(",", ":")).encode()
        while True:
            try:
                self.producer.produce(self.topic, key=key.encode(), value=value, on_delivery=self._deliver)
                break
            except BufferError:
                self.producer.poll(0.05)
        self.produced_at[key] = time.time()
        self.producer.poll(0)
        return key

    def steady(self, count: int, rate: float, phase: str) -> list[str]:
        keys, began = [], time.monotonic()
        for i in range(count):
            delay = began + i / rate - time.monotonic()  # scheduled from t0: no drift
            if delay > 0:
                time.sleep(delay)
            keys.append(self.send(i, phase))
        left = self.producer.flush(30)
        if left or self.errors:
            msg = f"{left} undelivered, errors: {self.errors[:3]}"
            raise RuntimeError(msg)
        return keys


# -- watching LanceDB ---------------------------------------------------------------------------


class Watcher:
    """Polls the stream's LanceDB table; first time each (partition, offset) is seen = searchable."""

    def __init__(self, lance_uri: str, stream: str) -> None:
        import lancedb

        self.db = lancedb.connect(lance_uri, read_consistency_interval=timedelta(0))
        self.lance_uri, self.stream = lance_uri, stream
        self.tbl = None
        self.version: int | None = None
        self.seen: dict[tuple[int, int], float] = {}  # (partition, offset) -> wall time seen
        self.embedded_at: dict[tuple[int, int], float] = {}

    def poll(self) -> None:
        if self.tbl is None:
            from freshlake.lance.tables import live_table_name

            name = live_table_name(uri=self.lance_uri, stream=self.stream)
            if name is None:
                return
            self.tbl = self.db.open_table(name)
        version = self.tbl.version
        if version == self.version:
            return
        now = time.time()
        rows = (
            self.tbl.search()
            .select(["source_partition", "source_offset", "embedded_at"])
            .limit(10_000_000)
            .to_arrow()
            .to_pylist()
        )
        self.version = version
        for row in rows:
            pos = (row["source_partition"], row["source_offset"])
            if pos not in self.seen:
                self.seen[pos] = now
                if row["embedded_at"] is not None:
                    self.embedded_at[pos] = row["embedded_at"].timestamp()

    def wait_for(self, positions: set[tuple[int, int]], timeout: float) -> set[tuple[int, int]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll()
            missing = positions - self.seen.keys()
            if not missing:
                return missing
            time.sleep(POLL_S)
        return positions - self.seen.keys()


# -- reading the Dagster instance ---------------------------------------------------------------


def run_timings(dagster_home: Path, stream: str) -> list[dict[str, Any]]:
    """Per run of the stream: created, started, step start/end per step key, offset ranges."""
    import dagster as dg
    from dagster import DagsterEventType, DagsterInstance

    from freshlake.sensors.offsets import STREAM_TAG

    step_marks = {DagsterEventType.STEP_START: "start", DagsterEventType.STEP_SUCCESS: "end"}
    run_marks = {
        DagsterEventType.RUN_DEQUEUED: "dequeued",
        DagsterEventType.RUN_STARTING: "starting",
        DagsterEventType.RUN_START: "started",
        DagsterEventType.RUN_SUCCESS: "succeeded",
    }
    instance = DagsterInstance.from_config(str(dagster_home))
    try:
        runs = []
        for record in instance.get_run_records(filters=dg.RunsFilter(tags={STREAM_TAG: stream})):
            run = record.dagster_run
            ops = (run.run_config or {}).get("ops", {})
            ranges = ops.get(f"{stream}_raw", {}).get("config", {}).get("offset_ranges", [])
            steps: dict[str, dict[str, float]] = {}
            marks: dict[str, float] = {}  # run lifecycle event -> first timestamp
            for event in instance.all_logs(run.run_id, of_type={*run_marks, *step_marks}):
                kind = event.dagster_event_type
                if kind in step_marks:
                    steps.setdefault(event.step_key, {})[step_marks[kind]] = event.timestamp
                else:
                    marks.setdefault(run_marks[kind], event.timestamp)
            runs.append(
                {
                    "run_id": run.run_id,
                    "status": run.status.value,
                    "created": record.create_timestamp.timestamp(),
                    "started": record.start_time,
                    "ended": record.end_time,
                    "ranges": ranges,
                    "steps": steps,
                    "marks": marks,
                }
            )
        return runs
    finally:
        instance.dispose()


def stage_of(step_key: str, stream: str) -> str | None:
    for stage in ("raw", "current", "embeddings"):
        if step_key in {f"{stream}_{stage}", f"{stream}__{stage}"}:
            return stage
    return None


# -- main ---------------------------------------------------------------------------------------


def main() -> None:
    from examples.flight_assistant import STREAMS_FILE
    from freshlake.config import load_streams
    from freshlake.kafka.broker import free_port

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=20.0, help="events per second")
    parser.add_argument("--events", type=int, default=300, help="measured events (>= 200 for the report)")
    parser.add_argument("--warmup", type=int, default=20, help="events sent (and waited for) first")
    parser.add_argument("--stream", default="flights")
    parser.add_argument("--streams", default=str(STREAMS_FILE), help="streams file `freshlake dev` runs")
    parser.add_argument("--out", default="bench/results/freshness.json")
    args = parser.parse_args()
    if args.stream != "flights":
        parser.error("only the flights stream has an event generator here")
    spec = load_streams(args.streams).stream(args.stream)

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="freshness-") as tmp:
        home = Path(tmp) / "home"
        log_path = Path(tmp) / "dev.log"
        t_start = time.monotonic()
        dev, bootstrap = start_dev(home, log_path, port=free_port(), streams=args.streams)
        startup_s = time.monotonic() - t_start
        events: Events | None = None
        try:
            events = Events(bootstrap, spec.topic)
            watcher = Watcher(str(home / "lance"), spec.name)
            # Warm-up: the first runs pay for the code server and first table creation.
            warm = events.steady(args.warmup, args.rate, "warm")
            missing = watcher.wait_for({events.position[k] for k in warm}, SEARCHABLE_TIMEOUT_S)
            if missing:
                raise RuntimeError(f"warm-up events never searchable: {sorted(missing)[:5]}")
            time.sleep(3)  # let the warm-up chain's last run finish

            load = LoadSampler()
            load.start()
            done = threading.Event()

            def watch() -> None:  # poll while producing, so detection is not delayed by produce
                while not done.is_set():
                    watcher.poll()
                    time.sleep(POLL_S)

            poller = threading.Thread(target=watch, daemon=True)
            poller.start()
            t0 = time.time()
            keys = events.steady(args.events, args.rate, "m")
            produce_s = time.time() - t0
            done.set()
            poller.join()
            missing = watcher.wait_for({events.position[k] for k in keys}, SEARCHABLE_TIMEOUT_S)
            load.done.set()
            load.join()
            time.sleep(2)
        finally:
            if events is not None:  # close clients before the broker stops (Tansu waits on them)
                events.close()
            rc = stop_dev(dev)
        runs = run_timings(home / "dagster", spec.name)
        dev_log_tail = log_path.read_text()[-1500:]
    load_after = os.getloadavg()

    # Per event latency and the run that carried it.
    def carrier(pos: tuple[int, int]) -> dict[str, Any] | None:
        for run in runs:
            for r in run["ranges"]:
                if r["partition"] == pos[0] and r["start"] <= pos[1] < r["end"]:
                    return run
        return None

    latency, to_embedded, sensor_wait = [], [], []
    measured_runs: dict[str, dict[str, Any]] = {}
    for key in keys:
        pos = events.position[key]
        if pos not in watcher.seen:
            continue
        produced = events.produced_at[key]
        latency.append(watcher.seen[pos] - produced)
        if pos in watcher.embedded_at:
            to_embedded.append(watcher.embedded_at[pos] - produced)
        run = carrier(pos)
        if run is not None:
            sensor_wait.append(run["created"] - produced)
            measured_runs[run["run_id"]] = run

    launch: list[float] = []
    stages: dict[str, list[float]] = {"raw": [], "current": [], "embeddings": []}
    other_steps: dict[str, list[float]] = {}
    run_total: list[float] = []
    detail: dict[str, list[float]] = {
        "queued_s": [],
        "spawn_and_import_s": [],
        "run_start_to_first_step_s": [],
        "last_step_to_run_end_s": [],
        "prev_run_end_to_next_created_s": [],
    }
    for run in measured_runs.values():
        starts = [s["start"] for s in run["steps"].values() if "start" in s]
        if starts:
            launch.append(min(starts) - run["created"])
        for step_key, s in run["steps"].items():
            if "start" in s and "end" in s:
                stage = stage_of(step_key, spec.name)
                target = stages[stage] if stage else other_steps.setdefault(step_key, [])
                target.append(s["end"] - s["start"])
        if run["ended"] is not None:
            run_total.append(run["ended"] - run["created"])
        m = run["marks"]
        launched = m.get("dequeued", m.get("starting"))
        if launched is not None:
            detail["queued_s"].append(launched - run["created"])
            if "started" in m:
                detail["spawn_and_import_s"].append(m["started"] - launched)
        if "started" in m and starts:
            detail["run_start_to_first_step_s"].append(min(starts) - m["started"])
        ends = [s["end"] for s in run["steps"].values() if "end" in s]
        if ends and run["ended"] is not None:
            detail["last_step_to_run_end_s"].append(run["ended"] - max(ends))
    ordered = sorted(runs, key=lambda r: r["created"])
    for before, after in itertools.pairwise(ordered):
        if after["run_id"] in measured_runs and before["ended"] is not None:
            detail["prev_run_end_to_next_created_s"].append(after["created"] - before["ended"])
    medians = {
        "sensor_wait_s": statistics.median(sensor_wait) if sensor_wait else None,
        "run_launch_s": statistics.median(launch) if launch else None,
        **{f"{k}_step_s": statistics.median(v) if v else None for k, v in stages.items()},
    }
    stage_total = sum(v for v in medians.values() if v is not None)
    dominant = max((k for k, v in medians.items() if v is not None), key=lambda k: medians[k])
    report = {
        "stream": spec.name,
        "rate_per_s": args.rate,
        "events": len(keys),
        "searchable": len(latency),
        "missing": len(missing),
        "produce_s": round(produce_s, 2),
        "produced_to_searchable_s": summary(latency),
        "produced_to_embedded_at_s": summary(to_embedded),
        "split_medians_s": {k: round(v, 3) if v is not None else None for k, v in medians.items()},
        "split_sum_of_medians_s": round(stage_total, 3),
        "dominant": dominant,
        "split_p95_s": {
            "sensor_wait_s": pct(sensor_wait, 95) if sensor_wait else None,
            "run_launch_s": round(pct(launch, 95), 3) if launch else None,
            **{f"{k}_step_s": round(pct(v, 95), 3) if v else None for k, v in stages.items()},
        },
        "run_launch_detail_medians_s": {
            k: round(statistics.median(v), 3) if v else None for k, v in detail.items()
        },
        "other_steps_median_s": {k: round(statistics.median(v), 3) for k, v in sorted(other_steps.items())},
        "runs": {
            "count": len(measured_runs),
            "events_per_run": summary(
                [float(sum(r["end"] - r["start"] for r in run["ranges"])) for run in measured_runs.values()]
            ),
            "created_to_end_s": summary(run_total),
            "failed": sum(1 for r in measured_runs.values() if r["status"] != "SUCCESS"),
        },
        "load_1m": {
            "before": round(load_before[0], 2),
            "during_mean": round(statistics.mean(load.samples), 2) if load.samples else None,
            "during_max": round(max(load.samples), 2) if load.samples else None,
            "after": round(load_after[0], 2),
            "cpus": os.cpu_count(),
        },
        "stack_startup_s": round(startup_s, 1),
        "dev_exit_code": rc,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if report["split_p95_s"]["sensor_wait_s"] is not None:
        report["split_p95_s"]["sensor_wait_s"] = round(report["split_p95_s"]["sensor_wait_s"], 3)
    if rc != 0:
        report["dev_log_tail"] = dev_log_tail
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
