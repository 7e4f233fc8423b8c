"""Two streams the demo never had, added by writing only a streams file: a Debezium table with an
integer primary key and a JSON document stream keyed by `slug`. The same definitions factory the
code location uses ingests, folds and embeds them; status and trace see them. No file of the
platform names them (the test checks the source trees do not change and do not mention them)."""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from freshlake.assets.partitions import current_partition
from freshlake.components.definitions import build_definitions
from freshlake.config import load_streams
from freshlake.embed.models import HashEmbedder
from freshlake.kafka.topics import ensure_topics
from freshlake.lance.search import search
from freshlake.resources.embedder import EmbedderResource
from freshlake.resources.kafka import KafkaResource
from freshlake.resources.storage import StorageResource
from freshlake.status import status_report
from freshlake.trace import trace

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CODE = ("platform", "assets", "sensors", "resources", "components")

STREAMS = """
streams:
  - name: inventory
    topic: {prefix}erp.public.inventory
    description: Stock levels captured from the ERP database by Debezium.
    format: debezium
    key_field: sku_id
    event_time_field: restocked_at
    fields:
      sku_id: int
      product: string
      warehouse: string
      quantity: int
      unit_price: float
      restocked_at: timestamp
    required: [sku_id, product]
    document:
      template: "{product} (SKU {sku_id}): {quantity} in stock at {warehouse}[, {unit_price} each]."
      attributes: [sku_id, warehouse]

  - name: articles
    topic: {prefix}cms.articles
    description: Help-centre articles from the CMS.
    key_field: slug
    order_by: revision
    event_time_field: published_at
    fields:
      slug: string
      title: string
      body: string
      revision: int
      published_at: timestamp
    required: [slug, title, body, revision]
    document:
      template: "{title}\\n\\n{body}"
      attributes: [slug]
"""


def tree_digest() -> str:
    digest = hashlib.sha256()
    for folder in CODE:
        for path in sorted((ROOT / folder).rglob("*.py")):
            digest.update(str(path.relative_to(ROOT)).encode() + path.read_bytes())
    return digest.hexdigest()


def change(op: str, row: dict, *, lsn: int, before: dict | None = None) -> bytes:
    """A Debezium PostgreSQL change event as the JSON converter writes it (schemas off)."""
    source = {"connector": "postgresql", "db": "erp", "schema": "public", "table": "inventory", "lsn": lsn}
    source["ts_ms"] = 1_790_000_000_000 + lsn
    envelope = {
        "op": op,
        "before": before,
        "after": None if op == "d" else row,
        "source": source,
        "ts_ms": source["ts_ms"],
    }
    if op == "d":
        envelope["before"] = row
    return json.dumps(envelope).encode()


def test_two_new_streams_from_config_alone(kafka_config, tmp_path: Path) -> None:
    from confluent_kafka import Producer

    before = tree_digest()
    prefix = f"o{uuid.uuid4().hex[:6]}."
    path = tmp_path / "streams.yaml"
    path.write_text(STREAMS.replace("{prefix}", prefix))
    config = load_streams(path)
    inventory, articles = config.streams
    ensure_topics(kafka_config, topics=config.topics)

    producer = Producer({**kafka_config, "enable.idempotence": True})
    sku = {"product": "Espresso cups", "warehouse": "Lyon", "unit_price": 4.5}
    events = [
        (17, "c", {**sku, "sku_id": 17, "quantity": 40, "restocked_at": "2026-11-30T08:00:00Z"}, 100),
        (
            18,
            "c",
            {
                **sku,
                "sku_id": 18,
                "product": "Milk jug",
                "quantity": 5,
                "restocked_at": "2026-11-30T08:00:00Z",
            },
            110,
        ),
        (17, "u", {**sku, "sku_id": 17, "quantity": 12, "restocked_at": "2026-11-30T09:00:00Z"}, 200),
        (
            18,
            "d",
            {
                **sku,
                "sku_id": 18,
                "product": "Milk jug",
                "quantity": 5,
                "restocked_at": "2026-11-30T08:00:00Z",
            },
            300,
        ),
    ]
    for sku_id, op, row, lsn in events:
        producer.produce(
            inventory.topic, key=json.dumps({"sku_id": sku_id}).encode(), value=change(op, row, lsn=lsn)
        )
    producer.produce(inventory.topic, key=json.dumps({"sku_id": 18}).encode(), value=None)  # tombstone
    for revision, body in (
        (1, "Returns are accepted within 14 days."),
        (2, "Returns are accepted within 30 days."),
    ):
        article = {
            "slug": "returns-policy",
            "title": "Returning an order",
            "body": body,
            "revision": revision,
            "published_at": f"2026-11-2{revision}T10:00:00Z",
        }
        producer.produce(articles.topic, key=b"returns-policy", value=json.dumps(article).encode())
    producer.flush()

    storage = StorageResource(delta_root=str(tmp_path / "delta"), lance_root=str(tmp_path / "lance"))
    resources = {
        "kafka": KafkaResource(bootstrap_servers=str(kafka_config["bootstrap.servers"])),
        "storage": storage,
        "embedder": EmbedderResource(kind="hash"),
    }
    defs = build_definitions(streams=config.streams, model_code="hash")
    assets = [a for a in defs.assets or () if isinstance(a, dg.AssetsDefinition | dg.AssetSpec)]
    for spec in config.streams:
        selection = dg.AssetSelection.groups(spec.name) - dg.AssetSelection.keys(f"kafka/{spec.topic}")
        result = dg.materialize(
            assets, resources=resources, selection=selection, partition_key=current_partition(spec)
        )
        assert result.success

    stock = pl.read_delta(storage.delta_uri(inventory, "current")).sort("key")
    assert stock.select("key", "is_deleted").rows() == [("17", False), ("18", True)]
    assert stock.row(0, named=True)["quantity"] == 12  # the update at the higher LSN
    text = pl.read_delta(storage.delta_uri(articles, "current")).row(0, named=True)
    assert (text["key"], text["revision"]) == ("returns-policy", 2)
    assert pl.read_delta(storage.delta_uri(inventory, "quarantine")).height == 0

    stores = [storage.live_store(s) for s in config.document_streams]
    hits = search(stores=stores, embedder=HashEmbedder(), query="espresso cups in stock", mode="fts", k=10)
    assert {(h.stream, h.key) for h in hits} >= {("inventory", "17")}
    assert all(h.key != "18" for h in hits)
    texts = {
        h.key: h.text
        for h in search(stores=stores, embedder=HashEmbedder(), query="returns", mode="fts", k=10)
    }
    assert "30 days" in texts["returns-policy"]

    roots = {"delta_root": storage.delta_root, "lance_root": storage.lance_root}
    report = trace(chunk_id_or_key="17", stream="inventory", specs=config.streams, **roots)
    assert report.found and report.current["key"] == "17" and not report.current["is_deleted"]
    assert report.chunks and all(c["key"] == "17" for c in report.chunks)
    assert [s.topic for s in report.sources] == [inventory.topic]
    statuses = status_report(kafka_config=kafka_config, specs=config.streams, **roots)
    assert {s.spec.name: s.lag.consumer_lag for s in statuses} == {"inventory": 0, "articles": 0}

    assert tree_digest() == before
    for folder in CODE:
        for source in (ROOT / folder).rglob("*.py"):
            body = source.read_text()
            assert "inventory" not in body and "returns-policy" not in body, source
