"""Small live LanceDB tables behind the rollout alias, as embeddings runs leave them (no broker)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from freshlake.chunks import Chunk, Provenance
from freshlake.lance.tables import TableRegistry, space_store
from freshlake.ordering import version_of

FLIGHTS = [
    ("UA1", "Flight UA1 from Chicago to New York is cancelled due to a winter storm.", "cancelled"),
    ("DL2", "Flight DL2 from Atlanta to Boston is delayed 45 minutes because of crew.", "delayed"),
    ("AA3", "Flight AA3 from Dallas to Miami is on time, gate B12.", "on time"),
    ("UA4", "Flight UA4 from Denver to Seattle is boarding at gate C3.", "boarding"),
]
POLICIES = [
    ("refunds", "A cancelled flight entitles you to a full refund to the original payment method."),
    ("pets", "Small pets may travel in the cabin in an approved carrier under the seat."),
    ("baggage", "Economy fares include one carry-on bag; checked bags cost 35 dollars."),
]


def chunk(stream: str, key: str, text: str, offset: int, age: timedelta, **attributes) -> Chunk:
    now = datetime.now(UTC)
    return Chunk(
        stream=stream,
        key=key,
        chunk_index=0,
        text=text,
        attributes=attributes,
        provenance=Provenance(
            source_topic=stream,
            source_partition=0,
            source_offset=offset,
            source_version=version_of(f"{offset:016x}", partition=0, offset=offset),
            raw_delta_version=1,
            current_delta_version=1,
            event_time=now - age,
            ingested_at=now,
        ),
    )


def write(uri: str, spec, chunks: list[Chunk], embedder) -> None:
    """Fill the stream's table of `embedder`'s space and make it live, as an embeddings run does."""
    store = space_store(
        uri=uri,
        spec=spec,
        model_name=embedder.model_name,
        model_version=embedder.model_version,
        dimension=embedder.dimension,
    )
    store.apply(
        upserts=chunks,
        vectors=embedder.embed([c.text for c in chunks]),
        deletes_keys={},
        keep_counts={},
        embedder_name=embedder.model_name,
        embedder_version=embedder.model_version,
    )
    TableRegistry(uri=uri).swap(
        spec.name,
        table_name=store.table_name,
        model_name=embedder.model_name,
        model_version=embedder.model_version,
        dimension=embedder.dimension,
    )


def demo_tables(uri: str, embedder) -> None:
    """Flights ~30 s old and policies 2 h old, as live tables."""
    from tests.demo_streams import demo_stream

    write(
        uri,
        demo_stream("flights"),
        [
            chunk("flights", key, text, i, timedelta(seconds=30 + i), flight_id=key, status=status)
            for i, (key, text, status) in enumerate(FLIGHTS)
        ],
        embedder,
    )
    write(
        uri,
        demo_stream("policies"),
        [chunk("policies", key, text, i, timedelta(hours=2)) for i, (key, text) in enumerate(POLICIES)],
        embedder,
    )
