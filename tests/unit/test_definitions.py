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
