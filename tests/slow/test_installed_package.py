"""freshlake as an installed package, used from a project of its own, not from this checkout.

A fresh venv (no system site-packages) gets this repo installed with `pip install --no-deps`; the
dependencies come from the project venv's site-packages through a `.pth` file, so nothing is
downloaded. In a folder `freshlake init` wrote: the definitions validate, and the init stream's raw
asset materializes against the embedded broker.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", ".freshlake", "build", "*.egg-info", "__pycache__", ".*_cache", "bench", "tests"
)


def run(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (
        f"{' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    )
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with freshlake installed (not editable) from a copy of this repo's sources."""
    base = tmp_path_factory.mktemp("installed")
    source, env_dir = base / "source", base / "venv"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)  # the build writes build/ and egg-info there
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # Appended after the venv's own site-packages: the installed freshlake wins over the checkout's
    # editable one (a path added by a .pth is not scanned for further .pth files, so the editable
    # finder stays off), and pip, setuptools and every dependency come from the project venv.
    (Path(purelib) / "project_venv.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    run(
        [
            python,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            str(source),
        ],
        cwd=base,
        env=clean_env(),
    )
    return env_dir


def clean_env(**extra: str) -> dict[str, str]:
    drop = {"PYTHONPATH", "VIRTUAL_ENV", "FRESHLAKE_STREAMS", "DAGSTER_HOME", "KAFKA_BOOTSTRAP_SERVERS"}
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **extra}


def test_init_project_validates_and_materializes_from_an_installed_freshlake(venv, kafka_config, tmp_path):
    from confluent_kafka import Producer

    from freshlake.kafka.topics import ensure_topics

    python, project = venv / "bin" / "python", tmp_path / "shop"
    where = run(
        [python, "-c", "import freshlake, freshlake.assets, freshlake.cli; print(freshlake.__file__)"],
        cwd=tmp_path,
        env=clean_env(),
    )
    assert Path(where.strip()).is_relative_to(venv), where  # not the checkout's editable install

    run([venv / "bin" / "freshlake", "init", str(project)], cwd=tmp_path, env=clean_env())
    assert sorted(p.name for p in project.iterdir()) == [
        "README.md",
        "definitions.py",
        "pyproject.toml",
        "streams.yaml",
        "workspace.yaml",
    ]
    topic = f"orders-{uuid.uuid4().hex[:8]}"  # the session broker is shared
    streams = project / "streams.yaml"
    streams.write_text(streams.read_text().replace("topic: orders ", f"topic: {topic} "))

    env = clean_env(
        DAGSTER_HOME=str(tmp_path / "dagster"),
        FRESHLAKE_HOME=str(project / ".freshlake"),
        KAFKA_BOOTSTRAP_SERVERS=str(kafka_config["bootstrap.servers"]),
    )
    (tmp_path / "dagster").mkdir()
    out = run(
        [python, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"], cwd=project, env=env
    )
    assert "All code locations passed validation" in out, out[-3000:]

    ensure_topics(kafka_config, topics={topic: 3})
    producer = Producer(kafka_config)
    from freshlake.assets.partitions import current_partition
    from freshlake.config import load_streams

    partition = current_partition(load_streams(streams).stream("orders"))
    now = datetime.now(UTC)
    for i in range(5):
        record = {
            "order_id": f"o{i}",
            "customer": "Ann",
            "status": "paid",
            "total": 9.5,
            "updated_at": now.isoformat(),
        }
        producer.produce(topic, key=f"o{i}", value=json.dumps(record))
    producer.produce(topic, key="bad", value=b"not json")
    assert producer.flush(10) == 0

    run(
        [
            python,
            "-m",
            "dagster",
            "asset",
            "materialize",
            "-f",
            "definitions.py",
            "--select",
            "orders/raw,orders/quarantine",
            "--partition",
            partition,
        ],
        cwd=project,
        env=env,
    )
    import polars as pl

    raw = pl.read_delta(str(project / ".freshlake" / "delta" / "orders" / "raw"))
    quarantine = pl.read_delta(str(project / ".freshlake" / "delta" / "orders" / "quarantine"))
    assert raw.height == 5 and quarantine.height == 1
