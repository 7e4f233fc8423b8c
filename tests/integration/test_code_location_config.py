"""A streams file is validated when Dagster loads the code location: a mistake stops the load
with the loader's message (what the UI shows), through `dagster definitions validate` and
through `dg` on a Components project whose `defs.yaml` uses the FreshlakeStreams type."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

STREAMS = """
streams:
  - name: orders
    topic: shop.orders
    key_field: order_id
    format: debezium
    fields: {order_id: int, status: string, updated_at: timestamp}
    event_time_field: updated_at
    document:
      template: "Order {order_id} is {status}"
"""


def run(args: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "DAGSTER_HOME": str(cwd), **(env or {})}
    full.pop("FRESHLAKE_STREAMS", None) if env is None or "FRESHLAKE_STREAMS" not in env else None
    return subprocess.run(args, cwd=cwd, env=full, capture_output=True, text=True, timeout=240, check=False)


def test_the_checkout_location_fails_to_load_with_the_message(tmp_path: Path) -> None:
    bad = tmp_path / "streams.yaml"
    bad.write_text(STREAMS.replace("key_field: order_id", "key_field: id"))
    result = run(
        [str(BIN / "dagster"), "definitions", "validate", "-w", str(ROOT / "workspace.yaml")],
        cwd=tmp_path,
        env={"FRESHLAKE_STREAMS": str(bad)},
    )
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{bad}, stream 'orders', field 'key_field': 'id' is not among `fields`" in out, out[-3000:]


def _project(root: Path, streams: str) -> Path:
    package = root / "src" / "shop"
    (package / "defs" / "orders").mkdir(parents=True)
    (root / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [project]
            name = "shop"
            version = "0.1.0"
            requires-python = ">=3.11"
            dependencies = ["freshlake"]

            [tool.dg]
            directory_type = "project"

            [tool.dg.project]
            root_module = "shop"
            """
        )
    )
    (package / "__init__.py").write_text("")
    (package / "defs" / "__init__.py").write_text("")
    (package / "definitions.py").write_text(
        "from pathlib import Path\n\nimport dagster as dg\n\n\n@dg.definitions\ndef defs():\n"
        "    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)\n"
    )
    (package / "defs" / "orders" / "defs.yaml").write_text(
        "type: freshlake.components.FreshlakeStreams\nattributes:\n  streams: streams.yaml\n"
    )
    path = package / "defs" / "orders" / "streams.yaml"
    path.write_text(streams)
    return path


@pytest.mark.skipif(not (BIN / "dg").exists(), reason="dagster-dg-cli is a dev dependency")
def test_a_components_project_checks_lists_and_reports_mistakes(tmp_path: Path) -> None:
    streams = _project(tmp_path, STREAMS)
    env = {"PYTHONPATH": str(tmp_path / "src"), "PATH": f"{BIN}:{os.environ['PATH']}"}
    checked = run([str(BIN / "dg"), "check", "defs"], cwd=tmp_path, env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    listed = run([str(BIN / "dg"), "list", "defs", "--json"], cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    for key in (
        "kafka/shop.orders",
        "orders/raw",
        "orders/quarantine",
        "orders/current",
        "orders/embeddings",
    ):
        assert key in listed.stdout
    assert "orders_offsets" in listed.stdout
    components = run([str(BIN / "dg"), "list", "components", "--json"], cwd=tmp_path, env=env)
    assert "freshlake.components.FreshlakeStreams" in components.stdout

    streams.write_text(STREAMS.replace("{status}", "{state}"))
    bad = run([str(BIN / "dg"), "check", "defs"], cwd=tmp_path, env=env)
    out = bad.stdout + bad.stderr
    assert bad.returncode != 0
    assert f"{streams}, stream 'orders', field 'document.template': placeholder {{state}}" in out, out[-3000:]
