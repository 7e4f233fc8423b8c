"""The source order as one sortable string: encodings, tombstones, Debezium positions, and the
guarded MERGE into a real Delta `current` table."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from freshlake.delta.current import fold_rows, merge_into_current
from freshlake.delta.schemas import raw_schema
from freshlake.errors import FreshlakeConfigError
from freshlake.ordering import (
    UNVERSIONED,
    assign_versions,
    describe,
    order_prefixes,
    split_version,
    suffixes,
    version_of,
)
from freshlake.streams import StreamSpec

T0 = datetime(2026, 11, 21, 12, tzinfo=UTC)
FIELDS = {"id": "string", "rev": "int", "score": "float", "at": "timestamp", "status": "string"}
THREE = StreamSpec(
    name="things", topic="things", key_field="id", fields=FIELDS, order_by=("rev", "score", "at")
)
JSON = StreamSpec(name="things", topic="things", key_field="id", fields=FIELDS, order_by=("rev",))
BY_TIME = StreamSpec(
    name="events",
    topic="events",
    key_field="id",
    fields={"id": "string", "status": "string"},
    event_time_field="event_time",
)
CDC = StreamSpec(
    name="orders",
    topic="orders",
    key_field="order_id",
    format="debezium",
    fields={"order_id": "string", "status": "string"},
)
SOURCE_COLUMNS = {
    "source_txid": pa.int64(),
    "source_file": pa.string(),
    "source_row": pa.int64(),
    "source_commit_lsn": pa.string(),
    "source_change_lsn": pa.string(),
}


def raw_rows(spec: StreamSpec, rows: list[dict]) -> pa.Table:
    """Raw-shaped rows (the raw schema, the Debezium source columns, `_commit_version`)."""
    schema = raw_schema(spec)
    extra = [pa.field(n, t) for n, t in SOURCE_COLUMNS.items() if n not in schema.names]
    if spec.format == "debezium":
        schema = pa.schema([*schema, *extra])
    schema = schema.append(pa.field("_commit_version", pa.int64()))
    filled = [
        {
            "kafka_topic": spec.topic,
            "kafka_key": r["key"].encode(),
            "kafka_timestamp": T0,
            "is_delete": False,
            "ingested_at": T0,
            "kafka_date": "2026-11-21",
            "_commit_version": 1,
            **r,
        }
        for r in rows
    ]
    return pa.Table.from_pylist(filled, schema=schema)


def test_int_float_and_timestamp_prefixes_sort_like_the_tuples() -> None:
    rng = random.Random(7)
    ints = [-(2**63), -(2**40), -1, 0, 1, 2**40, 2**63 - 1]
    floats = [
        -np.inf,
        -1e300,
        -2.5,
        0.0,  # -0.0 sorts just below 0.0
        1e-300,
        3.5,
        1e300,
        np.inf,
    ]
    rows = [
        {
            "rev": rng.choice(ints),
            "score": rng.choice(floats),
            "at": T0 + timedelta(microseconds=rng.randint(-(10**12), 10**12)),
        }
        for _ in range(400)
    ]
    table = pa.Table.from_pylist(
        rows,
        schema=pa.schema(
            [("rev", pa.int64()), ("score", pa.float64()), ("at", pa.timestamp("us", tz="UTC"))]
        ),
    )
    prefixes = order_prefixes(table, spec=THREE).to_pylist()
    assert len({len(p) for p in prefixes}) == 1 and len(prefixes[0]) == 48
    by_text = sorted(range(len(rows)), key=lambda i: prefixes[i])
    by_tuple = sorted(range(len(rows)), key=lambda i: (rows[i]["rev"], rows[i]["score"], rows[i]["at"]))
    assert [prefixes[i] for i in by_text] == [prefixes[i] for i in by_tuple]


def test_the_suffix_orders_by_partition_then_offset() -> None:
    pairs = [(p, o) for p in (0, 1, 5, 2**31 - 1) for o in (0, 9, 2**33, 2**62)]
    got = suffixes(np.array([p for p, _ in pairs]), np.array([o for _, o in pairs])).to_pylist()
    assert got == sorted(got)
    assert got[5] == version_of("", partition=pairs[5][0], offset=pairs[5][1])
    assert split_version("ab" + got[5]) == ("ab", *pairs[5])
    assert "partition 1 offset 9" in describe("ab" + got[5])


def test_event_time_orders_by_default_and_a_string_order_field_is_refused() -> None:
    table = raw_rows(
        BY_TIME,
        [
            {"key": "A", "kafka_partition": 0, "kafka_offset": 9, "event_time": T0, "status": "old"},
            {
                "key": "A",
                "kafka_partition": 2,
                "kafka_offset": 0,
                "event_time": T0 + timedelta(seconds=60),
                "status": "new",
            },
        ],
    )
    assert fold_rows(table, spec=BY_TIME).rows.column("status").to_pylist() == ["new"]
    bad = StreamSpec(name="x", topic="x", key_field="id", fields={"id": "string"}, order_by=("id",))
    with pytest.raises(FreshlakeConfigError, match="int, float or timestamp"):
        order_prefixes(pa.table({"id": ["a"]}), spec=bad)


def test_a_newer_event_at_a_lower_offset_of_another_partition_wins() -> None:
    """The issue's case: `cancelled` (rev 2) at partition 0 offset 0 beats `delayed` (rev 1)
    at partition 2 offset 60."""
    table = raw_rows(
        JSON,
        [
            {"key": "UA1", "kafka_partition": 2, "kafka_offset": 60, "rev": 1, "status": "delayed"},
            {"key": "UA1", "kafka_partition": 0, "kafka_offset": 0, "rev": 2, "status": "cancelled"},
        ],
    )
    folded = fold_rows(table, spec=JSON)
    assert folded.rows.column("status").to_pylist() == ["cancelled"]
    assert folded.version_ties == 0 and folded.rows_unordered == 0


def test_ties_between_partitions_are_decided_by_partition_and_counted() -> None:
    rows = [
        {"key": "K", "kafka_partition": 1, "kafka_offset": 3, "rev": 5, "status": "p1"},
        {"key": "K", "kafka_partition": 0, "kafka_offset": 8, "rev": 5, "status": "p0"},
        {"key": "J", "kafka_partition": 0, "kafka_offset": 1, "rev": 5, "status": "first"},
        {"key": "J", "kafka_partition": 0, "kafka_offset": 2, "rev": 5, "status": "second"},
    ]
    for order in (rows, rows[::-1]):
        folded = fold_rows(raw_rows(JSON, order), spec=JSON)
        got = dict(zip(*(folded.rows.column(c).to_pylist() for c in ("key", "status")), strict=True))
        assert got == {"K": "p1", "J": "second"}  # same partition: the offset decides, no tie
        assert folded.version_ties == 1


def test_a_tombstone_takes_the_prefix_of_the_row_before_it_in_its_partition() -> None:
    frame = pl.from_arrow(
        raw_rows(
            JSON,
            [
                {"key": "A", "kafka_partition": 0, "kafka_offset": 1, "rev": 7, "status": "x"},
                {"key": "A", "kafka_partition": 0, "kafka_offset": 4, "is_delete": True},
                {"key": "A", "kafka_partition": 1, "kafka_offset": 2, "rev": 3, "status": "y"},
                {"key": "B", "kafka_partition": 1, "kafka_offset": 5, "is_delete": True},
            ],
        )
    )
    got = assign_versions(frame, spec=JSON)
    versions = dict(zip(got["kafka_offset"].to_list(), got["version"].to_list(), strict=True))
    assert split_version(versions[4])[0] == split_version(versions[1])[0]  # inherited
    assert versions[4] > versions[1] > versions[2]
    assert versions[5].startswith(UNVERSIONED) and versions[5] < versions[2]
    assert got.filter(~pl.col("has_order"))["kafka_offset"].sort().to_list() == [4, 5]
    folded = fold_rows(frame.to_arrow(), spec=JSON)
    deleted = dict(zip(*(folded.rows.column(c).to_pylist() for c in ("key", "is_deleted")), strict=True))
    assert deleted == {"A": True, "B": True} and folded.rows_unordered == 2


def cdc(offset: int, partition: int, status: str, **source) -> dict:
    return {
        "key": "O1",
        "kafka_partition": partition,
        "kafka_offset": offset,
        "op": "u",
        "order_id": "O1",
        "status": status,
        **source,
    }


def test_postgres_orders_by_lsn_then_txid_not_by_offset() -> None:
    rows = [
        cdc(0, 1, "newest", source_lsn=900, source_txid=2, source_ts_ms=1),
        cdc(50, 0, "older", source_lsn=700, source_txid=9, source_ts_ms=5),
        cdc(51, 0, "same lsn, lower txid", source_lsn=900, source_txid=1, source_ts_ms=9),
    ]
    assert fold_rows(raw_rows(CDC, rows), spec=CDC).rows.column("status").to_pylist() == ["newest"]
    prefixes = order_prefixes(raw_rows(CDC, rows), spec=CDC).to_pylist()
    assert all(p.startswith("P") for p in prefixes) and prefixes[1] < prefixes[2] < prefixes[0]


def test_mysql_orders_by_binlog_file_then_pos_then_row() -> None:
    rows = [
        cdc(0, 0, "file 3", source_file="mysql-bin.000003", source_pos=4, source_row=0),
        cdc(1, 1, "file 2, far pos", source_file="mysql-bin.000002", source_pos=99_999, source_row=0),
        cdc(7, 2, "file 3, row 1", source_file="mysql-bin.000003", source_pos=4, source_row=1),
        cdc(9, 2, "file 10", source_file="mysql-bin.000010", source_pos=1, source_row=0),
    ]
    prefixes = order_prefixes(raw_rows(CDC, rows), spec=CDC).to_pylist()
    assert sorted(range(4), key=lambda i: prefixes[i]) == [1, 0, 2, 3]
    assert fold_rows(raw_rows(CDC, rows[:3]), spec=CDC).rows.column("status").to_pylist() == ["file 3, row 1"]


LSN = "00000025:00000d98:"


def test_sqlserver_orders_by_commit_lsn_then_change_lsn_and_ts_ms_is_the_fallback() -> None:
    rows = [
        cdc(
            0, 0, "a", source_commit_lsn="00000025:00000d98:0002", source_change_lsn="00000025:00000d98:0003"
        ),
        cdc(
            1, 1, "b", source_commit_lsn="00000025:00000D98:0002", source_change_lsn="00000025:00000d98:0010"
        ),
        cdc(2, 0, "c", source_commit_lsn="00000026:00000001:0001"),
    ]
    prefixes = order_prefixes(raw_rows(CDC, rows), spec=CDC).to_pylist()
    assert all(p.startswith("S") for p in prefixes) and prefixes[0] < prefixes[1] < prefixes[2]
    fallback = order_prefixes(raw_rows(CDC, [cdc(0, 0, "t", source_ts_ms=5)]), spec=CDC).to_pylist()
    assert fallback[0].startswith("T")


def test_debezium_tombstone_after_its_delete_inherits_the_delete_position() -> None:
    rows = [
        cdc(0, 0, "live", source_lsn=100),
        {**cdc(1, 0, "gone", source_lsn=200), "op": "d", "is_delete": True},
        {"key": "O1", "kafka_partition": 0, "kafka_offset": 2, "is_delete": True},  # tombstone
    ]
    got = assign_versions(pl.from_arrow(raw_rows(CDC, rows)), spec=CDC)
    v = got["version"].to_list()
    assert split_version(v[2])[0] == split_version(v[1])[0] and v[2] > v[1] > v[0]


def current(uri: str) -> dict[str, tuple]:
    frame = pl.read_delta(uri)
    return {r["key"]: (r["is_deleted"], r["status"], r["version"]) for r in frame.to_dicts()}


def test_merge_inherits_the_prefix_of_the_current_row_of_the_same_partition(tmp_path) -> None:
    uri = str(tmp_path / "current")

    def merge(rows: list[dict]) -> None:
        merge_into_current(spec=JSON, current_uri=uri, raw_rows=raw_rows(JSON, rows), raw_version=None)

    merge(
        [
            {"key": "A", "kafka_partition": 0, "kafka_offset": 1, "rev": 7, "status": "a7"},
            {"key": "B", "kafka_partition": 0, "kafka_offset": 2, "rev": 7, "status": "b7"},
        ]
    )
    a7 = current(uri)["A"][2]
    merge(
        [
            {"key": "A", "kafka_partition": 0, "kafka_offset": 5, "is_delete": True},  # same partition
            {"key": "B", "kafka_partition": 1, "kafka_offset": 5, "is_delete": True},  # other one
            {"key": "C", "kafka_partition": 2, "kafka_offset": 5, "is_delete": True},  # unknown key
        ]
    )
    state = current(uri)
    assert state["A"][0] is True  # the target's prefix, the tombstone's partition and offset
    assert state["A"][2] == version_of(split_version(a7)[0], partition=0, offset=5)
    assert state["B"][:2] == (False, "b7")  # not ordered against partition 0: no delete
    assert state["C"][0] is True and state["C"][2].startswith(UNVERSIONED)
    # an older versioned event re-creates the marker's key; none regresses A's delete
    merge(
        [
            {"key": "C", "kafka_partition": 0, "kafka_offset": 0, "rev": 1, "status": "c1"},
            {"key": "A", "kafka_partition": 1, "kafka_offset": 0, "rev": 6, "status": "a6"},
        ]
    )
    state = current(uri)
    assert state["C"][:2] == (False, "c1") and state["A"][0] is True


def test_shuffled_batches_over_partitions_converge_to_the_model(tmp_path) -> None:
    rng = random.Random(11)
    events, offsets = [], {p: 0 for p in range(4)}
    for rev in range(120):
        key, partition = f"K{rng.randrange(6)}", rng.randrange(4)
        events.append(
            {
                "key": key,
                "kafka_partition": partition,
                "kafka_offset": offsets[partition],
                "rev": rng.randrange(40),  # revisions repeat: ties across partitions happen
                "status": f"s{rev}",
            }
        )
        offsets[partition] += 1
    model = {}
    for e in events:
        rank = (e["rev"], e["kafka_partition"], e["kafka_offset"])
        if e["key"] not in model or rank > model[e["key"]][0]:
            model[e["key"]] = (rank, e["status"])
    for seed in range(3):
        uri = str(tmp_path / f"current-{seed}")
        shuffled = events[:]
        random.Random(seed).shuffle(shuffled)
        for start in range(0, len(shuffled), 17):
            batch = raw_rows(JSON, shuffled[start : start + 17])
            merge_into_current(spec=JSON, current_uri=uri, raw_rows=batch, raw_version=None)
        assert {k: v[1] for k, v in current(uri).items()} == {k: v[1] for k, v in model.items()}


def test_a_current_table_with_offset_versions_is_refused_with_the_fix(tmp_path) -> None:
    from deltalake import write_deltalake

    uri = str(tmp_path / "current")
    write_deltalake(uri, pa.table({"key": ["A"], "version": pa.array([3], pa.int64())}))
    rows = raw_rows(JSON, [{"key": "A", "kafka_partition": 0, "kafka_offset": 0, "rev": 1}])
    with pytest.raises(FreshlakeConfigError, match="Drop that table"):
        merge_into_current(spec=JSON, current_uri=uri, raw_rows=rows, raw_version=None)


def test_the_feedback_as_of_join_picks_the_newest_version_not_the_highest_offset() -> None:
    from freshlake.feedback import as_of_versions

    history = raw_rows(
        JSON,
        [
            {"key": "UA1", "kafka_partition": 2, "kafka_offset": 60, "rev": 1, "status": "delayed"},
            {"key": "UA1", "kafka_partition": 0, "kafka_offset": 0, "rev": 2, "status": "cancelled"},
            {"key": "UA1", "kafka_partition": 0, "kafka_offset": 1, "rev": 3, "status": "later"},
        ],
    )
    history = history.set_column(
        history.schema.get_field_index("kafka_timestamp"),
        "kafka_timestamp",
        pa.array([T0, T0, T0 + timedelta(hours=1)], pa.timestamp("us", tz="UTC")),
    )
    refs = pl.DataFrame(
        {"ref": [0], "key": ["UA1"], "as_of": [T0 + timedelta(minutes=1)]},
        schema={"ref": pl.Int64, "key": pl.String, "as_of": pl.Datetime("us", "UTC")},
    )
    picked = as_of_versions(refs, pl.from_arrow(history), spec=JSON)
    assert picked["status"].to_list() == ["cancelled"]  # "later" came after the feedback
