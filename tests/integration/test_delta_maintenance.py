"""Compaction and checkpoints shrink the file count without touching rows or txn versions."""

from __future__ import annotations

import polars as pl

from freshlake.delta.maintenance import compact
from freshlake.delta.schemas import quarantine_schema
from freshlake.delta.tables import append_offsets, committed_offsets


def small_batch(partition: int, offset: int):
    import pyarrow as pa

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


def test_compaction_keeps_rows_and_offsets(tmp_path) -> None:
    uri = str(tmp_path / "t")
    for offset in range(30):
        batch = small_batch(offset % 3, offset)
        append_offsets(uri, batch, topic="t", last_offsets={offset % 3: offset})
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
