"""Issue 6 acceptance: after 500 small streaming passes, maintenance brings the raw table to a
handful of files and LanceDB to a handful of fragments, with read time and search p95 before and
after in the metadata; streaming writes running concurrently lose and duplicate nothing.

The passes call the library directly (what one small run does per store): `append_offsets` with
a few raw rows and their offsets, `ChunkStore.apply` with a few HashEmbedder chunks.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import polars as pl
import pyarrow as pa
import pytest

from freshlake.assets.maintenance import DeltaMaintenanceConfig, _delta_metadata, _lance_metadata
from freshlake.chunks import Chunk, Provenance
from freshlake.delta.maintenance import maintain
from freshlake.delta.schemas import raw_schema
from freshlake.delta.tables import append_offsets, committed_offsets
from freshlake.embed.models import HashEmbedder
from freshlake.lance.store import ChunkStore
from tests.demo_streams import demo_stream

pytestmark = pytest.mark.slow

PASSES = 500
PARTITIONS = 3
SPEC = demo_stream("flights")
EMBEDDER = HashEmbedder()
T0 = datetime(2026, 11, 21, 6, tzinfo=UTC)


class RawStream:
    """Small raw commits: two messages per pass, partitions round-robin, offsets per partition."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.next_offset = dict.fromkeys(range(PARTITIONS), 0)
        self.schema = raw_schema(SPEC)

    def write(self, n: int) -> None:
        partition = n % PARTITIONS
        first = self.next_offset[partition]
        when = T0 + timedelta(minutes=3 * n)  # 500 passes span two Kafka dates
        rows = [
            {
                "kafka_topic": SPEC.topic,
                "kafka_partition": partition,
                "kafka_offset": offset,
                "kafka_timestamp": when,
                "value": b"{}",
                "key": f"UA{offset % 97}",
                "is_delete": False,
                "event_time": when,
                "ingested_at": when,
                "kafka_date": when.date().isoformat(),
            }
            for offset in (first, first + 1)
        ]
        result = append_offsets(
            self.uri,
            pa.Table.from_pylist(rows, schema=self.schema),
            topic=SPEC.topic,
            last_offsets={partition: first + 1},
        )
        assert result.rows_written == 2
        self.next_offset[partition] = first + 2

    def expected(self) -> set[tuple[int, int]]:
        return {(p, o) for p, n in self.next_offset.items() for o in range(n)}


class ChunkStream:
    """Small LanceDB writes: a new 4-chunk document per pass; every 5th pass also updates one."""

    def __init__(self, store: ChunkStore) -> None:
        self.store = store
        self.versions: dict[str, str] = {}  # key -> newest source_version written

    def write(self, n: int) -> None:
        keys = [f"doc{n}"] + ([f"doc{n // 2}"] if n % 5 == 4 else [])
        chunks = []
        for key in keys:
            version = n + 1
            self.versions[key] = f"{version:016x}"  # a sortable version string
            chunks += [
                Chunk(
                    stream=SPEC.name,
                    key=key,
                    chunk_index=i,
                    text=f"flight {key} to city {n % 41} gate {i} status {n % 7} v{version}",
                    provenance=Provenance(
                        source_topic=SPEC.topic,
                        source_partition=0,
                        source_offset=version,
                        source_version=self.versions[key],
                        raw_delta_version=n,
                        current_delta_version=n,
                        event_time=T0,
                        ingested_at=T0,
                    ),
                )
                for i in range(4)
            ]
        self.store.apply(
            upserts=chunks,
            vectors=EMBEDDER.embed([c.text for c in chunks]),
            deletes_keys={},
            keep_counts={},
            embedder_name=EMBEDDER.model_name,
            embedder_version=EMBEDDER.model_version,
        )

    def check(self) -> None:
        rows = self.store.table.search().select(["chunk_id", "key", "source_version"]).to_arrow()
        ids = rows.column("chunk_id").to_pylist()
        assert len(ids) == len(set(ids)) == 4 * len(self.versions)
        keys, versions = rows.column("key").to_pylist(), rows.column("source_version").to_pylist()
        stored = dict(zip(keys, versions, strict=True))
        assert stored == self.versions


def raw_coordinates(uri: str) -> list[tuple[int, int]]:
    frame = pl.read_delta(uri).select("kafka_partition", "kafka_offset")
    return list(frame.iter_rows())


def check_raw(uri: str, raw: RawStream) -> None:
    coordinates = raw_coordinates(uri)
    assert len(coordinates) == len(set(coordinates)), "a (partition, offset) is duplicated"
    assert set(coordinates) == raw.expected(), "a (partition, offset) is missing"
    committed = committed_offsets(uri, topic=SPEC.topic, partitions=list(range(PARTITIONS)))
    assert committed == {p: n - 1 for p, n in raw.next_offset.items()}


def run_beside(writer, maintenance) -> int:
    """Run `maintenance` while a thread keeps calling `writer(n)`; return the writes during it."""
    stop, failures, during = threading.Event(), [], []

    def loop() -> None:
        n = PASSES
        while not stop.is_set():
            try:
                writer(n)
            except Exception as exc:  # a streaming write must never fail because of maintenance
                failures.append(exc)
                return
            during.append(n)
            n += 1
            time.sleep(0.01)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        while len(during) < 3:  # the stream is under way before maintenance starts
            time.sleep(0.01)
        started = len(during)
        maintenance()
        overlapped = len(during) - started
    finally:
        stop.set()
        thread.join()
    assert not failures, failures
    return overlapped


def test_maintenance_after_500_small_streaming_passes(tmp_path, capsys) -> None:
    raw_uri = str(tmp_path / "delta" / "flights" / "raw")
    raw = RawStream(raw_uri)
    chunks = ChunkStream(ChunkStore(uri=str(tmp_path / "lance"), table_name="flights", dimension=384))

    started = time.perf_counter()
    raw_passes = threading.Thread(target=lambda: [raw.write(n) for n in range(PASSES)])
    raw_passes.start()  # the two stores' passes side by side, as two streams' runs would be
    for n in range(PASSES):
        chunks.write(n)
    raw_passes.join()
    streaming_s = time.perf_counter() - started
    assert sum(raw.next_offset.values()) == 2 * PASSES

    config = DeltaMaintenanceConfig(retention_hours=0, force_retention=True)
    delta = _delta_metadata(maintain(raw_uri, retention_hours=0, force=True), config)
    lance = _lance_metadata(
        chunks.store.maintain(
            cleanup_older_than=timedelta(0), force_cleanup=True, min_rows_for_vector_index=1_000
        )
    )

    assert delta["files_before"] >= PASSES and delta["files_after"] <= 5
    assert delta["files_vacuumed"] >= PASSES
    # Timings are reported (below, and in the jobs' metadata), not asserted: speed is for bench/.
    assert delta["read_seconds_before"] > 0 and delta["read_seconds_after"] > 0
    assert lance["fragments_before"] >= PASSES // 2 and lance["fragments_after"] <= 5
    assert lance["search_p95_ms_before"] > 0 and lance["search_p95_ms_after"] > 0
    assert "vector:IVF_SQ" in lance["indexes_created"] and lance["recall_at_10"] >= 0.9
    check_raw(raw_uri, raw)
    chunks.check()

    # Maintenance again, now beside streaming writes: conflicts retried, nothing lost or doubled.
    delta_overlap = run_beside(raw.write, lambda: maintain(raw_uri, retention_hours=0, force=True))
    lance_overlap = run_beside(chunks.write, chunks.store.maintain)
    assert delta_overlap > 0 and lance_overlap > 0
    check_raw(raw_uri, raw)
    chunks.check()

    with capsys.disabled():
        print(
            f"\nstreaming {PASSES} passes: {streaming_s:.1f} s\n"
            f"raw: files {delta['files_before']} -> {delta['files_after']}, vacuumed "
            f"{delta['files_vacuumed']}, read {delta['read_seconds_before']} -> "
            f"{delta['read_seconds_after']} s\n"
            f"lance: fragments {lance['fragments_before']} -> {lance['fragments_after']}, search p95 "
            f"{lance['search_p95_ms_before']} -> {lance['search_p95_ms_after']} ms, recall@10 "
            f"{lance['recall_at_10']}\n"
            f"concurrent writes during maintenance: delta {delta_overlap}, lance {lance_overlap}"
        )
