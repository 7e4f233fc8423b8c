"""Lag arithmetic and SLO verdicts, offline; newest event time from a real local Delta table."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from freshlake.lag import StreamLag, consumer_lag, judge, newest_current_event_time
from freshlake.status import StreamStatus, exit_code, render
from freshlake.streams import Freshness
from tests.demo_streams import demo_stream

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
SPEC = dataclasses.replace(
    demo_stream("flights"),
    freshness=Freshness(warn_after_seconds=60, fail_after_seconds=120, max_consumer_lag=100),
)


def lag(*, behind: int | None = 0, age: float | None = 1.0, error: str | None = None) -> StreamLag:
    return StreamLag(
        stream="flights",
        topic="flights",
        measured_at=NOW,
        watermarks={0: 500, 1: 500},
        committed={0: 499, 1: 499 - (behind or 0)},
        consumer_lag=behind,
        newest_event_time=None if age is None else NOW - timedelta(seconds=age),
        error=error,
    )


def test_consumer_lag_counts_from_committed_or_low() -> None:
    assert consumer_lag(high={0: 10, 1: 5}, committed={0: 9, 1: 2}) == 2
    assert consumer_lag(high={0: 10}, committed={0: None}, low={0: 4}) == 6
    assert consumer_lag(high={0: 10}, committed={}) == 10
    assert consumer_lag(high={0: 3}, committed={0: 7}) == 0  # never negative


def test_totals_and_event_time_lag() -> None:
    measured = lag(behind=3, age=42.5)
    assert measured.watermark_total == 1000
    assert measured.committed_total == 997
    assert measured.event_time_lag_seconds == 42.5


def test_verdicts_follow_the_slo() -> None:
    assert judge(lag(), SPEC).state == "PASS"
    assert judge(lag(age=90), SPEC).state == "WARN"
    fail = judge(lag(age=121), SPEC)
    assert fail.state == "FAIL" and fail.event_time_lag == "FAIL" and "121s" in fail.reasons[0]
    behind = judge(lag(behind=101), SPEC)
    assert behind.state == "FAIL" and behind.consumer_lag == "FAIL" and behind.event_time_lag == "PASS"
    assert judge(lag(behind=100), SPEC).state == "PASS"


def test_unknowns() -> None:
    assert judge(lag(age=None), SPEC).state == "PASS"  # nothing searchable yet: consumer lag decides
    assert judge(lag(behind=None, age=None), SPEC).state == "UNKNOWN"
    blind = judge(lag(behind=None, error="broker down"), SPEC)
    assert blind.state == "FAIL" and "broker down" in blind.reasons[0]


def test_status_render_and_exit_code() -> None:
    ok = StreamStatus(spec=SPEC, lag=lag(), verdict=judge(lag(), SPEC))
    late = StreamStatus(spec=SPEC, lag=lag(age=600), verdict=judge(lag(age=600), SPEC))
    assert exit_code([ok]) == 0 and exit_code([ok, late]) == 1
    plain = render([ok, late], colour=False)
    assert "\033[" not in plain and "PASS" in plain and "FAIL" in plain and "10.0m" in plain
    assert "flights: event-time lag 600s > 120s" in plain
    assert "\033[31mFAIL" in render([late], colour=True)
    assert ok.as_dict()["consumer_lag"] == 0 and late.as_dict()["state"] == "FAIL"


def test_newest_current_event_time_skips_deleted_rows(tmp_path) -> None:
    from deltalake import write_deltalake

    ts = pa.timestamp("us", tz="UTC")
    rows = pa.table(
        {
            "key": ["a", "b", "c"],
            "is_deleted": [False, True, False],
            "event_time": pa.array([NOW - timedelta(seconds=30), NOW, None], ts),
            "kafka_timestamp": pa.array([NOW, NOW, NOW], ts),
        }
    )
    write_deltalake(str(tmp_path / "current"), rows)
    assert newest_current_event_time(str(tmp_path / "current")) == NOW - timedelta(seconds=30)
    assert newest_current_event_time(str(tmp_path / "missing")) is None
