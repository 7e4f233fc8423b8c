"""The real model on the demo world: the traveller's question finds the policy and the flight."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from freshlake.resources.embedder import EmbedderResource
from tests.demo_streams import demo_stream
from tests.integration.test_processed import World

pytestmark = [pytest.mark.slow, pytest.mark.integration]

NEW_YORK = {"JFK", "LGA", "EWR"}


def test_refund_question_finds_policy_and_cancelled_flight(kafka_config, tmp_path) -> None:
    from examples.flight_assistant.producer import produce_demo

    world = World(kafka_config, tmp_path)
    world.resources["embedder"] = EmbedderResource(kind="model")
    produce_demo(
        config=kafka_config,
        count=1500,
        streams=("flights", "policies", "bookings"),
        topic_prefix=world.prefix,
        start=datetime(2026, 11, 21, 6, tzinfo=UTC),
        partitions=3,
        create_topics=False,
    )
    world.specs = {
        name: dataclasses.replace(demo_stream(name), topic=world.prefix + name)
        for name in ("flights", "bookings", "policies")
    }
    stats = world.run()
    assert stats["policies"]["chunks_embedded"] > 8

    from freshlake.embed.models import SentenceTransformerEmbedder
    from freshlake.lance.search import search

    stores = [world.resources["storage"].live_store(s) for s in world.specs.values()]
    hits = search(
        stores=stores,
        embedder=SentenceTransformerEmbedder(),
        query="my flight to New York was cancelled, can I get a refund",
        mode="hybrid",
        k=5,
    )
    assert any(h.stream == "policies" and "refund" in h.text.lower() for h in hits), hits
    cancelled = [
        h
        for h in hits
        if h.stream == "flights"
        and h.attributes.get("status") == "cancelled"
        and h.attributes.get("destination") in NEW_YORK
    ]
    assert cancelled, [(h.stream, h.key, h.attributes) for h in hits]

    # The same question through the public API as an application calls it: the HTTP service
    # (a warm `Searcher` over the live tables, the query embedded in their space), documents.
    from fastapi.testclient import TestClient

    from freshlake.serve.app import create_app

    storage = world.resources["storage"]
    app = create_app(
        streams=list(world.specs.values()),
        delta_root=storage.delta_root,
        lance_root=storage.lance_root,
        embedder=SentenceTransformerEmbedder(),
        token="t",
    )
    with TestClient(app) as client:
        response = client.post(
            "/v1/search",
            json={"query": "my flight to New York was cancelled, can I get a refund", "k": 5},
            headers={"Authorization": "Bearer t"},
        )
    assert response.status_code == 200, response.text
    docs = response.json()["documents"]
    assert len({(d["stream"], d["key"]) for d in docs}) == len(docs) == 5  # documents, not chunks
    assert any(d["stream"] == "policies" and "refund" in d["text"].lower() for d in docs), docs
    assert any(
        d["stream"] == "flights"
        and d["attributes"].get("status") == "cancelled"
        and d["attributes"].get("destination") in NEW_YORK
        for d in docs
    ), [(d["stream"], d["key"], d["attributes"]) for d in docs]
