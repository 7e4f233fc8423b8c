"""The code location loads, and the asset graph starts at the Kafka topics."""

from __future__ import annotations

import dagster as dg

from freshlake.streams import DEMO_STREAMS


def test_definitions_load_and_validate() -> None:
    from definitions import defs

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


def test_maintenance_job_runs_against_real_tables(tmp_path) -> None:
    from definitions import defs
    from freshlake.delta.schemas import raw_schema
    from freshlake.delta.tables import append_offsets
    from freshlake.streams import stream_by_name
    from resources.storage import StorageResource

    storage = StorageResource(delta_root=str(tmp_path))
    spec = stream_by_name("flights")
    for offset in range(5):
        append_offsets(
            storage.delta_uri(spec, "raw"),
            raw_schema(spec).empty_table(),
            topic="flights",
            last_offsets={0: offset},
        )
    job = defs.get_job_def("delta_maintenance")
    result = job.execute_in_process(resources={"storage": storage})
    assert result.success
    observations = [e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    assert len(observations) == 12  # raw, quarantine, current of four streams


def test_lance_maintenance_indexes_and_optimizes(tmp_path) -> None:
    from definitions import defs
    from freshlake.chunks import Chunk, Provenance
    from freshlake.embed.models import HashEmbedder
    from freshlake.streams import stream_by_name
    from resources.embedder import EmbedderResource
    from resources.storage import StorageResource

    storage = StorageResource(delta_root=str(tmp_path / "d"), lance_root=str(tmp_path / "l"))
    embedder = HashEmbedder()
    spec = stream_by_name("policies")
    store = storage.chunk_store(spec, dimension=embedder.dimension)
    provenance = Provenance(
        source_topic="policies",
        source_partition=0,
        source_offset=1,
        source_version=1,
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
    result = defs.get_job_def("lance_maintenance").execute_in_process(
        resources={"storage": storage, "embedder": EmbedderResource(kind="hash")}
    )
    assert result.success
    (policies,) = [
        e.event_specific_data.asset_observation.metadata
        for e in result.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
        and e.event_specific_data.asset_observation.asset_key.path == ["policies", "embeddings"]
    ]
    assert policies["rows"].value == 5
    assert policies["fragments_after"].value < policies["fragments_before"].value
