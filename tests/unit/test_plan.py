from __future__ import annotations

import pytest

from freshlake.ingest.plan import (
    OffsetRange,
    OffsetsLostToRetention,
    OffsetsWentBackwards,
    consumer_lag,
    next_offsets,
    plan_ranges,
    run_key,
)
from freshlake.ingest.raw import clip_ranges


def test_next_offsets_resume_after_the_committed_offset() -> None:
    start = next_offsets(committed={0: 9, 1: None}, low={0: 0, 1: 0}, high={0: 20, 1: 5}, topic="t")
    assert start == {0: 10, 1: 0}


def test_offsets_behind_the_table_are_an_error_not_a_silent_reread() -> None:
    with pytest.raises(OffsetsWentBackwards, match=r"t\[0\] ends at offset 3 .* holds up to 9"):
        next_offsets(committed={0: 9}, low={0: 0}, high={0: 3}, topic="t")


def test_retention_gap_is_an_error_not_a_silent_skip() -> None:
    with pytest.raises(OffsetsLostToRetention, match="retention"):
        next_offsets(committed={0: 9}, low={0: 50}, high={0: 60}, topic="t")


def test_plan_covers_everything_when_under_the_cap() -> None:
    ranges = plan_ranges(start={0: 10, 1: 0, 2: 7}, high={0: 20, 1: 5, 2: 7}, max_records=100)
    assert ranges == [
        OffsetRange(partition=0, start=10, end=20),
        OffsetRange(partition=1, start=0, end=5),
    ]


def test_plan_caps_and_shares_fairly() -> None:
    ranges = plan_ranges(start={0: 0, 1: 0, 2: 0}, high={0: 1000, 1: 10, 2: 1000}, max_records=300)
    assert sum(r.count for r in ranges) == 300
    counts = {r.partition: r.count for r in ranges}
    assert counts[1] == 10 and counts[0] >= 140 and counts[2] >= 140
    assert all(r.start == 0 for r in ranges)  # contiguous with what is committed


def test_run_key_is_deterministic_and_ordered() -> None:
    a = [OffsetRange(partition=1, start=0, end=5), OffsetRange(partition=0, start=3, end=9)]
    assert run_key(topic="flights", ranges=a) == "flights:p0=3-9,p1=0-5"
    assert run_key(topic="flights", ranges=list(reversed(a))) == run_key(topic="flights", ranges=a)


def test_clip_never_leaves_a_gap_or_reads_past_the_end() -> None:
    requested = [
        OffsetRange(partition=0, start=15, end=30),
        OffsetRange(partition=1, start=0, end=4),
    ]
    clipped = clip_ranges(requested, start={0: 10, 1: 4}, high={0: 25, 1: 9})
    assert clipped == [OffsetRange(partition=0, start=10, end=25)]


def test_lag() -> None:
    assert consumer_lag(start={0: 10, 1: 3}, high={0: 12, 1: 3}) == 2
