"""Freshness: event produced to Kafka -> searchable in LanceDB, through the whole `freshlake dev` stack.

For each run mode (`streaming`: one long-lived run looping in micro-batches; `per_batch`: a run
per batch) it starts `freshlake dev --streams FILE` (the streams file with that mode set) without
a producer (broker, warm embedder, Dagster webserver + daemon) in a temporary FRESHLAKE_HOME,
produces hand-made flight events with unique keys at each steady rate in turn to one topic, and
polls the stream's LanceDB table until every event's (partition, offset) has a row. The split:
per_batch reads the runs (sensor wait, run launch, raw / current / embeddings steps); streaming
reads each batch's materializations (waiting for a batch, then its read / raw / current /
embeddings seconds, then until the watcher saw it). CPU: seconds used by the whole stack per
phase, and by an idle streaming run with no traffic. JSON to stdout and
`bench/results/freshness.json`, with a side-by-side table.

    .venv/bin/python -m bench.freshness [--modes streaming,per_batch] [--rates 20,200]
        [--events 300,2000] [--stream flights] [--streams FILE]
"""

from __future__ import annotations

import argparse
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
POLL_S = 0.05  # the watcher's own error; a version check per poll, a scan per change
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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


def start_dev(
    home: Path, log_path: Path, port: int, streams: str, profile: str = "embedded"
) -> tuple[subprocess.Popen[bytes], str]:
    env = {k: v for k, v in os.environ.items() if k not in {"KAFKA_BOOTSTRAP_SERVERS", "DAGSTER_HOME"}}
    env.update(FRESHLAKE_HOME=str(home), PYTHONUNBUFFERED="1")
    log = log_path.open("w")
    argv = ["dev", "--streams", streams, "--port", str(port), "--profile", profile]
    dev = subprocess.Popen(
        [sys.executable, "-m", "freshlake.cli", *argv],
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


def _tree(pid: int) -> dict[int, list[str]]:
    """/proc stat fields (after the command name) of `pid` and its descendants."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
    children: dict[int, list[int]] = {}
    for child, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(child)
    found, todo = {}, [pid]
    while todo:
        current = todo.pop()
        if current in stats:
            found[current] = stats[current]
        todo.extend(children.get(current, []))
    return found


def cpu_seconds(stats: list[str], *, reaped: bool = True) -> float:
    """utime + stime (+ cutime + cstime: children it waited for), fields 14-17 of stat."""
    return sum(int(v) for v in stats[11 : 15 if reaped else 13]) / CLOCK_TICKS


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of `pid` and its descendants, with their reaped children."""
    return sum(cpu_seconds(fields) for fields in _tree(pid).values())


def streaming_run_pids(pid: int) -> list[int]:
    """Run worker processes under `pid`: the code server starts each run in a spawned process."""
    found = []
    for child in _tree(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            found.append(child)
    return found


def streams_file(source: str, *, stream: str, mode: str, out: Path) -> Path:
    """`source` with `stream`'s batching mode set to `mode` (text, so YAML 1.2 reads it as before;
    the stream must not set `batching` itself)."""
    text = Path(source).read_text()
    entry = f"  - name: {stream}\n"
    if entry not in text or "batching:" in text.split(entry, 1)[1].split("\n  - name:", 1)[0]:
        msg = f"{source}: no `{entry.strip()}` entry without its own `batching` to set the mode in"
        raise RuntimeError(msg)
    out.write_text(text.replace(entry, f"{entry}    batching: {{mode: {mode}}}\n", 1))
    return out


# -- producing ----------------------------------------------------------------------------------


class Events:
    """Produce flight events with unique keys; remember produce time and (partition, offset)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from examples.flight_assistant.producer import make_producer

        self.topic = topic
        self.producer = make_producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
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


def batch_timings(dagster_home: Path, stream: str) -> list[dict[str, Any]]:
    """Per micro-batch of the stream's streaming runs: when its raw materialization was logged,
    its offset ranges and stage seconds (from the materialization's metadata)."""
    import dagster as dg
    from dagster import DagsterEventType, DagsterInstance

    from freshlake.assets.streaming import STREAMING_TAG

    instance = DagsterInstance.from_config(str(dagster_home))
    try:
        batches: dict[tuple[str, int], dict[str, Any]] = {}
        for run in instance.get_runs(filters=dg.RunsFilter(tags={STREAMING_TAG: stream})):
            for event in instance.all_logs(run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
                materialization = event.dagster_event.event_specific_data.materialization
                if materialization.asset_key.path[-1] != "raw":
                    continue
                meta = {k: v.value for k, v in materialization.metadata.items()}
                ranges = []
                for part in filter(None, str(meta.get("offset_ranges", "")).split(", ")):
                    if part == "none":
                        continue
                    name, _, span = part.partition(": ")
                    start, _, end = span.partition("-")
                    ranges.append({"partition": int(name[1:]), "start": int(start), "end": int(end)})
                batches.setdefault(
                    (run.run_id, int(meta["batch"])),
                    {
                        "run_id": run.run_id,
                        "logged": event.timestamp,
                        "ranges": ranges,
                        "seconds": {
                            stage: float(meta[f"stage_{stage}_seconds"])
                            for stage in ("read", "raw", "current", "embeddings")
                        },
                        "total": float(meta["batch_seconds"]),
                    },
                )
        return list(batches.values())
    finally:
        instance.dispose()


# -- main ---------------------------------------------------------------------------------------


def carrier(pos: tuple[int, int], items: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The run or batch whose offset ranges hold `pos`."""
    for item in items:
        for r in item["ranges"]:
            if r["partition"] == pos[0] and r["start"] <= pos[1] < r["end"]:
                return item
    return None


def medians_and_p95(values: dict[str, list[float]]) -> dict[str, dict[str, float | None]]:
    return {
        "median_s": {k: round(statistics.median(v), 3) if v else None for k, v in values.items()},
        "p95_s": {k: round(pct(v, 95), 3) if v else None for k, v in values.items()},
    }


def per_batch_split(positions: dict[tuple[int, int], float], runs: list[dict[str, Any]], stream: str) -> dict:
    """Sensor wait, run launch and step seconds of the runs that carried `positions` (-> produced)."""
    sensor_wait: list[float] = []
    measured: dict[str, dict[str, Any]] = {}
    for pos, produced in positions.items():
        run = carrier(pos, runs)
        if run is not None:
            sensor_wait.append(run["created"] - produced)
            measured[run["run_id"]] = run
    parts: dict[str, list[float]] = {"sensor_wait": sensor_wait, "run_launch": []}
    parts.update({stage: [] for stage in ("raw", "current", "embeddings")})
    detail: dict[str, list[float]] = {"queued": [], "spawn_and_import": [], "run_start_to_first_step": []}
    for run in measured.values():
        starts = [s["start"] for s in run["steps"].values() if "start" in s]
        if starts:
            parts["run_launch"].append(min(starts) - run["created"])
        for step_key, step in run["steps"].items():
            stage = stage_of(step_key, stream)
            if stage and "start" in step and "end" in step:
                parts[stage].append(step["end"] - step["start"])
        m = run["marks"]
        launched = m.get("dequeued", m.get("starting"))
        if launched is not None:
            detail["queued"].append(launched - run["created"])
            if "started" in m:
                detail["spawn_and_import"].append(m["started"] - launched)
        if "started" in m and starts:
            detail["run_start_to_first_step"].append(min(starts) - m["started"])
    return {
        "split": medians_and_p95(parts),
        "run_launch_detail_median_s": medians_and_p95(detail)["median_s"],
        "runs": len(measured),
        "events_per_run": summary(
            [float(sum(r["end"] - r["start"] for r in run["ranges"])) for run in measured.values()]
        ),
        "failed_runs": sum(1 for r in measured.values() if r["status"] != "SUCCESS"),
    }


def streaming_split(
    positions: dict[tuple[int, int], float], seen: dict[tuple[int, int], float], batches: list[dict[str, Any]]
) -> dict:
    """Per event: waiting for its batch, the batch's stages, then until the watcher saw it."""
    parts: dict[str, list[float]] = {"wait_for_batch": []}
    parts.update({stage: [] for stage in ("read", "raw", "current", "embeddings")})
    parts["logged_to_seen"] = []
    measured: dict[tuple[str, float], dict[str, Any]] = {}
    for pos, produced in positions.items():
        batch = carrier(pos, batches)
        if batch is None or pos not in seen:
            continue
        measured[(batch["run_id"], batch["logged"])] = batch
        parts["wait_for_batch"].append(batch["logged"] - batch["total"] - produced)
        for stage, seconds in batch["seconds"].items():
            parts[stage].append(seconds)
        parts["logged_to_seen"].append(seen[pos] - batch["logged"])
    return {
        "split": medians_and_p95(parts),
        "batches": len(measured),
        "events_per_batch": summary(
            [float(sum(r["end"] - r["start"] for r in b["ranges"])) for b in measured.values()]
        ),
        "batch_seconds": summary([b["total"] for b in measured.values()]),
        "streaming_runs": len({b["run_id"] for b in measured.values()}),
    }


def measure_mode(mode: str, *, args: argparse.Namespace, spec: Any) -> dict[str, Any]:
    """One `freshlake dev` stack with `mode`, every rate in turn, then the idle CPU."""
    from freshlake.kafka.broker import free_port

    with tempfile.TemporaryDirectory(prefix="freshness-") as tmp:
        home = Path(tmp) / "home"
        log_path = Path(tmp) / "dev.log"
        streams = streams_file(args.streams, stream=spec.name, mode=mode, out=Path(tmp) / "streams.yaml")
        t_start = time.monotonic()
        dev, bootstrap = start_dev(home, log_path, port=free_port(), streams=str(streams))
        startup_s = time.monotonic() - t_start
        events: Events | None = None
        phases: list[dict[str, Any]] = []
        idle: dict[str, Any] = {}
        try:
            events = Events(bootstrap, spec.topic)
            watcher = Watcher(str(home / "lance"), spec.name)
            # Warm-up: the first run pays for the code server, imports and table creation.
            warm = events.steady(args.warmup, min(args.rates), "warm")
            missing = watcher.wait_for({events.position[k] for k in warm}, SEARCHABLE_TIMEOUT_S)
            if missing:
                raise RuntimeError(f"warm-up events never searchable: {sorted(missing)[:5]}")
            time.sleep(3)
            for rate, count in zip(args.rates, args.events, strict=True):
                load = LoadSampler()
                load.start()
                done = threading.Event()

                def watch(done: threading.Event = done) -> None:  # poll while producing
                    while not done.is_set():
                        watcher.poll()
                        time.sleep(POLL_S)

                poller = threading.Thread(target=watch, daemon=True)
                cpu_before = tree_cpu_seconds(dev.pid)
                poller.start()
                t0 = time.time()
                keys = events.steady(count, rate, f"r{rate:g}")
                produce_s = time.time() - t0
                done.set()
                poller.join()
                missing = watcher.wait_for({events.position[k] for k in keys}, SEARCHABLE_TIMEOUT_S)
                cpu_s = tree_cpu_seconds(dev.pid) - cpu_before
                load.done.set()
                load.join()
                phases.append(
                    {
                        "rate": rate,
                        "keys": keys,
                        "produce_s": produce_s,
                        "missing": len(missing),
                        "cpu_s": cpu_s,
                        "wall_s": time.time() - t0,
                        "load": load.samples,
                    }
                )
                time.sleep(3)
            if mode == "streaming":  # no traffic now: what does a streaming run cost idle?
                pids = streaming_run_pids(dev.pid)
                tree_before, t0 = tree_cpu_seconds(dev.pid), time.monotonic()
                before = {pid: cpu_seconds(_tree(pid)[pid], reaped=False) for pid in pids}
                time.sleep(args.idle_seconds)
                after = {
                    pid: cpu_seconds(f, reaped=False) for pid, f in _tree(dev.pid).items() if pid in before
                }
                span = time.monotonic() - t0
                idle = {
                    "seconds": round(span, 1),
                    "streaming_run_cpu_percent": round(
                        100 * sum(after[p] - before[p] for p in after) / span, 2
                    )
                    if after
                    else None,
                    "streaming_runs_alive": len(after),
                    "whole_stack_cpu_percent": round(
                        100 * (tree_cpu_seconds(dev.pid) - tree_before) / span, 2
                    ),
                }
        finally:
            if events is not None:  # close clients before the broker stops (Tansu waits on them)
                events.close()
            rc = stop_dev(dev)
        runs = run_timings(home / "dagster", spec.name) if mode == "per_batch" else []
        batches = batch_timings(home / "dagster", spec.name) if mode == "streaming" else []
        dev_log_tail = log_path.read_text()[-1500:]

    results: dict[str, Any] = {}
    for phase in phases:
        positions = {events.position[k]: events.produced_at[k] for k in phase["keys"]}
        latency = [watcher.seen[pos] - t for pos, t in positions.items() if pos in watcher.seen]
        split = (
            per_batch_split(positions, runs, spec.name)
            if mode == "per_batch"
            else streaming_split(positions, watcher.seen, batches)
        )
        results[f"{phase['rate']:g}/s"] = {
            "events": len(phase["keys"]),
            "searchable": len(latency),
            "missing": phase["missing"],
            "produce_s": round(phase["produce_s"], 2),
            "produced_to_searchable_s": summary(latency),
            "cpu_seconds": round(phase["cpu_s"], 2),
            "cpu_ms_per_event": round(1000 * phase["cpu_s"] / max(1, len(phase["keys"])), 2),
            "load_1m_mean": round(statistics.mean(phase["load"]), 2) if phase["load"] else None,
            **split,
        }
    report = {"stack_startup_s": round(startup_s, 1), "rates": results, "idle": idle, "dev_exit_code": rc}
    if rc != 0:
        report["dev_log_tail"] = dev_log_tail
    return report


def table(modes: dict[str, dict[str, Any]]) -> list[str]:
    """The side-by-side lines: one per mode and rate."""
    lines = [
        f"{'mode':<10} {'rate':>6} {'p50 s':>7} {'p95 s':>7} {'max s':>7} {'cpu s':>7}  dominant (median s)"
    ]
    for mode, report in modes.items():
        for rate, r in report["rates"].items():
            lat = r["produced_to_searchable_s"]
            medians = {k: v for k, v in r["split"]["median_s"].items() if v is not None}
            top = max(medians, key=medians.get) if medians else "-"
            nan = float("nan")
            numbers = " ".join(f"{lat.get(k, nan):>7.3f}" for k in ("p50", "p95", "max"))
            lines.append(
                f"{mode:<10} {rate:>6} {numbers} {r['cpu_seconds']:>7.1f}  {top} ({medians.get(top, 0):.3f})"
            )
    return lines


def write_report(report: dict[str, Any], *, out: str, load_before: float) -> None:
    """`report` with the machine's load and CPUs, to `out` and stdout, then its table."""
    report = {
        **report,
        "load_1m": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "cpus": os.cpu_count(),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print("\n".join(report["table"]))


def main() -> None:
    from examples.flight_assistant import STREAMS_FILE
    from freshlake.config import load_streams

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="streaming,per_batch", help="run modes, in order")
    parser.add_argument("--rates", default="20,200", help="events per second, one phase each")
    parser.add_argument("--events", default="300,2000", help="events per phase (>= 200 for the report)")
    parser.add_argument("--warmup", type=int, default=20, help="events sent (and waited for) first")
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="idle CPU measured this long")
    parser.add_argument("--stream", default="flights")
    parser.add_argument("--streams", default=str(STREAMS_FILE), help="streams file `freshlake dev` runs")
    parser.add_argument("--out", default="bench/results/freshness.json")
    args = parser.parse_args()
    if args.stream != "flights":
        parser.error("only the flights stream has an event generator here")
    args.modes = [m for m in args.modes.split(",") if m]
    args.rates = [float(r) for r in args.rates.split(",")]
    args.events = [int(n) for n in args.events.split(",")]
    if len(args.rates) != len(args.events) or not set(args.modes) <= {"streaming", "per_batch"}:
        parser.error("--rates and --events pair up; --modes are streaming and/or per_batch")
    spec = load_streams(args.streams).stream(args.stream)

    load_before = os.getloadavg()
    modes = {mode: measure_mode(mode, args=args, spec=spec) for mode in args.modes}
    write_report(
        {"stream": spec.name, "table": table(modes), "modes": modes}, out=args.out, load_before=load_before[0]
    )


if __name__ == "__main__":
    main()
