"""Overlapping raw ingests, in every order of plan and commit: each offset held exactly once.

Two runs of one stream read different spans (one planned before the other's commit, one a
shorter range than the other), and a barrier between plan and commit puts their steps in each
possible order. The commit step is held either before the raw snapshot it commits on is opened
(the other run's commit lands between plan and snapshot) or just before the commit (it lands
between snapshot and commit: a delta-rs txn conflict). Streams with and without bad messages
take both commit paths (streamed, and quarantine first). Real broker, real Delta tables.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from datetime import UTC, datetime

import polars as pl
import pytest

from freshlake.delta.tables import committed_offsets
from freshlake.ingest.plan import OffsetRange
from freshlake.ingest.raw import RawTables, ingest_stream
from tests.demo_streams import demo_stream

pytestmark = pytest.mark.integration

PARTITIONS = 3
COUNT = 600  # ~200 a partition


def _orders() -> list[tuple[tuple[str, str], ...]]:
    """Every interleaving of A and B's (plan, commit), each run planning before it commits."""
    steps = [("a", "plan"), ("a", "commit"), ("b", "plan"), ("b", "commit")]
    return sorted(
        order
        for order in itertools.permutations(steps)
        if order.index(("a", "plan")) < order.index(("a", "commit"))
        and order.index(("b", "plan")) < order.index(("b", "commit"))
    )


class Sequencer:
    """Lets each run pass its barrier only at its turn. A plan's turn ends when the ranges are
    fixed ("planned"), a commit's when its run returns."""

    def __init__(self, order: tuple[tuple[str, str], ...], *, commit_at: str) -> None:
        self.order, self.turn, self.commit_at = order, 0, commit_at
        self.cond = threading.Condition()

    def barrier(self, run: str):
        def wait(step: str) -> None:
            with self.cond:
                if step == "planned":
                    self.advance_locked()
                    return
                if step in ("write", "commit"):
                    if step != self.commit_at:
                        return
                    step = "commit"
                if not self.cond.wait_for(lambda: self.order[self.turn] == (run, step), timeout=60):
                    msg = f"{run} waited 60 s for its {step} turn in {self.order}"
                    raise TimeoutError(msg)

        return wait

    def advance_locked(self) -> None:
        self.turn = min(self.turn + 1, len(self.order) - 1)
        self.cond.notify_all()

    def done(self) -> None:
        with self.cond:
            self.advance_locked()


@pytest.fixture(scope="module", params=[0.0, 0.03], ids=["clean", "bad"])
def topic_spec(broker, request):
    from examples.flight_assistant.producer import produce_demo

    kafka_config = {"bootstrap.servers": broker.bootstrap}
    prefix = f"overlap-{datetime.now(UTC).strftime('%H%M%S%f')}-"
    produce_demo(
        config=kafka_config,
        seed=3,
        count=COUNT,
        streams=("flights",),
        bad_ratio=request.param,
        start=datetime(2026, 11, 21, 8, tzinfo=UTC),
        topic_prefix=prefix,
        partitions=PARTITIONS,
    )
    spec = demo_stream("flights")
    return dataclasses.replace(spec, topic=prefix + spec.topic)


def held(tables: RawTables) -> tuple[list, list]:
    raw = pl.read_delta(tables.raw).select("kafka_partition", "kafka_offset")
    bad = pl.read_delta(tables.quarantine).select("kafka_partition", "kafka_offset")
    return [tuple(r) for r in raw.iter_rows()], [tuple(r) for r in bad.iter_rows()]


# Run B reads less than A (a shorter range, the reproduced duplicate) or, with `None`, all there is.
@pytest.mark.parametrize("commit_at", ["write", "commit"])
@pytest.mark.parametrize("b_max", [None, 90], ids=["b-all", "b-shorter"])
@pytest.mark.parametrize("order", _orders(), ids=lambda o: "-".join(f"{r}{s[0]}" for r, s in o))
def test_two_overlapping_ingests_hold_each_offset_once(
    kafka_config, topic_spec, tmp_path, order, b_max, commit_at
) -> None:
    tables = RawTables(raw=str(tmp_path / "raw"), quarantine=str(tmp_path / "quarantine"))
    sequencer = Sequencer(order, commit_at=commit_at)
    results: dict[str, object] = {}

    def run(name: str, max_records: int | None) -> None:
        try:
            results[name] = ingest_stream(
                spec=topic_spec,
                kafka_config=kafka_config,
                tables=tables,
                max_records=max_records or 100_000,
                barrier=sequencer.barrier(name),
            )
        except BaseException as exc:
            results[name] = exc
        finally:
            sequencer.done()

    threads = [
        threading.Thread(target=run, args=("a", None)),
        threading.Thread(target=run, args=("b", b_max)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(isinstance(r, BaseException) for r in results.values()), results

    raw, bad = held(tables)
    assert len(raw) == len(set(raw)), f"{len(raw) - len(set(raw))} raw offsets held twice"
    assert len(bad) == len(set(bad)), f"{len(bad) - len(set(bad))} quarantined offsets held twice"
    assert not set(raw) & set(bad)
    everything = {(p, o) for p in range(PARTITIONS) for o in range(_end(kafka_config, topic_spec, p))}
    assert set(raw) | set(bad) == everything  # nothing skipped
    assert results["a"].rows_written + results["b"].rows_written == len(raw)  # counts say so too
    committed = committed_offsets(tables.raw, topic=topic_spec.topic, partitions=list(range(PARTITIONS)))
    assert committed == {p: _end(kafka_config, topic_spec, p) - 1 for p in range(PARTITIONS)}


def test_a_run_given_offsets_another_run_committed_writes_nothing_twice(
    kafka_config, topic_spec, tmp_path
) -> None:
    """A sensor run's range planned behind an executing run (clipped to what is committed)."""
    tables = RawTables(raw=str(tmp_path / "raw"), quarantine=str(tmp_path / "quarantine"))
    first = ingest_stream(spec=topic_spec, kafka_config=kafka_config, tables=tables, max_records=150)
    ranges = [OffsetRange(partition=p, start=0, end=1_000) for p in range(PARTITIONS)]
    second = ingest_stream(spec=topic_spec, kafka_config=kafka_config, tables=tables, ranges=ranges)
    raw, bad = held(tables)
    assert len(raw) == len(set(raw)) and len(bad) == len(set(bad))
    assert len(raw) + len(bad) == COUNT
    assert first.messages_read == 150 and second.messages_read == COUNT - 150


_ENDS: dict[tuple[str, int], int] = {}


def _end(kafka_config, spec, partition: int) -> int:
    from freshlake.kafka.consumer import watermarks

    if (spec.topic, partition) not in _ENDS:
        marks = watermarks(kafka_config, topic=spec.topic, partitions=list(range(PARTITIONS)))
        _ENDS.update({(spec.topic, p): marks.high[p] for p in range(PARTITIONS)})
    return _ENDS[(spec.topic, partition)]
