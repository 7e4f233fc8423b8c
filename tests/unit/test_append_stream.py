"""`append_stream`: rows written while they are produced, committed once with their offsets, or
not at all (real Delta tables on local disk)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from freshlake.delta.maintenance import vacuum
from freshlake.delta.schemas import quarantine_schema
from freshlake.delta.tables import (
    NotCommitted,
    append_offsets,
    append_stream,
    committed_offsets,
    ensure_table,
    open_table,
)

SCHEMA = quarantine_schema()  # any table of the primary store: Kafka coordinates + `kafka_date`


def rows(partition: int, offsets: range) -> pa.RecordBatch:
    n = len(offsets)
    return pa.RecordBatch.from_pydict(
        {
            "kafka_topic": ["t"] * n,
            "kafka_partition": [partition] * n,
            "kafka_offset": list(offsets),
            "kafka_key": [b"k"] * n,
            "kafka_timestamp": [None] * n,
            "kafka_headers": [[]] * n,
            "value": [b"{"] * n,
            "error_class": ["x"] * n,
            "error_message": ["x"] * n,
            "ingested_at": [0] * n,
            "kafka_date": ["2026-11-21"] * n,
        },
        schema=SCHEMA,
    )


@pytest.fixture
def uri(tmp_path: Path) -> str:
    uri = str(tmp_path / "t")
    ensure_table(uri, schema=SCHEMA)
    return uri


def offsets_in(uri: str) -> list[tuple[int, int]]:
    table = open_table(uri).to_pyarrow_table(columns=["kafka_partition", "kafka_offset"])
    return sorted(zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True))


def stream(uri: str, batches, last: dict[int, int]):
    return append_stream(uri, batches, schema=SCHEMA, topic="t", last_offsets=last)


def test_rows_and_offsets_land_in_one_commit(uri: str) -> None:
    before = open_table(uri).version()
    result = stream(
        uri, iter([rows(0, range(0, 5)), rows(1, range(0, 3)), rows(0, range(5, 9))]), {0: 8, 1: 2}
    )
    assert result is not None and (result.version, result.rows_written) == (before + 1, 12)
    assert committed_offsets(uri, topic="t", partitions=[0, 1]) == {0: 8, 1: 2}
    assert offsets_in(uri) == [(0, o) for o in range(9)] + [(1, o) for o in range(3)]


def test_offsets_already_recorded_commit_nothing_and_use_the_batches_up(uri: str) -> None:
    stream(uri, iter([rows(0, range(0, 5))]), {0: 4})
    version = open_table(uri).version()
    pulled = []

    def replay() -> Iterator[pa.RecordBatch]:
        pulled.append(1)
        yield rows(0, range(0, 5))

    assert stream(uri, replay(), {0: 4}) is None
    assert pulled == [1] and open_table(uri).version() == version
    assert stream(uri, iter([]), {}) is None  # no range at all: no empty commit either
    assert open_table(uri).version() == version
    assert offsets_in(uri) == [(0, o) for o in range(5)]


def test_not_committed_ends_the_write_without_a_commit(uri: str) -> None:
    version = open_table(uri).version()

    def found_a_bad_message() -> Iterator[pa.RecordBatch]:
        yield rows(0, range(0, 5))
        raise NotCommitted

    assert stream(uri, found_a_bad_message(), {0: 4}) is None
    assert open_table(uri).version() == version
    assert committed_offsets(uri, topic="t", partitions=[0]) == {0: None}
    assert offsets_in(uri) == []


def test_an_error_while_producing_is_raised_as_it_was(uri: str) -> None:
    class BrokerDown(RuntimeError):
        pass

    def failing() -> Iterator[pa.RecordBatch]:
        yield rows(0, range(0, 5))
        raise BrokerDown("no progress reading t")

    with pytest.raises(BrokerDown, match="no progress reading t"):
        stream(uri, failing(), {0: 4})
    assert committed_offsets(uri, topic="t", partitions=[0]) == {0: None} and offsets_in(uri) == []


def test_a_concurrent_commit_of_the_same_offsets_is_a_conflict_never_a_duplicate(uri: str) -> None:
    def racing() -> Iterator[pa.RecordBatch]:
        yield rows(0, range(0, 5))
        # Another run commits the same range while this one is still writing.
        append_offsets(uri, pa.Table.from_batches([rows(0, range(0, 5))]), topic="t", last_offsets={0: 4})
        yield rows(0, range(5, 6))

    assert stream(uri, racing(), {0: 5}) is None
    assert committed_offsets(uri, topic="t", partitions=[0]) == {0: 4}
    # The caller then appends what it read with the checked path: only offset 5 is new.
    again = append_offsets(uri, pa.Table.from_batches([rows(0, range(0, 6))]), topic="t", last_offsets={0: 5})
    assert (again.rows_written, again.rows_skipped) == (1, 5)
    assert offsets_in(uri) == [(0, o) for o in range(6)]


def test_vacuum_removes_the_files_of_a_write_that_never_committed(uri: str) -> None:
    import pyarrow.parquet as pq

    stream(uri, iter([rows(0, range(0, 3))]), {0: 2})
    # What an aborted write of a big run leaves: a data file that no commit names.
    orphan = Path(uri) / "kafka_date=2026-11-21" / "part-00000-never-committed-c000.snappy.parquet"
    pq.write_table(pa.Table.from_batches([rows(0, range(3, 9))]).drop(["kafka_date"]), orphan)
    hours_ago = time.time() - 2 * 3600
    for path in Path(uri).rglob("*.parquet"):
        os.utime(path, (hours_ago, hours_ago))

    forced = vacuum(uri, retention_hours=0, force=True)  # below the floor: a write may be in flight
    assert forced.files_vacuumed == 0 and orphan.exists()
    result = vacuum(uri, retention_hours=1)

    assert result.files_vacuumed == 1 and not orphan.exists()
    assert offsets_in(uri) == [(0, o) for o in range(3)]
