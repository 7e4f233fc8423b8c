"""Compaction, checkpoints and vacuum shrink the file count without touching rows or txn versions."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

from freshlake.delta.maintenance import compact, maintain, vacuum
from freshlake.delta.schemas import quarantine_schema
from freshlake.delta.tables import append_offsets, committed_offsets, open_table, read_change_feed
from freshlake.errors import FreshlakeConfigError


def small_batch(partition: int, offset: int):
    from freshlake.delta.schemas import TS

    schema = quarantine_schema()
    row = {
        "kafka_topic": "t",
        "kafka_partition": partition,
        "kafka_offset": offset,
        "kafka_key": b"k",
        "kafka_timestamp": None,
        "kafka_headers": [],
        "value": b"{",
        "error_class": "invalid_json",
        "error_message": "bad",
        "ingested_at": pa.scalar(0, TS).as_py(),
        "kafka_date": "2026-11-21",
    }
    return pa.Table.from_pylist([row], schema=schema)


def thirty_appends(uri: str) -> None:
    for offset in range(30):
        batch = small_batch(offset % 3, offset)
        append_offsets(uri, batch, topic="t", last_offsets={offset % 3: offset})


def parquet_files(uri: str) -> int:
    return sum(1 for _ in Path(uri).rglob("*.parquet") if "_delta_log" not in _.parts)


def test_compaction_keeps_rows_and_offsets(tmp_path) -> None:
    uri = str(tmp_path / "t")
    thirty_appends(uri)
    before_rows = pl.read_delta(uri).sort("kafka_offset")
    before_offsets = committed_offsets(uri, topic="t", partitions=[0, 1, 2])

    result = compact(uri)

    assert result.files_before == 30 and result.files_after == 1
    assert pl.read_delta(uri).sort("kafka_offset").equals(before_rows)
    after_offsets = committed_offsets(uri, topic="t", partitions=[0, 1, 2])
    assert after_offsets == before_offsets == {0: 27, 1: 28, 2: 29}
    # A replay after compaction is still a no-op.
    again = append_offsets(uri, small_batch(0, 27), topic="t", last_offsets={0: 27})
    assert again.rows_written == 0 and pl.read_delta(uri).height == 30


def test_compacting_a_missing_table_is_a_no_op(tmp_path) -> None:
    assert compact(str(tmp_path / "none")).version is None


def test_retention_below_the_floor_is_refused_before_anything_changes(tmp_path) -> None:
    uri = str(tmp_path / "t")
    thirty_appends(uri)
    version = open_table(uri).version()

    with pytest.raises(FreshlakeConfigError, match=r"below the 1 h floor.*retention_hours >= 1"):
        maintain(uri, retention_hours=0)
    with pytest.raises(FreshlakeConfigError, match="floor"):
        vacuum(uri, retention_hours=0)

    assert open_table(uri).version() == version and len(open_table(uri).file_uris()) == 30


def test_vacuum_deletes_compacted_files_and_keeps_data_and_offsets(tmp_path) -> None:
    uri = str(tmp_path / "t")
    thirty_appends(uri)
    before_rows = pl.read_delta(uri).sort("kafka_offset")

    kept = maintain(uri)  # default retention (7 days): the files compacted just now stay
    assert kept.compaction.files_after == 1 and kept.vacuum.files_vacuumed == 0
    assert parquet_files(uri) == 31

    result = maintain(uri, retention_hours=0, force=True)

    assert result.vacuum.files_vacuumed == 30 and parquet_files(uri) == 1
    assert result.bytes_after > 0
    assert kept.read_seconds_before > 0 and kept.read_seconds_after > 0
    assert pl.read_delta(uri).sort("kafka_offset").equals(before_rows)
    assert committed_offsets(uri, topic="t", partitions=[0, 1, 2]) == {0: 27, 1: 28, 2: 29}
    again = append_offsets(uri, small_batch(1, 28), topic="t", last_offsets={1: 28})
    assert again.rows_written == 0 and pl.read_delta(uri).height == 30


def test_vacuum_keeps_what_a_change_feed_follower_has_yet_to_read(tmp_path) -> None:
    uri = str(tmp_path / "t")
    thirty_appends(uri)  # versions 0..29

    result = maintain(uri, retention_hours=0, force=True, keep_from_version=20)

    assert result.vacuum.files_vacuumed == 0
    table = open_table(uri)
    feed = read_change_feed(table.load_cdf(starting_version=20, ending_version=table.version()))
    assert sorted(feed.column("kafka_offset").to_pylist()) == list(range(20, 30))

    # Once the follower has caught up, the compacted-away files go.
    assert vacuum(uri, retention_hours=0, force=True).files_vacuumed == 30
