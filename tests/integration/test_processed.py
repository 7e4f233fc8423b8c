"""The processed store end to end through the Dagster assets: real broker, Delta and LanceDB.

The embedder is the deterministic hash embedder (the real model runs in tests/slow); what is
checked here is what the AI application would read: no superseded status, no deleted booking,
no withdrawn policy text, and no re-embedding of what did not change.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import datetime

import dagster as dg
import pyarrow as pa
import pyarrow.compute
import pytest

from freshlake.assets.keys import embeddings_key
from freshlake.assets.partitions import current_partition
from freshlake.assets.processed import build_current_asset, build_embeddings_asset
from freshlake.assets.raw import build_raw_assets
from freshlake.assets.topics import topic_asset_spec
from freshlake.embed.chunking import ChunkerSettings
from freshlake.kafka.topics import ensure_topics
from freshlake.resources.embedder import EmbedderResource
from freshlake.resources.kafka import KafkaResource
from freshlake.resources.storage import StorageResource
from tests.demo_streams import demo_stream

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
            name: dataclasses.replace(demo_stream(name), topic=self.prefix + name)
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

    def send(
        self, stream: str, key: bytes, value: dict | None, *, flush: bool = True, at: datetime | None = None
    ) -> tuple[int, int] | None:
        """Produce one message (Kafka time `at`, default now); with `flush`, its (partition,
        offset) from the delivery report."""
        self.offsets += 1
        delivered: list[tuple[int, int]] = []
        self.producer.produce(
            self.specs[stream].topic,
            key=key,
            value=None if value is None else json.dumps(value).encode(),
            on_delivery=lambda err, msg: delivered.append((msg.partition(), msg.offset())),
            **({} if at is None else {"timestamp": int(at.timestamp() * 1000)}),
        )
        if not flush:
            return None
        self.producer.flush()
        return delivered[0]

    def flight(
        self, flight_id: str, status: str, version: int, *, at: datetime | None = None, **extra
    ) -> tuple[int, int] | None:
        return self.send(
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
            at=at,
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

    def policy(self, policy_id: str, body: str, revision: int, *, flush: bool = True) -> None:
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
            flush=flush,
        )

    def run(
        self, *, backfill: tuple[str, str] | None = None, layers: tuple[str, ...] = ()
    ) -> dict[str, dict]:
        """Materialize every stream's chain once; embeddings metadata per stream.

        `backfill=(first, last)` runs those partitions the way a single-run backfill does (one
        run, partition range tags, the backfill tag); `layers` limits it to some layers."""
        runnable = [a for a in self.assets if isinstance(a, dg.AssetsDefinition)]
        keys = [key for a in runnable for key in a.keys if not layers or key.path[-1] in layers]
        if backfill is None:
            options = {
                "partition_key": current_partition(demo_stream("flights"))
            }  # asked at each run: the day may roll over mid-suite
        else:
            options = {
                "tags": {
                    "dagster/backfill": "test",
                    "dagster/asset_partition_range_start": backfill[0],
                    "dagster/asset_partition_range_end": backfill[1],
                }
            }
        result = dg.materialize(self.assets, resources=self.resources, selection=keys, **options)
        assert result.success
        self.last_result = result
        out = {}
        for name, spec in self.specs.items():
            mats = [
                m for m in result.get_asset_materialization_events() if m.asset_key == embeddings_key(spec)
            ]
            if mats:
                out[name] = {k: v.value for k, v in mats[-1].materialization.metadata.items()}
        return out

    def rows(self, stream: str) -> list[dict]:
        store = self.resources["storage"].live_store(self.specs[stream])
        return sorted(store._open().to_arrow().to_pylist(), key=lambda r: r["chunk_id"])

    def search(self, query: str, **kwargs):
        from freshlake.embed.models import HashEmbedder
        from freshlake.lance.search import search

        stores = [self.resources["storage"].live_store(s) for s in self.specs.values()]
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
    bodies = {f"p{i:04d}": f"Section {i}. " + SENTENCES[i % len(SENTENCES)] for i in range(1000)}
    for key, body in bodies.items():
        world.policy(key, body, 1, flush=False)
    world.producer.flush()
    first = world.run()
    assert first["policies"]["chunks_embedded"] == 1000

    again = world.run()  # no new data
    assert again["policies"]["chunks_embedded"] == 0

    world.policy("p0007", bodies["p0007"], 2)  # re-delivered, same text
    redelivered = world.run()
    assert redelivered["policies"]["chunks_embedded"] == 0
    assert redelivered["policies"]["chunks_skipped_unchanged"] == 1

    # Reprocessing everything (progress lost, or a rebuild) still embeds nothing unchanged.
    world.resources["storage"].progress().clear()
    reprocessed = world.run()
    assert reprocessed["policies"]["chunks_embedded"] == 0
    assert reprocessed["policies"]["chunks_skipped_unchanged"] == 1000

    world.policy("p0042", "A completely new text about pets travelling in the cabin.", 3)
    changed = world.run()
    assert changed["policies"]["chunks_embedded"] == 1 and changed["policies"]["keys_upserted"] == 1
    assert len(world.rows("policies")) == 1000


def test_replaying_an_older_range_changes_no_vector_row(world: World) -> None:
    from freshlake.delta.current import merge_into_current, raw_changes

    world.flight("UA9-2026-11-21", "scheduled", 1)
    world.flight("UA9-2026-11-21", "delayed", 2, delay_minutes=40, reason="crew")
    world.run()
    world.flight("UA9-2026-11-21", "cancelled", 3, reason="weather")
    world.run()
    before = [{k: v for k, v in r.items() if k != "embedded_at"} for r in world.rows("flights")]

    storage, spec = world.resources["storage"], world.specs["flights"]
    older, _ = raw_changes(storage.delta_uri(spec, "raw"), after=None)
    older = older.filter(pa.compute.less(older.column("kafka_offset"), 2))  # the first two events
    merge_into_current(
        spec=spec, current_uri=storage.delta_uri(spec, "current"), raw_rows=older, raw_version=None
    )
    replayed = world.run()

    assert replayed["flights"]["chunks_embedded"] == 0
    after = [{k: v for k, v in r.items() if k != "embedded_at"} for r in world.rows("flights")]
    assert after == before and "cancelled" in after[0]["text"]


RUN_THROUGH_SERVICE = """
import json, sys
from tests.integration.test_processed import World
from freshlake.resources.embedder import EmbedderResource

bootstrap, url, tmp = sys.argv[1:4]
import pathlib
world = World({"bootstrap.servers": bootstrap}, pathlib.Path(tmp))
world.resources["embedder"] = EmbedderResource(url=url)
world.flight("UA5-2026-11-21", "delayed", 1, delay_minutes=30, reason="crew")
stats = world.run()
print(json.dumps({"embedded": stats["flights"]["chunks_embedded"],
                  "heavy": sorted(m for m in ("torch", "sentence_transformers", "transformers")
                                  if m in sys.modules)}))
"""


def test_a_run_embedding_through_the_service_never_imports_torch(kafka_config, tmp_path) -> None:
    import subprocess
    import sys
    import threading
    from pathlib import Path

    from freshlake.embed.models import HashEmbedder
    from freshlake.embed.service import make_server

    server = make_server(port=0, embedder=HashEmbedder())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                RUN_THROUGH_SERVICE,
                str(kafka_config["bootstrap.servers"]),
                url,
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=Path(__file__).resolve().parents[2],
        )
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"embedded": 1, "heavy": []}
