"""Issue 11's acceptance under `freshlake dev`: a streams file of non-demo streams, no producer;
events sent by hand are ingested, folded and embedded by the sensors' runs alone, and searchable
through the public retrieval API with the running embedder."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from freshlake.config import load_streams
from freshlake.embed.factory import embedder_from_env
from freshlake.retrieval import Searcher
from tests.e2e.devproc import freshlake_dev
from tests.integration.test_own_streams import STREAMS, change

pytestmark = pytest.mark.e2e


def test_the_sensors_ingest_fold_and_embed_streams_of_a_users_file(tmp_path: Path) -> None:
    path = tmp_path / "streams.yaml"
    path.write_text(STREAMS.replace("{prefix}", ""))
    config = load_streams(path)
    inventory, articles = config.streams
    with freshlake_dev(tmp_path, args=["--no-producer"], env={"FRESHLAKE_STREAMS": str(path)}) as dev:
        producer = Producer({"bootstrap.servers": dev.bootstrap})
        row = {"sku_id": 17, "product": "Espresso cups", "warehouse": "Lyon", "unit_price": 4.5}
        value = change("c", {**row, "quantity": 9, "restocked_at": "2026-11-30T09:00:00Z"}, lsn=100)
        producer.produce(inventory.topic, key=b'{"sku_id": 17}', value=value)
        article = {"slug": "returns-policy", "title": "Returning an order", "revision": 1}
        article |= {"body": "Returns are accepted within 30 days.", "published_at": "2026-11-21T10:00:00Z"}
        producer.produce(articles.topic, key=b"returns-policy", value=json.dumps(article).encode())
        producer.flush()

        embedder = embedder_from_env(env={"FRESHLAKE_EMBEDDER_URL": dev.embedder_url})
        searcher = Searcher.open(
            streams=config.streams,
            delta_root=str(dev.home / "delta"),
            lance_root=str(dev.home / "lance"),
            embedder=embedder,
        )
        found: dict[str, str] = {}
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(found) < 2:
            time.sleep(2)
            for query in ("espresso cups in stock", "returning an order"):
                try:
                    result = searcher.search(query, k=3, mode="fts")
                except Exception:  # the tables appear with the first run
                    continue
                found |= {d.stream: d.text for d in result.documents}
        assert "9 in stock" in found.get("inventory", ""), dev.log_tail()
        assert "30 days" in found.get("articles", ""), dev.log_tail()
