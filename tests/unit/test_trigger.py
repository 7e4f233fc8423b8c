from __future__ import annotations

from freshlake.ingest.trigger import SensorCursor, decide
from freshlake.streams import Batching

BATCH = Batching(max_records_per_run=100, min_batch=50, max_wait_seconds=5.0)


def test_no_lag_no_run_and_the_clock_resets() -> None:
    d = decide(
        topic="t",
        start={0: 5},
        high={0: 5},
        batching=BATCH,
        cursor=SensorCursor(pending_since=1.0),
        now=100.0,
    )
    assert d.run_key is None and d.lag == 0 and d.cursor.pending_since is None


def test_small_lag_waits_until_max_wait() -> None:
    first = decide(topic="t", start={0: 0}, high={0: 3}, batching=BATCH, cursor=SensorCursor(), now=100.0)
    assert first.run_key is None and "min_batch" in first.skip_reason
    assert first.cursor.pending_since == 100.0
    later = decide(topic="t", start={0: 0}, high={0: 4}, batching=BATCH, cursor=first.cursor, now=103.0)
    assert later.run_key is None and later.cursor.pending_since == 100.0
    due = decide(topic="t", start={0: 0}, high={0: 4}, batching=BATCH, cursor=later.cursor, now=105.0)
    assert due.run_key == "t:p0=0-4" and due.cursor.pending_since is None


def test_big_lag_runs_at_once_capped() -> None:
    d = decide(
        topic="t",
        start={0: 0, 1: 0},
        high={0: 500, 1: 500},
        batching=BATCH,
        cursor=SensorCursor(),
        now=0.0,
    )
    assert d.run_key == "t:p0=0-50,p1=0-50" and d.lag == 1000


def test_cursor_round_trips_and_survives_garbage() -> None:
    assert SensorCursor.loads(SensorCursor(pending_since=12.5).dumps()).pending_since == 12.5
    assert SensorCursor.loads("not json").pending_since is None
    assert SensorCursor.loads(None).pending_since is None
