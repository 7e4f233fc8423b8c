"""`freshlake dev --profile prod` (what `make run PROFILE=prod` runs): the demo end to end over
SASL_SSL into object storage, Dagster on PostgreSQL, a token-guarded embedder; the CLI finds the
stack with only FRESHLAKE_HOME set; Ctrl-C leaves no process (checked by the fixture)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.e2e.devproc import freshlake_dev

pytestmark = [pytest.mark.e2e, pytest.mark.prod]

ROOT = Path(__file__).resolve().parents[2]


def test_the_prod_profile_ingests_the_demo_over_sasl_ssl_into_object_storage() -> None:
    # As root, PostgreSQL runs as its own user, which must traverse the folders above its data.
    base = Path(tempfile.mkdtemp(prefix="freshlake-devprod-"))
    base.chmod(0o711)
    producer = f"{sys.executable} -m examples.flight_assistant.producer --rate 10 --streams flights,policies"
    try:
        with freshlake_dev(
            base, args=["--profile", "prod"], env={"FRESHLAKE_PRODUCER": producer}, up_within=240
        ) as dev:
            settings = json.loads((dev.home / "prod" / "env.json").read_text())
            assert settings["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
            assert settings["FRESHLAKE_DELTA_URI"].startswith("s3://")
            assert "storage:\n  postgres:" in (dev.home / "prod" / "dagster" / "dagster.yaml").read_text()
            env = {
                k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "FRESHLAKE_", "DAGSTER_"))
            }
            env |= {"FRESHLAKE_HOME": str(dev.home), "HF_HUB_OFFLINE": "1"}
            status: dict = {}
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                done = subprocess.run(
                    [sys.executable, "-m", "freshlake.cli", "status", "--json"],
                    cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
                )  # fmt: skip
                if done.stdout.strip().startswith("["):
                    status = {s["stream"]: s for s in json.loads(done.stdout)}
                    if any((s.get("committed") or 0) > 0 for s in status.values()):
                        break
                time.sleep(5)
            # Read over SASL_SSL and from S3 with only FRESHLAKE_HOME set (dev.json + the profile's env).
            assert any((s.get("committed") or 0) > 0 for s in status.values()), (done.stderr, dev.log_tail())
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                found = subprocess.run(
                    [sys.executable, "-m", "freshlake.cli", "search", "flight status", "--json", "--k", "3"],
                    cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
                )  # fmt: skip
                if found.returncode == 0 and "flights" in found.stdout:
                    break
                time.sleep(5)
            assert found.returncode == 0 and "flights" in found.stdout, (found.stderr, dev.log_tail())
    finally:
        shutil.rmtree(base, ignore_errors=True)
