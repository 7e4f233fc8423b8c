"""`freshlake init DIR`: a project Dagster loads as written, that the CLI finds its streams in, and
that is never written over."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from freshlake.cli.init import FILES, project_name
from freshlake.config import load_streams

pytestmark = pytest.mark.integration


def freshlake(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    drop = {"FRESHLAKE_STREAMS", "KAFKA_BOOTSTRAP_SERVERS", "DAGSTER_HOME"}
    environment = {k: v for k, v in os.environ.items() if k not in drop}
    return subprocess.run(
        [sys.executable, "-m", "freshlake.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**environment, **(env or {})},
    )


def validate(project: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FRESHLAKE_STREAMS"}
    return subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=project,
        env={**env, "DAGSTER_HOME": str(project)},
    )


def test_init_writes_a_project_dagster_loads_as_written(tmp_path) -> None:
    project = tmp_path / "My Shop"
    result = freshlake("init", str(project), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in project.iterdir()) == sorted(FILES)

    meta = tomllib.loads((project / "pyproject.toml").read_text())["project"]
    assert meta["name"] == "my-shop"
    assert [d for d in meta["dependencies"] if d.startswith("freshlake")], meta["dependencies"]
    assert "location_name: my-shop" in (project / "workspace.yaml").read_text()
    assert "definitions_from_file(default=" in (project / "definitions.py").read_text()

    config = load_streams(project / "streams.yaml")  # valid as written, comments and all
    (orders,) = config.streams
    assert orders.name == "orders" and orders.document is not None and orders.key_fields == ("order_id",)
    assert (project / "streams.yaml").read_text().count("#") > 10  # every key explained

    checked = validate(project)
    assert checked.returncode == 0, checked.stderr[-3000:]
    assert "All code locations passed validation" in checked.stderr + checked.stdout

    # The CLI finds ./streams.yaml by itself: no config error (2), just no data yet (1).
    searched = freshlake("search", "paid order", cwd=project, env={"FRESHLAKE_HOME": str(tmp_path / "h")})
    assert searched.returncode == 1 and "no embedded data" in searched.stderr


def test_a_broken_streams_file_fails_the_load_naming_file_stream_and_field(tmp_path) -> None:
    project = tmp_path / "shop"
    assert freshlake("init", str(project), cwd=tmp_path).returncode == 0
    streams = project / "streams.yaml"
    streams.write_text(streams.read_text().replace("key_field: order_id", "key_field: order_no"))
    checked = validate(project)
    assert checked.returncode != 0
    assert f"{streams}, stream 'orders', field 'key_field'" in checked.stderr + checked.stdout


def test_init_never_overwrites_and_says_which_files_exist(tmp_path) -> None:
    (tmp_path / "streams.yaml").write_text("mine\n")
    (tmp_path / "README.md").write_text("mine too\n")
    result = freshlake("init", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    message = result.stderr.strip()
    assert "never overwrites" in message and "streams.yaml" in message and "README.md" in message
    assert "definitions.py" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "streams.yaml"]  # nothing written
    assert (tmp_path / "streams.yaml").read_text() == "mine\n"

    a_file = tmp_path / "a-file"
    a_file.write_text("")
    assert freshlake("init", str(a_file), cwd=tmp_path).returncode == 2


@pytest.mark.parametrize(
    ("folder", "name"), [("My Shop", "my-shop"), ("orders_2026", "orders-2026"), ("2026", "freshlake-2026")]
)
def test_project_names_are_distribution_names(folder: str, name: str) -> None:
    assert project_name(folder) == name
