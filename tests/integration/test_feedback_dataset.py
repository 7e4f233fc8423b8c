"""`feedback/finetuning` through Dagster: raw Delta tables in, daily partitions of the dataset out.

Raw tables are written as the ingest writes them (`append_offsets`, offsets in the txn log); no
broker is needed because the dataset is derived from the primary store only.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import polars as pl
from deltalake import DeltaTable

from freshlake.assets.feedback import build_feedback_definitions
from freshlake.assets.keys import finetuning_key
from freshlake.delta.tables import append_offsets
from freshlake.ingest.parse import split_messages
from freshlake.kafka.messages import KafkaMessage
from freshlake.resources.storage import StorageResource
from tests.demo_streams import DEMO_STREAMS, demo_stream

DAY1, DAY2 = "2026-03-01", "2026-03-02"
T1 = datetime(2026, 3, 1, tzinfo=UTC)
T2 = T1 + timedelta(days=1)


class Raw:
    """Hand-made events landed in the raw Delta tables, one commit per `send`."""

    def __init__(self, storage: StorageResource) -> None:
        self.storage = storage
        self.offsets: dict[str, int] = {}
        self.flights = 0

    def send(self, stream: str, key: str, value: dict | None, *, at: datetime) -> None:
        spec = demo_stream(stream)
        offset = self.offsets[stream] = self.offsets.get(stream, -1) + 1
        if value is not None:
            value = {"event_time": at.isoformat(), **value}
        message = KafkaMessage(
            topic=spec.topic,
            partition=0,
            offset=offset,
            key=key.encode(),
            value=None if value is None else json.dumps(value).encode(),
            timestamp_ms=int(at.timestamp() * 1000),
        )
        rows, bad = split_messages(spec, [message], ingested_at=datetime.now(UTC))
        assert bad.num_rows == 0
        append_offsets(self.storage.delta_uri(spec, "raw"), rows, topic=spec.topic, last_offsets={0: offset})

    def policy(self, key: str, revision: int, body: str, *, at: datetime) -> None:
        value = {"policy_id": key, "title": f"Refunds r{revision}", "body": body, "revision": revision}
        self.send("policies", key, value, at=at)

    def flight(self, key: str, status: str, *, at: datetime) -> None:
        self.flights += 1  # the demo orders flights by their version
        value = {"flight_id": key, "flight_number": "FL12", "airline": "Freshair", "status": status}
        value["version"] = self.flights
        self.send("flights", key, {**value, "origin": "JFK", "destination": "SFO"}, at=at)

    def feedback(self, key: str, ids: list[str], *, at: datetime, rating: str = "up") -> None:
        value = {"feedback_id": key, "query": "Can I get a refund?", "answer": "Yes.", "rating": rating}
        self.send("feedback", key, {**value, "document_ids": ids}, at=at)


def materialize(storage: StorageResource, *days: str, config: dict | None = None) -> dict:
    """One run over `days` (several: a single-run backfill, as the UI launches it); its metadata."""
    defs = build_feedback_definitions(DEMO_STREAMS)
    span = {"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]}
    result = dg.materialize(
        list(defs.assets or ()),
        partition_key=days[0] if len(days) == 1 else None,
        tags=None if len(days) == 1 else span,
        run_config={"ops": {"feedback__finetuning": {"config": config}}} if config else None,
        resources={"storage": storage},
    )
    assert result.success
    materializations = result.asset_materializations_for_node("feedback__finetuning")
    assert sorted(m.partition for m in materializations) == sorted(days)
    return {k: v.value for k, v in materializations[0].metadata.items()}


def dataset(storage: StorageResource) -> dict[str, dict]:
    table = DeltaTable(storage.delta_uri("feedback", "finetuning")).to_pyarrow_table()
    return {row["feedback_id"]: row for row in table.to_pylist()}


def test_daily_partitions_keep_the_texts_of_their_time_and_reruns_change_nothing(tmp_path) -> None:
    storage = StorageResource(delta_root=str(tmp_path / "delta"), lance_root=str(tmp_path / "lance"))
    raw = Raw(storage)
    raw.policy("policy-refunds", 1, "Refunds take seven days.", at=T1 + timedelta(hours=8))
    raw.flight("FL0012", "scheduled", at=T1 + timedelta(hours=8))
    raw.feedback("FB1", ["policy-refunds", "FL0012"], at=T1 + timedelta(hours=10))
    raw.feedback("FB2", ["policy-pets"], at=T1 + timedelta(hours=11), rating="down")
    raw.policy("policy-refunds", 2, "Refunds take three days.", at=T2 + timedelta(hours=9))
    raw.flight("FL0012", "delayed", at=T2 + timedelta(hours=9))
    raw.feedback("FB3", ["policy-refunds", "FL0012"], at=T2 + timedelta(hours=12))

    day1 = materialize(storage, DAY1)
    day2 = materialize(storage, DAY2)

    assert (day1["rows"], day1["up"], day1["down"], day1["documents_missing"]) == (2, 1, 1, 1)
    assert (day2["rows"], day2["up"], day2["documents_missing"]) == (1, 1, 0)
    rows = dataset(storage)
    assert rows["FB1"]["kafka_date"] == DAY1 and rows["FB3"]["kafka_date"] == DAY2
    assert rows["FB1"]["chunk_texts"][0] == "Refunds r1\n\nRefunds take seven days."
    assert "is scheduled" in rows["FB1"]["chunk_texts"][1]
    assert rows["FB3"]["chunk_texts"][0] == "Refunds r2\n\nRefunds take three days."
    assert "is delayed" in rows["FB3"]["chunk_texts"][1]
    assert rows["FB2"]["missing_documents"] == ["policy-pets"] and rows["FB2"]["label"] == 0
    cited = rows["FB1"]["documents"][0]
    assert (cited["stream"], cited["source_partition"], cited["source_offset"]) == ("policies", 0, 0)
    before = dataset(storage)

    # A later revision and withdrawal, then a re-run of both days and a 2-day single-run backfill.
    raw.policy("policy-refunds", 3, "Refunds are instant.", at=T2 + timedelta(hours=20))
    raw.send("policies", "policy-refunds", None, at=T2 + timedelta(hours=21))
    again = materialize(storage, DAY1)
    materialize(storage, DAY2)
    assert dataset(storage) == before
    assert again["delta_version"] == day2["delta_version"] + 1

    backfill = materialize(storage, DAY1, DAY2)
    assert backfill["rows"] == 3 and backfill["dates"] == f"{DAY1}..{DAY2}"
    assert dataset(storage) == before
    table = DeltaTable(storage.delta_uri("feedback", "finetuning"))
    assert table.version() == backfill["delta_version"]
    assert table.metadata().partition_columns == ["kafka_date"]


def test_a_day_emptied_upstream_is_emptied_and_jsonl_follows(tmp_path) -> None:
    storage = StorageResource(delta_root=str(tmp_path / "delta"), lance_root=str(tmp_path / "lance"))
    raw = Raw(storage)
    raw.policy("policy-refunds", 1, "Refunds take seven days.", at=T1)
    raw.feedback("FB1", ["policy-refunds"], at=T1 + timedelta(hours=1))
    raw.feedback("FB2", ["policy-refunds"], at=T2 + timedelta(hours=1))
    out = tmp_path / "jsonl"

    materialize(storage, DAY1, config={"jsonl_dir": str(out)})
    metadata = materialize(storage, DAY2, config={"jsonl_dir": str(out)})

    assert metadata["jsonl_files"] == str(out / f"{DAY2}.jsonl")
    lines = [json.loads(line) for line in (out / f"{DAY1}.jsonl").read_text().splitlines()]
    assert [(r["feedback_id"], r["label"], r["chunk_texts"]) for r in lines] == [
        ("FB1", 1, ["Refunds r1\n\nRefunds take seven days."])
    ]

    # The raw day is deleted (e.g. before a raw backfill): rebuilding it leaves no stale rows.
    DeltaTable(storage.delta_uri("feedback", "raw")).delete(f"kafka_date = '{DAY1}'")
    materialize(storage, DAY1, config={"jsonl_dir": str(out)})
    assert sorted(dataset(storage)) == ["FB2"]
    assert (out / f"{DAY1}.jsonl").read_text() == ""
    frame = pl.read_delta(storage.delta_uri("feedback", "finetuning"))
    assert frame["kafka_date"].to_list() == [DAY2]


def test_definitions_hold_the_asset_its_history_deps_and_a_schedule() -> None:
    defs = build_feedback_definitions(DEMO_STREAMS)
    (asset,) = defs.assets
    assert asset.key == finetuning_key(demo_stream("feedback"))
    deps = {key.to_user_string() for key in asset.asset_deps[asset.key]}
    assert deps == {"feedback/raw", "flights/raw", "bookings/raw", "policies/raw"}
    assert asset.backfill_policy == dg.BackfillPolicy.single_run()
    full = dg.Definitions.merge(defs, dg.Definitions(resources={"storage": StorageResource()}))
    dg.Definitions.validate_loadable(full)
    repo = full.get_repository_def()
    schedule = repo.get_schedule_def("feedback_finetuning_schedule")
    when = datetime(2026, 3, 2, 0, 30, tzinfo=UTC)
    context = dg.build_schedule_context(scheduled_execution_time=when, repository_def=repo)
    (request,) = schedule.evaluate_tick(context).run_requests
    assert request.partition_key == DAY1
    assert not build_feedback_definitions([s for s in DEMO_STREAMS if s.name != "feedback"]).assets
