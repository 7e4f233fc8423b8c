"""Kafka -> raw Delta: freshlake's ingest path vs. a bare consume + `write_deltalake` loop.

Both read the same messages from the same embedded broker in the same run; the figure that
matters is the ratio (goal >= 0.8 at 100k messages).

    .venv/bin/python -m bench.ingest [--messages 100000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa


def bare_ingest(
    config: dict[str, object], *, topic: str, partitions: int, expected: int, uri: str
) -> tuple[int, float]:
    """Messages written, and seconds spent in consume calls that ended on their timeout.

    The loop knows how many messages there are (as freshlake knows its ranges) and never asks
    for more than are left, so it never waits out a timeout for a batch that cannot fill: the
    bare limit is what the client and the writer can do, not a sleep.
    """
    from confluent_kafka import Consumer, TopicPartition
    from deltalake import write_deltalake

    consumer = Consumer({**config, "group.id": "bench-bare", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    cols: dict[str, list] = {"partition": [], "offset": [], "key": [], "value": [], "timestamp": []}
    waited = 0.0
    while len(cols["offset"]) < expected:
        want = min(10_000, expected - len(cols["offset"]))
        started = time.perf_counter()
        messages = consumer.consume(want, timeout=5.0)
        if len(messages) < want:
            waited += time.perf_counter() - started
        for m in messages:
            if m.error() is not None:
                continue
            cols["partition"].append(m.partition())
            cols["offset"].append(m.offset())
            cols["key"].append(m.key())
            cols["value"].append(m.value())
            cols["timestamp"].append(m.timestamp()[1])
    consumer.close()
    write_deltalake(uri, pa.table(cols), mode="append")
    return len(cols["offset"]), waited


def _cpu_since(start: os.times_result) -> tuple[float, float]:
    now = os.times()
    return round(now.user - start.user, 3), round(now.system - start.system, 3)


def main() -> None:
    from examples.flight_assistant import STREAMS_FILE
    from examples.flight_assistant.producer import produce_demo
    from freshlake.config import load_streams
    from freshlake.ingest.raw import RawTables, ingest_stream
    from freshlake.kafka.broker import start_broker

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="bench/results/ingest.json")
    parser.add_argument("--streams", default=str(STREAMS_FILE), help="the flights stream's file")
    args = parser.parse_args()
    flights = load_streams(args.streams).stream("flights")

    with start_broker() as broker, tempfile.TemporaryDirectory() as tmp:
        config = {"bootstrap.servers": broker.bootstrap}
        produce_demo(
            config=config,
            count=args.messages,
            streams=("flights",),
            partitions=3,
            start=datetime(2026, 11, 21, tzinfo=UTC),
        )
        spec = dataclasses.replace(flights, topic="flights")
        bare, ours, waits, stages = [], [], [], []
        cpu: dict[str, list[tuple[float, float]]] = {"bare": [], "freshlake": []}
        for i in range(args.repeats):
            t0, c0 = time.perf_counter(), os.times()
            n, waited = bare_ingest(
                config, topic="flights", partitions=3, expected=args.messages, uri=f"{tmp}/bare{i}"
            )
            bare.append(n / (time.perf_counter() - t0))
            cpu["bare"].append(_cpu_since(c0))
            waits.append(waited)
            t0, c0 = time.perf_counter(), os.times()
            result = ingest_stream(
                spec=spec,
                kafka_config=config,
                max_records=args.messages * 2,
                tables=RawTables(raw=f"{tmp}/raw{i}", quarantine=f"{tmp}/q{i}"),
            )
            ours.append(result.rows_written / (time.perf_counter() - t0))
            cpu["freshlake"].append(_cpu_since(c0))
            stages.append(
                {
                    "read_s": round(result.read_seconds, 3),
                    "parse_s": round(result.parse_seconds, 3),
                    "write_s": round(result.write_seconds, 3),
                }
            )
            assert result.rows_written == n == args.messages, (result.rows_written, n)
    report = {
        "messages": args.messages,
        "bare_msgs_per_s": round(statistics.median(bare)),
        "freshlake_msgs_per_s": round(statistics.median(ours)),
        "ratio": round(statistics.median(ours) / statistics.median(bare), 3),
        "last_freshlake_stages_s": stages[-1],
        "runs": {
            "bare": [round(x) for x in bare],
            "freshlake": [round(x) for x in ours],
            "ratio": [round(o / b, 3) for o, b in zip(ours, bare, strict=True)],
            "freshlake_stages_s": stages,
            "bare_timeout_wait_s": [round(w, 3) for w in waits],
            # (user, system) CPU seconds of this process: the bare loop's wall time follows its
            # system time (page faults), which varies from run to run on a shared VM.
            "cpu_user_sys_s": cpu,
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
