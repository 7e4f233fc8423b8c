"""Issue 11's acceptance as a user runs it: a streams file of non-demo streams, `dagster asset
materialize` against the checkout's code location with FRESHLAKE_STREAMS, then `freshlake search`,
`status` and `trace` with `--streams`; the real model, the real broker, real Delta and LanceDB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Producer

from freshlake.assets.partitions import current_partition
from freshlake.config import load_streams
from freshlake.kafka.topics import ensure_topics
from tests.integration.test_own_streams import STREAMS, change

pytestmark = [pytest.mark.slow, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_materialize_search_status_trace_from_the_command_line(kafka_config, tmp_path: Path) -> None:
    prefix = f"c{uuid.uuid4().hex[:6]}."
    path = tmp_path / "streams.yaml"
    path.write_text(STREAMS.replace("{prefix}", prefix))
    config = load_streams(path)
    inventory, articles = config.streams
    ensure_topics(kafka_config, topics=config.topics)
    producer = Producer(kafka_config)
    row = {"sku_id": 17, "product": "Espresso cups", "warehouse": "Lyon", "unit_price": 4.5}
    for quantity, lsn in ((40, 100), (12, 200)):
        value = change("u", {**row, "quantity": quantity, "restocked_at": "2026-11-30T09:00:00Z"}, lsn=lsn)
        producer.produce(inventory.topic, key=b'{"sku_id": 17}', value=value)
    article = {"slug": "returns-policy", "title": "Returning an order", "revision": 1}
    article |= {"body": "Returns are accepted within 30 days.", "published_at": "2026-11-21T10:00:00Z"}
    producer.produce(articles.topic, key=b"returns-policy", value=json.dumps(article).encode())
    producer.flush()

    env = {
        **os.environ,
        "FRESHLAKE_STREAMS": str(path),
        "FRESHLAKE_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path),
        "KAFKA_BOOTSTRAP_SERVERS": str(kafka_config["bootstrap.servers"]),
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("FRESHLAKE_EMBEDDER_URL", None)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
        )

    for spec in config.streams:
        done = run(
            str(BIN / "dagster"), "asset", "materialize", "-f", str(ROOT / "definitions.py"),
            "--select", f"group:{spec.name}", "--partition", current_partition(spec),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]

    found = run(str(BIN / "freshlake"), "search", "how many espresso cups are in stock", "--k", "3", "--json")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    hits = hits.get("results", hits.get("hits", hits)) if isinstance(hits, dict) else hits
    assert any(h["stream"] == "inventory" and h["key"] == "17" and "12 in stock" in h["text"] for h in hits)

    status = run(str(BIN / "freshlake"), "status", "--json")
    streams = {s["stream"]: s for s in json.loads(status.stdout)}
    assert set(streams) == {"inventory", "articles"}
    assert streams["inventory"]["consumer_lag"] == 0

    traced = run(str(BIN / "freshlake"), "trace", "17", "--stream", "inventory")
    assert traced.returncode == 0, traced.stdout + traced.stderr
    assert f"{inventory.topic}[" in traced.stdout
