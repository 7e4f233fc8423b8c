"""A precision switch of the real model (bf16 -> fp32), rolled out by a backfill while searching."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from freshlake.embed.models import SentenceTransformerEmbedder
from freshlake.resources.embedder import EmbedderResource
from tests.integration.test_model_rollout import DAY, Searcher
from tests.integration.test_processed import World

pytestmark = pytest.mark.slow


def test_precision_switch_reembeds_all_chunks_without_a_mixed_search(kafka_config, tmp_path) -> None:
    world = World(kafka_config, tmp_path)
    world.resources["embedder"] = EmbedderResource(precision="bfloat16")
    for n in range(30):
        world.flight(
            f"UA{n:02d}-x", "delayed", 1, gate=f"C{n}", delay_minutes=n, at=DAY + timedelta(minutes=n)
        )
    world.run()
    storage, spec = world.resources["storage"], world.specs["flights"]
    bf16, fp32 = (
        SentenceTransformerEmbedder(precision="bfloat16"),
        SentenceTransformerEmbedder(precision="float32"),
    )
    assert storage.live_store(spec).model() == (bf16.model_name, bf16.model_version)

    world.resources["embedder"] = EmbedderResource(precision="float32")
    with Searcher(world, embedders=[bf16, fp32], interval=0.5) as searcher:
        time.sleep(2.0)
        key = DAY.strftime("%Y-%m-%d")
        metadata = world.run(backfill=(key, key), layers=("current", "embeddings"))
        time.sleep(2.0)

    assert not searcher.errors, searcher.errors[:3]
    assert searcher.seen and all(len(v) == 1 for v in searcher.seen)
    order = [next(iter(v)) for v in searcher.seen]
    assert order[0] == bf16.model_version and order[-1] == fp32.model_version
    assert set(order[order.index(fp32.model_version) :]) == {fp32.model_version}
    assert metadata["flights"]["chunks_embedded"] == 30 and metadata["flights"]["table_swapped_in"]
    assert storage.live_store(spec).model() == (fp32.model_name, fp32.model_version)
