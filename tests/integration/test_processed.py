"""The processed store end to end through the Dagster assets: real broker, Delta and LanceDB.

The embedder is the deterministic hash embedder (the real model runs in tests/slow); what is
checked here is what the AI application would read: no superseded status, no deleted booking,
no withdrawn policy text, and no re-embedding of what did not change.
"""

from __future__ import annotations

import dataclasses
import json
import uuid

import dagster as dg
import pytest

from assets.processed import build_current_asset, build_embeddings_asset, embeddings_key
from assets.raw import build_raw_assets
from assets.topics import topic_asset_spec
from freshlake.embed.chunking import ChunkerSettings
from freshlake.kafka.topics import ensure_topics
from freshlake.streams import stream_by_name
from resources.embedder import EmbedderResource
from resources.kafka import KafkaResource
from resources.storage import StorageResource

pytestmark = pytest.mark.integration

SENTENCES = [
    "Passengers whose flight is cancelled may choose a full refund to the original form of payment.",
    "Refunds are processed within seven business days and include taxes and carrier fees.",
    "If you prefer to travel, we rebook you on the next available flight at no extra cost.",
    "Vouchers for meals are offered when the wait for a replacement flight exceeds three hours.",
    "Hotel accommodation is arranged for overnight disruptions caused by the airline.",
    "Compensation under passenger rights rules depends on the distance and the delay on arrival.",
]


def policy_body(chunks: int, seed: int) -> str:
    """A policy text that the default chunker cuts into exactly `chunks` chunks."""
    settings = ChunkerSettings()
    sentences: list[str] = []
    i = seed
    while len(settings.chunk(" ".join(sentences))) < chunks:
        sentences.append(f"Section {i}. " + SENTENCES[i % len(SENTENCES)])
        i += 1
    while len(settings.chunk(" ".join(sentences))) > chunks:
        sentences.pop()
    assert len(settings.chunk(" ".join(sentences))) == chunks
    return " ".join(sentences)


class World:
    """Hand-made events on prefixed topics, and the Dagster chain that processes them."""

    def __init__(self, kafka_config, tmp_path) -> None:
        from confluent_kafka import Producer

        self.prefix = f"p{uuid.uuid4().hex[:8]}-"
        self.specs = {
            name: dataclasses.replace(stream_by_name(name), topic=self.prefix + name)
            for name in ("flights", "bookings", "policies")
        }
        ensure_topics(kafka_config, topics={s.topic: 3 for s in self.specs.values()})
        self.producer = Producer({**kafka_config, "enable.idempotence": True})
        self.resources = {
            "kafka": KafkaResource(bootstrap_servers=str(kafka_config["bootstrap.servers"])),
            "storage": StorageResource(
                delta_root=str(tmp_path / "delta"), lance_root=str(tmp_path / "lance")
            ),
            "embedder": EmbedderResource(kind="hash"),
        }
        self.assets = []
        for spec in self.specs.values():
            self.assets += [
                topic_asset_spec(spec),
                build_raw_assets(spec),
                build_current_asset(spec),
                build_embeddings_asset(spec),
            ]
        self.offsets = 0

    def send(self, stream: str, key: bytes, value: dict | None) -> None:
        self.offsets += 1
        self.producer.produce(
            self.specs[stream].topic,
            key=key,
            value=None if value is None else json.dumps(value).encode(),
        )
        self.producer.flush()

    def flight(self, flight_id: str, status: str, version: int, **extra) -> None:
        self.send(
            "flights",
            flight_id.encode(),
            {
                "flight_id": flight_id,
                "flight_number": flight_id.split("-")[0],
                "airline": "United",
                "origin": "SFO",
                "destination": "JFK",
                "status": status,
                "version": version,
                "event_time": f"2026-11-21T10:{version:02d}:00+00:00",
                **extra,
            },
        )

    def booking(self, booking_id: str, op: str, **row) -> None:
        image = {
            "booking_id": booking_id,
            "passenger_name": "Ada Lovelace",
            "flight_id": "UA1-2026-11-21",
            "seat": "12A",
            "status": "confirmed",
            **row,
        }
        envelope = {
            "op": op,
            "before": image if op in ("u", "d") else None,
            "after": None if op == "d" else image,
            "source": {
                "table": "bookings",
                "ts_ms": 1_763_700_000_000 + self.offsets,
                "lsn": self.offsets,
            },
            "ts_ms": 1_763_700_000_000 + self.offsets,
        }
        key = json.dumps({"booking_id": booking_id}).encode()
        self.send("bookings", key, envelope)
        if op == "d":
            self.send("bookings", key, None)

    def policy(self, policy_id: str, body: str, revision: int) -> None:
        self.send(
            "policies",
            policy_id.encode(),
            {
                "policy_id": policy_id,
                "title": f"Policy {policy_id}",
                "category": "refunds",
                "body": body,
                "revision": revision,
                "event_time": f"2026-11-21T09:{revision:02d}:00+00:00",
            },
        )

    def run(self) -> dict[str, dict]:
        """Materialize every stream's chain once; embeddings metadata per stream."""
        runnable = [a for a in self.assets if isinstance(a, dg.AssetsDefinition)]
        keys = [key for a in runnable for key in a.keys]
        result = dg.materialize(self.assets, resources=self.resources, selection=keys)
        assert result.success
        out = {}
        for name, spec in self.specs.items():
            mats = [
                m for m in result.get_asset_materialization_events() if m.asset_key == embeddings_key(spec)
            ]
            out[name] = {k: v.value for k, v in mats[-1].materialization.metadata.items()}
        return out

    def rows(self, stream: str) -> list[dict]:
        store = self.resources["storage"].chunk_store(self.specs[stream], dimension=384)
        return sorted(store._open().to_arrow().to_pylist(), key=lambda r: r["chunk_id"])

    def search(self, query: str, **kwargs):
        from freshlake.embed.models import HashEmbedder
        from freshlake.lance.search import search

        stores = [self.resources["storage"].chunk_store(s, dimension=384) for s in self.specs.values()]
        return search(stores=stores, embedder=HashEmbedder(), query=query, **kwargs)


@pytest.fixture
def world(kafka_config, tmp_path) -> World:
    return World(kafka_config, tmp_path)


def test_superseded_deleted_and_withdrawn_text_is_gone(world: World) -> None:
    world.flight("UA1-2026-11-21", "scheduled", 1, gate="B7")
    world.booking("BK1", "c")
    world.booking("BK2", "c", seat="3C")
    world.policy("refunds", policy_body(5, seed=0), 1)
    first = world.run()
    assert first["policies"]["chunks_embedded"] == 5
    assert len(world.rows("policies")) == 5

    world.flight("UA1-2026-11-21", "cancelled", 2, reason="weather")
    world.booking("BK2", "d", seat="3C")
    world.policy("refunds", policy_body(3, seed=100), 2)
    second = world.run()

    flights = world.rows("flights")
    assert len(flights) == 1 and "cancelled" in flights[0]["text"] and "scheduled" not in flights[0]["text"]
    assert flights[0]["status"] == "cancelled"
    hits = world.search("flight UA1 SFO JFK", mode="hybrid", k=10)
    assert all("is scheduled" not in h.text for h in hits)

    bookings = world.rows("bookings")
    assert {r["key"] for r in bookings} == {"BK1"}  # BK2 deleted: nothing of it remains
    assert "is cancelled" in bookings[0]["text"]  # enrichment: BK1 sees its flight's new status
    assert all(h.key != "BK2" for h in world.search("Ada Lovelace seat 3C", mode="hybrid", k=20))

    policies = world.rows("policies")
    assert [r["chunk_index"] for r in policies] == [0, 1, 2]
    assert second["policies"]["keys_upserted"] == 1 and second["bookings"]["keys_deleted"] == 1

    # Provenance on every vector row (invariant 6).
    row = flights[0]
    for column in (
        "source_topic",
        "source_partition",
        "source_offset",
        "raw_delta_version",
        "event_time",
        "ingested_at",
        "embedded_at",
        "model_name",
        "model_version",
        "chunk_index",
    ):
        assert row[column] is not None, column
    assert row["source_topic"] == world.specs["flights"].topic


def test_nothing_changed_embeds_nothing_and_one_change_embeds_one_document(world: World) -> None:
    for i in range(60):
        world.policy(f"p{i:03d}", policy_body(2, seed=i), 1)
    first = world.run()
    assert first["policies"]["chunks_embedded"] == 120

    again = world.run()  # no new data
    assert again["policies"]["chunks_embedded"] == 0

    world.policy("p007", policy_body(2, seed=7), 2)  # re-delivered, same text
    redelivered = world.run()
    assert redelivered["policies"]["chunks_embedded"] == 0
    assert redelivered["policies"]["chunks_skipped_unchanged"] == 2

    world.policy("p042", policy_body(2, seed=500), 3)  # one document changes
    changed = world.run()
    assert changed["policies"]["chunks_embedded"] <= 2 and changed["policies"]["keys_upserted"] == 1
    assert len(world.rows("policies")) == 120
