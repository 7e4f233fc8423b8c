"""Model rollout: a new model or precision is stale in Dagster, a backfill re-embeds everything
into a new table and swaps it in, and a search issued throughout never fails or mixes spaces."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import pytest

from freshlake.assets.keys import embeddings_key
from freshlake.assets.partitions import current_partition
from freshlake.assets.processed import build_embeddings_asset
from freshlake.embed.models import MODEL_NAME, HashEmbedder, default_precision
from freshlake.lance.search import search
from freshlake.resources.embedder import EmbedderResource
from tests.integration.test_processed import World

pytestmark = pytest.mark.integration

DAY = datetime.now(UTC).replace(hour=8, minute=0, second=0, microsecond=0) - timedelta(days=1)


class RotatedHashEmbedder(HashEmbedder):
    """Another vector space: the hash vectors rolled by one slot (cosine to the original ~0)."""

    model_version = "2-rotated"

    def embed(self, texts):
        return np.roll(super().embed(texts), 1, axis=1)


class RotatedEmbedderResource(EmbedderResource):
    def get(self):
        return RotatedHashEmbedder()


@pytest.fixture
def world(kafka_config, tmp_path) -> World:
    return World(kafka_config, tmp_path)


class Searcher:
    """A search every `interval` seconds against the live tables, recording what it saw."""

    def __init__(self, world: World, *, embedders: list, interval: float = 0.25) -> None:
        self.world, self.embedders, self.interval = world, embedders, interval
        self.seen: list[set[str]] = []  # model versions among each search's hits
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self) -> None:
        storage = self.world.resources["storage"]
        while not self.stop.is_set():
            try:
                store = storage.live_store(self.world.specs["flights"])
                hits = search(
                    stores=[store],
                    embedder=self.embedders,
                    query="flight UA boarding gate",
                    mode="hybrid",
                    k=5,
                )
                self.seen.append({h.provenance["model_version"] for h in hits})
            except BaseException as exc:
                self.errors.append(exc)
            time.sleep(self.interval)

    def __enter__(self) -> Searcher:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


def test_a_model_switch_shows_the_embeddings_stale(world: World) -> None:
    from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
    from dagster._core.loader import LoadingContextForTest

    world.flight("UA1-x", "scheduled", 1)
    instance = dg.DagsterInstance.ephemeral()
    today = current_partition(world.specs["flights"])
    result = dg.materialize(world.assets, resources=world.resources, partition_key=today, instance=instance)
    assert result.success
    spec = world.specs["flights"]

    def status(model_code: str | None) -> StaleStatus:
        assets = [
            build_embeddings_asset(spec, model_code=model_code)
            if isinstance(a, dg.AssetsDefinition) and embeddings_key(spec) in a.keys and model_code
            else a
            for a in world.assets
        ]
        graph = dg.Definitions(assets=assets, resources=world.resources).get_repository_def().asset_graph
        resolver = CachingStaleStatusResolver(instance, graph, LoadingContextForTest(instance))
        return resolver.get_status(embeddings_key(spec), today)

    other = "float32" if default_precision() == "bfloat16" else "bfloat16"
    assert status(None) == StaleStatus.FRESH
    assert status(f"{MODEL_NAME}@{other}") == StaleStatus.STALE


def test_rollout_reembeds_everything_and_searches_never_mix_spaces(world: World) -> None:
    for n in range(40):
        world.flight(f"UA{n:02d}-x", "boarding", 1, gate=f"B{n}", at=DAY + timedelta(minutes=n))
    world.run()
    storage, spec = world.resources["storage"], world.specs["flights"]
    old = storage.live_store(spec)
    assert old.model() == (HashEmbedder.model_name, "1") and old.count() == 40

    world.resources["embedder"] = RotatedEmbedderResource()
    with Searcher(world, embedders=[HashEmbedder(), RotatedHashEmbedder()]) as searcher:
        time.sleep(1.0)
        key = DAY.strftime("%Y-%m-%d")
        metadata = world.run(backfill=(key, key), layers=("current", "embeddings"))
        time.sleep(1.0)

    assert not searcher.errors, searcher.errors[:3]
    assert searcher.seen and all(len(versions) == 1 for versions in searcher.seen)  # never a mix
    order = [next(iter(v)) for v in searcher.seen]
    assert order[0] == "1" and order[-1] == "2-rotated"
    switch = order.index("2-rotated")
    assert set(order[switch:]) == {"2-rotated"}  # one switch, never back
    flights = metadata["flights"]
    assert flights["chunks_embedded"] == 40 and flights["table_swapped_in"] is True
    new = storage.live_store(spec)
    assert new.table_name != old.table_name and new.count() == 40
    assert new.model() == (RotatedHashEmbedder.model_name, "2-rotated")

    # Streaming goes on into the new table; the next pass finds nothing left to embed.
    world.flight("UA00-x", "departed", 2)
    after = world.run()
    assert after["flights"]["chunks_embedded"] == 1 and after["flights"]["lance_table"] == new.table_name
    assert storage.registry().live("flights").table_name == new.table_name
