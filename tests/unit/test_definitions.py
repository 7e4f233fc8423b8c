"""The code location loads, and the asset graph starts at the Kafka topics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pyarrow as pa

from freshlake.assets.maintenance import DELTA_POOL
from freshlake.dagster_instance import write_instance_config
from tests.demo_streams import DEMO_STREAMS


def test_definitions_load_and_validate() -> None:
    from definitions import defs as load_defs

    defs = load_defs()

    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    keys = {key.to_user_string() for key in repo.asset_graph.get_all_asset_keys()}
    for spec in DEMO_STREAMS:
        assert f"kafka/{spec.topic}" in keys


def test_instance_config_is_accepted_by_dagster(tmp_path) -> None:
    from freshlake.dagster_instance import write_instance_config

    write_instance_config(dagster_home=tmp_path)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.run_retries_enabled
        assert instance.run_retries_max_retries == 2
        assert instance.get_settings("freshness") == {"enabled": True}
        # One maintenance writer per table: every pool has one slot, claimed per op.
        assert instance.global_op_concurrency_default_limit == 1
        assert instance.event_log_storage.supports_global_concurrency_limits


def test_maintenance_job_runs_against_real_tables(tmp_path) -> None:
    from definitions import defs as load_defs

    defs = load_defs()
    from freshlake.delta.schemas import quarantine_schema, raw_schema
    from freshlake.delta.tables import append_offsets
    from freshlake.resources.storage import StorageResource
    from tests.demo_streams import demo_stream

    storage = StorageResource(delta_root=str(tmp_path))
    spec = demo_stream("flights")
    for offset in range(5):  # five small commits: five files
        row = {
            "kafka_topic": "flights",
            "kafka_partition": 0,
            "kafka_offset": offset,
            "key": f"UA{offset}",
            "is_delete": False,
            "ingested_at": datetime(2026, 11, 21, tzinfo=UTC),
            "kafka_date": "2026-11-21",
        }
        append_offsets(
            storage.delta_uri(spec, "raw"),
            pa.Table.from_pylist([row], schema=raw_schema(spec)),
            topic="flights",
            last_offsets={0: offset},
        )
        bad = {**row, "error_class": "invalid_json", "error_message": "bad"}
        append_offsets(
            storage.delta_uri(spec, "quarantine"),
            pa.Table.from_pylist([bad], schema=quarantine_schema()),
            topic="flights",
            last_offsets={0: offset},
        )
    job = defs.get_job_def("delta_maintenance")
    (op,) = job.graph.node_defs
    assert op.pool == DELTA_POOL
    force = {"ops": {op.name: {"config": {"retention_hours": 0, "force_retention": True}}}}
    write_instance_config(dagster_home=tmp_path / "home")
    with dg.DagsterInstance.from_config(str(tmp_path / "home")) as instance:
        result = job.execute_in_process(resources={"storage": storage}, run_config=force, instance=instance)
        # The op went through its pool: Dagster gave it the default limit of one slot.
        assert instance.event_log_storage.get_concurrency_info(DELTA_POOL).slot_count == 1
    assert result.success
    observations = [e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert len(observations) == 12  # raw, quarantine, current of four streams
    raw, quarantine = (
        next(
            e.event_specific_data.asset_observation.metadata
            for e in observations
            if e.event_specific_data.asset_observation.asset_key.path == ["flights", layer]
        )
        for layer in ("raw", "quarantine")
    )
    for table in (raw, quarantine):
        assert table["files_before"].value == 5 and table["files_after"].value == 1
        assert table["read_seconds_before"].value > 0 and table["read_seconds_after"].value > 0
    assert quarantine["files_vacuumed"].value == 5 and quarantine["retention_hours"].value == 0
    # `current` has not read raw's change feed yet: raw keeps the files it will read.
    assert raw["files_vacuumed"].value == 0


def test_delta_maintenance_refuses_a_retention_below_the_floor(tmp_path) -> None:
    from definitions import defs as load_defs
    from freshlake.resources.storage import StorageResource

    job = load_defs().get_job_def("delta_maintenance")
    result = job.execute_in_process(
        resources={"storage": StorageResource(delta_root=str(tmp_path))},
        run_config={"ops": {"maintain_delta_tables": {"config": {"retention_hours": 0}}}},
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "below the 1 h floor" in failure.event_specific_data.error.message


def test_lance_maintenance_indexes_and_optimizes(tmp_path, monkeypatch) -> None:
    from definitions import defs as load_defs

    defs = load_defs()
    from freshlake.chunks import Chunk, Provenance
    from freshlake.embed.models import HashEmbedder
    from freshlake.lance.store import ChunkStore
    from freshlake.lance.tables import TableRegistry
    from freshlake.resources.storage import StorageResource
    from tests.demo_streams import demo_stream

    storage = StorageResource(delta_root=str(tmp_path / "d"), lance_root=str(tmp_path / "l"))
    embedder = HashEmbedder()
    spec = demo_stream("policies")
    # An older vector space, swapped out below: maintenance drops it after the grace period.
    old = ChunkStore(uri=storage.lance_uri(), table_name="policies__old", dimension=8)
    assert old.count() == 0
    storage.registry().swap(
        "policies", table_name=old.table_name, model_name="old", model_version="1", dimension=8
    )
    store = storage.space_store(spec, embedder=embedder)
    storage.registry().swap(
        "policies",
        table_name=store.table_name,
        model_name=embedder.model_name,
        model_version=embedder.model_version,
        dimension=embedder.dimension,
    )
    provenance = Provenance(
        source_topic="policies",
        source_partition=0,
        source_offset=1,
        source_version="1",
        raw_delta_version=0,
        current_delta_version=0,
        event_time=None,
        ingested_at=None,
    )
    for i in range(5):  # five small writes: five fragments
        chunk = Chunk(
            stream="policies", key=f"p{i}", chunk_index=0, text=f"refund rule {i}", provenance=provenance
        )
        store.apply(
            upserts=[chunk],
            vectors=embedder.embed([chunk.text]),
            deletes_keys={},
            keep_counts={},
            embedder_name=embedder.model_name,
            embedder_version=embedder.model_version,
        )
    retired = TableRegistry.retired
    monkeypatch.setattr(TableRegistry, "retired", lambda self: retired(self, older_than=timedelta(0)))
    result = defs.get_job_def("lance_maintenance").execute_in_process(resources={"storage": storage})
    assert result.success
    (policies,) = [
        e.event_specific_data.asset_observation.metadata
        for e in result.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
        and e.event_specific_data.asset_observation.asset_key.path == ["policies", "embeddings"]
    ]
    assert policies["rows"].value == 5
    assert policies["fragments_after"].value < policies["fragments_before"].value
    assert policies["search_p95_ms_before"].value > 0 and policies["search_p95_ms_after"].value > 0
    assert policies["index_rebuilt"].value == "no"
    assert policies["retired_tables_dropped"].value == "policies__old"
    assert [e.table_name for e in storage.registry().entries()] == [store.table_name]
