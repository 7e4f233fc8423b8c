"""A raw backfill SIGKILLed between its commits, then retried: every offset held exactly once.

The backfill re-parses with a changed spec, so offsets move between raw and quarantine: one that
becomes valid ("rescue", the usual reason to backfill) or invalid ("tighten"). A real process
is killed with SIGKILL after its first or second commit; in between nothing is lost (at most held
twice), and the retry of that window, or any later raw backfill, ends in the state a fresh
ingest with the new spec gives. Real broker, real Delta.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from datetime import UTC, datetime

import polars as pl
import pytest

from freshlake.ingest.backfill import reingest_window
from freshlake.ingest.raw import RawTables, ingest_stream
from freshlake.partitions import window
from tests.demo_streams import demo_stream

pytestmark = pytest.mark.integration

DAYS = ["2026-11-21", "2026-11-22"]

KILLED_BACKFILL = textwrap.dedent(
    """
    import dataclasses, os, signal, sys
    from freshlake.ingest.backfill import reingest_window
    from freshlake.ingest.raw import RawTables
    from freshlake.partitions import window
    from tests.demo_streams import demo_stream

    kill_at, topic, strict, bootstrap, raw_uri, q_uri, day = sys.argv[1:8]
    spec = dataclasses.replace(demo_stream("flights"), topic=topic)
    if strict == "1":
        spec = dataclasses.replace(spec, required=(*spec.required, "reason"))

    def between_commits(step):
        if step == kill_at:
            print(f"killed after {step}", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    reingest_window(spec=spec, kafka_config={"bootstrap.servers": bootstrap},
                    tables=RawTables(raw=raw_uri, quarantine=q_uri), window=window([day]),
                    between_commits=between_commits)
    """
)


def specs(topic: str):
    lenient = dataclasses.replace(demo_stream("flights"), topic=topic)
    strict = dataclasses.replace(lenient, required=(*lenient.required, "reason"))  # most lack one
    return lenient, strict


@pytest.fixture(scope="module")
def topic(broker) -> str:
    from examples.flight_assistant.producer import produce_demo

    config = {"bootstrap.servers": broker.bootstrap}
    prefix = f"crash-{datetime.now(UTC).strftime('%H%M%S%f')}-"
    for n, day in enumerate(DAYS):
        produce_demo(
            config=config,
            seed=n,
            count=150,
            streams=("flights",),
            bad_ratio=0.03,
            start=datetime.fromisoformat(day).replace(hour=8, tzinfo=UTC),
            topic_prefix=prefix,
            partitions=2,
            create_topics=n == 0,
        )
    return prefix + "flights"


def held(tables: RawTables, *, day: str | None = None) -> tuple[list, list]:
    def coords(uri: str) -> list[tuple[int, int]]:
        frame = pl.read_delta(uri)
        if day is not None:
            frame = frame.filter(pl.col("kafka_date") == day)
        return [tuple(r) for r in frame.select("kafka_partition", "kafka_offset").iter_rows()]

    return coords(tables.raw), coords(tables.quarantine)


def fresh(kafka_config, spec, path) -> dict[str, tuple[set, set]]:
    """Per day, what raw and quarantine hold when `spec` ingests the topic from scratch."""
    tables = RawTables(raw=str(path / "raw"), quarantine=str(path / "quarantine"))
    ingest_stream(spec=spec, kafka_config=kafka_config, tables=tables, max_records=100_000)
    return {day: tuple(set(c) for c in held(tables, day=day)) for day in DAYS}


@pytest.mark.parametrize(
    ("direction", "kill_at", "retry"),
    [
        ("rescue", "quarantine_added", "same"),
        ("rescue", "raw_replaced", "same"),
        ("tighten", "quarantine_added", "same"),
        ("tighten", "raw_replaced", "same"),
        ("rescue", "quarantine_added", "other"),  # repaired by a backfill of another day
        ("tighten", "raw_replaced", "other"),
    ],
)
def test_sigkill_between_backfill_commits_then_retry(
    kafka_config, topic, tmp_path, direction, kill_at, retry
) -> None:
    lenient, strict = specs(topic)
    before, after = (strict, lenient) if direction == "rescue" else (lenient, strict)
    tables = RawTables(raw=str(tmp_path / "raw"), quarantine=str(tmp_path / "quarantine"))
    ingest_stream(spec=before, kafka_config=kafka_config, tables=tables, max_records=100_000)
    everything = set().union(*held(tables))
    assert len(everything) == 2 * 150

    args = [str(kafka_config["bootstrap.servers"]), tables.raw, tables.quarantine, DAYS[0]]
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_BACKFILL, kill_at, topic, "1" if after is strict else "0", *args],
        capture_output=True,
        timeout=120,
    )
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert f"killed after {kill_at}" in killed.stderr.decode()
    raw, bad = held(tables)
    assert set(raw) | set(bad) == everything  # nothing lost at the kill
    assert len(raw) == len(set(raw)) and len(bad) == len(set(bad))
    # Offsets that moved are held twice from the commit that added them to their new table to
    # the one that removes them from the old: quarantine first when they turn bad, raw second
    # when they turn good.
    twice = (direction, kill_at) in {("tighten", "quarantine_added"), ("rescue", "raw_replaced")}
    assert bool(set(raw) & set(bad)) == twice

    day = DAYS[0] if retry == "same" else DAYS[1]
    reingest_window(spec=after, kafka_config=kafka_config, tables=tables, window=window([day]))

    raw, bad = held(tables)
    assert len(raw) == len(set(raw)) and len(bad) == len(set(bad)) and not set(raw) & set(bad)
    assert set(raw) | set(bad) == everything
    # Each day reads as one spec reads it, never a mix: the one backfilled now as the new spec
    # does, the killed one too when the kill left it half done (repaired first).
    old, new = fresh(kafka_config, before, tmp_path / "old"), fresh(kafka_config, after, tmp_path / "new")
    now = {d: tuple(set(c) for c in held(tables, day=d)) for d in DAYS}
    assert now[day] == new[day]
    assert now[DAYS[0]] == new[DAYS[0]] or (now[DAYS[0]] == old[DAYS[0]] and not twice)
