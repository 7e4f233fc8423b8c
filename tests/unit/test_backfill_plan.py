"""Which offsets a raw backfill re-reads: the committed ones not held for another window."""

import numpy as np
import pyarrow as pa

from freshlake.ingest.backfill import plan_window, wanted
from freshlake.ingest.plan import OffsetRange


def plan(outside: list[int], *, last: int = 19, low: int = 0) -> list[tuple[int, int]]:
    ranges = plan_window(
        partitions=[0], committed={0: last}, low={0: low}, outside={0: np.array(outside, dtype=np.int64)}
    )
    return [(r.start, r.end) for r in ranges]


def test_a_window_in_the_middle_is_the_gap_between_its_neighbours() -> None:
    assert plan([*range(5), *range(10, 20)]) == [(5, 10)]


def test_out_of_order_times_span_every_offset_of_the_window() -> None:
    # The window's messages at 4-7 and again at 11-19 (late timestamps after a later window).
    assert plan([0, 1, 2, 3, 8, 9, 10]) == [(4, 20)]


def test_a_partition_whose_offsets_all_belong_to_other_windows_is_not_read() -> None:
    assert plan(list(range(20))) == []
    assert plan_window(partitions=[0], committed={0: None}, low={}, outside={}) == []


def test_offsets_the_broker_dropped_are_not_asked_for() -> None:
    assert plan(list(range(5, 20)), low=3) == [(3, 5)]
    assert plan([], last=9, low=12) == []


def test_wanted_drops_rows_held_for_other_windows() -> None:
    rows = pa.table({"kafka_partition": [0, 0, 0, 1], "kafka_offset": [4, 8, 9, 8]})
    kept = wanted(rows, {0: np.array([8, 9, 10])})
    assert kept.to_pylist() == [
        {"kafka_partition": 0, "kafka_offset": 4},
        {"kafka_partition": 1, "kafka_offset": 8},
    ]
    assert OffsetRange(partition=0, start=4, end=20).count == 16
