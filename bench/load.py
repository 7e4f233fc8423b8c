"""Load: 50,000 events through `freshlake dev`, the prod profile next to the embedded one, same run.

For each profile in turn it starts `freshlake dev --profile P` (streaming runs, no producer) in a
temporary FRESHLAKE_HOME and produces `--events` flight updates at `--rate` over `--keys`
flights (each update a new version of its flight with new text, keyed by flight, so CDC-shaped:
many versions of few rows), over the profile's own connection (SASL_SSL + SCRAM + the profile's
CA for prod). A watcher polls the stream's LanceDB table (on S3 for prod) and records, for each
flight, when a newer offset became searchable. An event is searchable when its flight's rows
hold its offset or a later one: the search then answers with that state or a newer one, which
is what a reader of a changing row can ask for (a superseded version may never be embedded, by
design: the fold keeps the newest per key). Bounded in count (`--events`) and time
(`--timeout` per profile after the last produce); what is not searchable by then is reported as
missing, and the final table is checked against the last version produced of every flight.

Reported per profile: events/s end to end (events / first produce -> all searchable), the
produce rate reached, p50/p95/max produced -> searchable, stack CPU seconds and the load.
JSON to stdout and `bench/results/load.json`, with a side-by-side table.

    .venv/bin/python -m bench.load [--profiles embedded,prod] [--events 50000] [--rate 1000]
        [--keys 500] [--timeout 900]
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.freshness import (
    LoadSampler,
    batch_timings,
    start_dev,
    stop_dev,
    streams_file,
    summary,
    tree_cpu_seconds,
    write_report,
)

POLL_S = 0.2  # a version check per poll (a LIST on S3), a key/offset scan per change
STREAM = "flights"


class Updates:
    """Flight updates over `keys` flights; remembers each event's flight, offset and produce time."""

    def __init__(self, config: dict[str, object], topic: str, *, keys: int) -> None:
        from examples.flight_assistant.producer import make_producer

        self.topic, self.keys = topic, keys
        self.producer = make_producer({**config, "linger.ms": 5})
        self.tag = uuid.uuid4().hex[:6]
        self.produced_at: list[float] = []  # event index -> wall time of produce()
        self.key_of: list[str] = []
        self.offset: dict[int, int] = {}  # event index -> offset (one partition per flight)
        self.versions: dict[str, int] = {}
        self.errors: list[str] = []

    def close(self) -> None:
        if self.producer is not None:
            self.producer.flush(10)
            self.producer = None

    def send(self, i: int) -> None:
        key = f"LD{i % self.keys:05d}-{self.tag}"
        version = self.versions.get(key, 0) + 1
        self.versions[key] = version
        now = datetime.now(UTC)
        departs = (now + timedelta(hours=3)).replace(second=0, microsecond=0)
        delay = 5 * (version % 37)
        record = {
            "flight_id": key,
            "flight_number": f"LD{100 + i % self.keys}",
            "airline": "Load Air",
            "origin": "SFO",
            "origin_city": "San Francisco",
            "destination": "JFK",
            "destination_city": "New York",
            "status": ("delayed", "boarding", "scheduled", "gate change")[version % 4],
            "scheduled_departure": departs.isoformat(timespec="microseconds"),
            "estimated_departure": (departs + timedelta(minutes=delay)).isoformat(timespec="microseconds"),
            "gate": f"C{version % 60 + 1}",
            "delay_minutes": delay,
            "reason": f"update {version}",
            "event_time": now.isoformat(timespec="microseconds"),
            "version": version,
        }
        value = json.dumps(record, separators=(",", ":")).encode()

        def delivered(err: object, message: Any, i: int = i) -> None:
            if err is not None:
                self.errors.append(str(err))
            else:
                self.offset[i] = message.offset()

        while True:
            try:
                self.producer.produce(self.topic, key=key.encode(), value=value, on_delivery=delivered)
                break
            except BufferError:
                self.producer.poll(0.05)
        self.produced_at.append(time.time())
        self.key_of.append(key)
        self.producer.poll(0)

    def steady(self, count: int, rate: float) -> float:
        began = time.monotonic()
        for i in range(count):
            delay = began + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.send(len(self.key_of))
        left = self.producer.flush(60)
        if left or self.errors:
            msg = f"{left} undelivered, errors: {self.errors[:3]}"
            raise RuntimeError(msg)
        return time.monotonic() - began


class KeyWatcher:
    """Polls the live LanceDB table: per flight, when each newer offset was first seen."""

    def __init__(self, lance_uri: str, storage_options: dict[str, str]) -> None:
        import lancedb

        self.uri, self.options = lance_uri, storage_options
        self.db = lancedb.connect(
            lance_uri, storage_options=storage_options or None, read_consistency_interval=timedelta(0)
        )
        self.tbl = None
        self.version: int | None = None
        self.seen: dict[str, tuple[list[int], list[float]]] = {}  # key -> (offsets, first seen)
        self.errors = 0

    def poll(self) -> None:
        try:
            self._poll()
        except Exception:  # a transient store error: the next poll tries again
            self.errors += 1

    def _poll(self) -> None:
        if self.tbl is None:
            from freshlake.lance.tables import live_table_name

            name = live_table_name(uri=self.uri, stream=STREAM, storage_options=self.options or None)
            if name is None:
                return
            self.tbl = self.db.open_table(name)
        version = self.tbl.version
        if version == self.version:
            return
        now = time.time()
        rows = self.tbl.search().select(["key", "source_offset"]).limit(10_000_000).to_arrow().to_pylist()
        self.version = version
        for row in rows:
            offsets, times = self.seen.setdefault(row["key"], ([], []))
            if not offsets or row["source_offset"] > offsets[-1]:
                offsets.append(row["source_offset"])
                times.append(now)

    def searchable_at(self, key: str, offset: int) -> float | None:
        offsets, times = self.seen.get(key, ([], []))
        at = bisect.bisect_left(offsets, offset)
        return times[at] if at < len(offsets) else None


def profile_settings(
    profile: str, home: Path, bootstrap: str
) -> tuple[dict[str, object], str, dict[str, str]]:
    """(Kafka client settings, LanceDB URI, storage options) the running stack's CLI would use."""
    from freshlake.kafka.connection import client_config

    if profile == "embedded":
        return client_config(bootstrap=bootstrap, env={}), str(home / "lance"), {}
    env = json.loads((home / "prod" / "env.json").read_text())
    return client_config(env=env), env["FRESHLAKE_LANCE_URI"], json.loads(env["FRESHLAKE_STORAGE_OPTIONS"])


def stack_batches(profile: str, home: Path, *, since: float) -> dict[str, Any]:
    """The streaming runs' micro-batches logged since `since`: count, events and stage seconds."""
    if profile == "embedded":
        dagster_home = home / "dagster"
        pg = None
    else:
        env = json.loads((home / "prod" / "env.json").read_text())
        dagster_home = Path(env["DAGSTER_HOME"])
        pg = env.get("FRESHLAKE_DAGSTER_PG_URL")
    before = os.environ.get("FRESHLAKE_DAGSTER_PG_URL")
    if pg:
        os.environ["FRESHLAKE_DAGSTER_PG_URL"] = pg  # the prod dagster.yaml reads it
    try:
        batches = [b for b in batch_timings(dagster_home, STREAM) if b["logged"] >= since]
    finally:
        if pg:
            if before is None:
                os.environ.pop("FRESHLAKE_DAGSTER_PG_URL", None)
            else:
                os.environ["FRESHLAKE_DAGSTER_PG_URL"] = before
    stages = ("read", "raw", "current", "embeddings")
    return {
        "batches": len(batches),
        "events_per_batch": summary(
            [float(sum(r["end"] - r["start"] for r in b["ranges"])) for b in batches]
        ),
        "batch_seconds": summary([b["total"] for b in batches]),
        "stage_seconds": {stage: summary([b["seconds"][stage] for b in batches]) for stage in stages},
    }


def measure(profile: str, *, args: argparse.Namespace, streams_source: str) -> dict[str, Any]:
    from freshlake.kafka.broker import free_port

    base = Path(tempfile.mkdtemp(prefix="load-"))
    base.chmod(0o711)  # the prod profile's PostgreSQL (its own user, as root) walks through it
    home, log_path = base / "home", base / "dev.log"
    streams = streams_file(streams_source, stream=STREAM, mode="streaming", out=base / "streams.yaml")
    t_start = time.monotonic()
    dev, bootstrap = start_dev(home, log_path, port=free_port(), streams=str(streams), profile=profile)
    startup_s = time.monotonic() - t_start
    updates: Updates | None = None
    try:
        config, lance_uri, options = profile_settings(profile, home, bootstrap)
        updates = Updates(config, STREAM, keys=args.keys)
        watcher = KeyWatcher(lance_uri, options)
        updates.steady(args.keys, rate=min(args.rate, 100.0))  # warm-up: every flight once
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            watcher.poll()
            if all(watcher.searchable_at(updates.key_of[i], updates.offset[i]) for i in range(args.keys)):
                break
            time.sleep(POLL_S)
        else:
            raise RuntimeError(f"{profile}: warm-up not searchable in {args.timeout:.0f}s")
        first = len(updates.key_of)
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                watcher.poll()
                time.sleep(POLL_S)

        poller = threading.Thread(target=watch, daemon=True)
        load, cpu_before = LoadSampler(), tree_cpu_seconds(dev.pid)
        load.start()
        poller.start()
        t0 = time.time()
        produce_s = updates.steady(args.events, args.rate)
        deadline = time.monotonic() + args.timeout
        latest = {updates.key_of[i]: i for i in range(first, len(updates.key_of))}
        while time.monotonic() < deadline:
            if all(watcher.searchable_at(k, updates.offset[i]) for k, i in latest.items()):
                break
            time.sleep(POLL_S)
        done.set()
        poller.join()
        watcher.poll()
        t_end = time.time()
        cpu_s = tree_cpu_seconds(dev.pid) - cpu_before
        load.done.set()
        load.join()
        batches = stack_batches(profile, home, since=t0)  # before the stack (its Postgres) stops
    finally:
        if updates is not None:
            updates.close()
        rc = stop_dev(dev)
        tail = log_path.read_text()[-1500:]
        shutil.rmtree(base, ignore_errors=True)
    latency, last_at = [], t0
    for i in range(first, len(updates.key_of)):
        at = watcher.searchable_at(updates.key_of[i], updates.offset[i])
        if at is not None:
            latency.append(at - updates.produced_at[i])
            last_at = max(last_at, at)
    stale = sorted(k for k, i in latest.items() if watcher.searchable_at(k, updates.offset[i]) is None)
    report = {
        "events": args.events,
        "keys": args.keys,
        "searchable": len(latency),
        "missing": args.events - len(latency),
        "flights_not_at_their_last_version": len(stale),
        "produce_rate_per_s": round(args.events / produce_s, 1),
        "end_to_end_events_per_s": round(len(latency) / max(1e-9, last_at - t0), 1),
        "produced_to_searchable_s": summary(latency),
        "wall_s": round(t_end - t0, 1),
        "stack_startup_s": round(startup_s, 1),
        "cpu_seconds": round(cpu_s, 1),
        "load_1m_mean": round(statistics.mean(load.samples), 2) if load.samples else None,
        "watcher_poll_errors": watcher.errors,
        "micro_batches": batches,
        "dev_exit_code": rc,
    }
    if rc != 0 or stale:
        report["dev_log_tail"] = tail
    return report


def table(profiles: dict[str, dict[str, Any]]) -> list[str]:
    lines = [
        f"{'profile':<9} {'events':>7} {'ev/s':>7} {'p50 s':>7} {'p95 s':>7} {'max s':>7} {'missing':>8}"
    ]
    for name, r in profiles.items():
        lat = r["produced_to_searchable_s"]
        nan = float("nan")
        numbers = " ".join(f"{lat.get(k, nan):>7.2f}" for k in ("p50", "p95", "max"))
        lines.append(
            f"{name:<9} {r['events']:>7} {r['end_to_end_events_per_s']:>7.1f} {numbers} {r['missing']:>8}"
        )
    return lines


def main() -> None:
    from examples.flight_assistant import STREAMS_FILE

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default="embedded,prod", help="`freshlake dev` profiles, in order")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rate", type=float, default=1000.0, help="events produced per second")
    parser.add_argument("--keys", type=int, default=500, help="flights the updates cycle over")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds after the last produce")
    parser.add_argument("--streams", default=str(STREAMS_FILE))
    parser.add_argument("--out", default="bench/results/load.json")
    args = parser.parse_args()
    names = [p for p in args.profiles.split(",") if p]
    if not set(names) <= {"embedded", "prod"} or args.events < 1 or args.keys < 1:
        parser.error("--profiles are embedded and/or prod; --events and --keys are positive")
    load_before = os.getloadavg()[0]
    profiles = {name: measure(name, args=args, streams_source=args.streams) for name in names}
    write_report(
        {"stream": STREAM, "table": table(profiles), "profiles": profiles},
        out=args.out,
        load_before=load_before,
    )


if __name__ == "__main__":
    main()
