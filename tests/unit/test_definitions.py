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
    assert len(observations) == 8  # raw + quarantine of four streams
