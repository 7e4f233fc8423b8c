"""Backfills against the real broker, Delta and LanceDB: processed days from raw, raw days from Kafka.

Runs are launched the way a single-run backfill launches them: one run over a partition range,
with Dagster's backfill and range tags. (`tests/e2e/test_backfill_e2e.py` goes through the UI's
GraphQL API and the daemon.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from freshlake.delta.tables import committed_offsets, open_table
from tests.integration.test_processed import World

pytestmark = pytest.mark.integration

TODAY = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
DAYS = [TODAY - timedelta(days=n) for n in (3, 2, 1)]
KEYS = [d.strftime("%Y-%m-%d") for d in DAYS]


@pytest.fixture
def world(kafka_config, tmp_path) -> World:
    return World(kafka_config, tmp_path)


def three_days_of_flights(world: World) -> None:
    """Ten flights a day over three past days, each one updated twice within its day."""
    for day_index, day in enumerate(DAYS):
        for n in range(10):
            flight = f"UA{day_index}{n:02d}-{KEYS[day_index]}"
            world.flight(flight, "scheduled", 1, at=day + timedelta(minutes=n))
            world.flight(flight, "boarding", 2, gate=f"B{n}", at=day + timedelta(minutes=30 + n))


def coordinates(world: World, stream: str = "flights") -> list[tuple[int, int]]:
    storage = world.resources["storage"]
    table = open_table(storage.delta_uri(world.specs[stream], "raw"))
    rows = table.to_pyarrow_table(columns=["kafka_partition", "kafka_offset"]).to_pylist()
    return sorted((r["kafka_partition"], r["kafka_offset"]) for r in rows)


def current_rows(world: World, stream: str = "flights") -> list[dict]:
    storage = world.resources["storage"]
    table = open_table(storage.delta_uri(world.specs[stream], "current"))
    rows = table.to_pyarrow_table().to_pylist()
    return sorted(rows, key=lambda r: r["key"])


def vector_rows(world: World, stream: str = "flights") -> list[dict]:
    return [{k: v for k, v in r.items() if k != "vector"} for r in world.rows(stream)]


def test_streaming_runs_mark_the_past_partitions_their_messages_fell_in(world: World) -> None:
    three_days_of_flights(world)
    world.run()
    raw = world.specs["flights"]
    marked = {
        m.partition
        for m in world.last_result.get_asset_materialization_events()
        if m.asset_key.path == [raw.name, "raw"]
    }
    assert set(KEYS) <= marked  # the run's own partition, and each day a message fell in
    storage = world.resources["storage"]
    days = open_table(storage.delta_uri(raw, "raw")).to_pyarrow_table(columns=["kafka_date"])
    assert set(days.column("kafka_date").to_pylist()) == set(KEYS)


def test_processed_backfill_with_nothing_changed_changes_nothing_and_embeds_nothing(world: World) -> None:
    three_days_of_flights(world)
    world.run()
    before = (current_rows(world), vector_rows(world), world.search("boarding gate B3", k=5))

    metadata = world.run(backfill=(KEYS[0], KEYS[-1]), layers=("current", "embeddings"))

    runs = world.last_result.dagster_run
    assert runs.tags["dagster/asset_partition_range_start"] == KEYS[0]  # one run, three partitions
    assert metadata["flights"]["backfill_keys"] == 30
    assert metadata["flights"]["chunks_embedded"] == 0
    assert metadata["flights"]["chunks_skipped_unchanged"] == 30
    after = (current_rows(world), vector_rows(world), world.search("boarding gate B3", k=5))
    assert after[0] == before[0]
    strip = [{k: v for k, v in r.items() if k != "embedded_at"} for r in before[1]]
    assert [{k: v for k, v in r.items() if k != "embedded_at"} for r in after[1]] == strip
    assert [h.chunk_id for h in after[2]] == [h.chunk_id for h in before[2]]


def test_backfill_of_last_week_leaves_todays_state_untouched(world: World) -> None:
    three_days_of_flights(world)
    world.run()
    flight = f"UA000-{KEYS[0]}"
    world.flight(flight, "cancelled", 3, reason="weather")  # today: newer than the backfilled days
    world.run()
    today = [r for r in current_rows(world) if r["key"] == flight]
    assert today[0]["status"] == "cancelled"

    # Re-derive days 0..2 from raw: their events are older than today's cancellation.
    world.run(backfill=(KEYS[0], KEYS[-1]), layers=("current", "embeddings"))

    (row,) = [r for r in current_rows(world) if r["key"] == flight]
    assert row["status"] == "cancelled" and row["version"] == today[0]["version"]
    texts = [r["text"] for r in world.rows("flights") if r["key"] == flight]
    assert texts and all("cancelled" in t for t in texts)


def test_processed_backfill_restores_a_lost_current_row(world: World) -> None:
    three_days_of_flights(world)
    world.run()
    storage, spec = world.resources["storage"], world.specs["flights"]
    lost = f"UA105-{KEYS[1]}"
    open_table(storage.delta_uri(spec, "current")).delete(f"key = '{lost}'")

    metadata = world.run(backfill=(KEYS[1], KEYS[1]), layers=("current", "embeddings"))

    (row,) = [r for r in current_rows(world) if r["key"] == lost]
    assert row["status"] == "boarding" and row["gate"] == "B5"
    assert metadata["flights"]["chunks_embedded"] == 0  # its chunks never left LanceDB


def test_raw_backfill_restores_exactly_the_deleted_day(world: World) -> None:
    three_days_of_flights(world)
    world.run()
    storage, spec = world.resources["storage"], world.specs["flights"]
    before = coordinates(world)
    partitions = sorted({p for p, _ in before})
    offsets = committed_offsets(storage.delta_uri(spec, "raw"), topic=spec.topic, partitions=partitions)
    table = open_table(storage.delta_uri(spec, "raw"))
    table.delete(f"kafka_date = '{KEYS[1]}'")
    assert len(coordinates(world)) == len(before) - 20

    world.run(backfill=(KEYS[1], KEYS[1]), layers=("raw", "quarantine"))

    assert coordinates(world) == before  # the same (partition, offset) set, each once
    again = committed_offsets(storage.delta_uri(spec, "raw"), topic=spec.topic, partitions=partitions)
    assert again == offsets  # txn versions untouched
    raw_meta = {
        k: v.value
        for m in world.last_result.get_asset_materialization_events()
        if m.asset_key.path == [spec.name, "raw"]
        for k, v in m.materialization.metadata.items()
    }
    assert raw_meta["rows_written"] == 20 and raw_meta["rows_replaced"] == 0

    # Replaying the same backfill replaces the day with itself.
    world.run(backfill=(KEYS[1], KEYS[1]), layers=("raw", "quarantine"))
    assert coordinates(world) == before

    # Downstream sees the re-ingested rows: the next fold reads them (and changes nothing).
    current_before = current_rows(world)
    world.run()
    folded = [
        m.materialization.metadata["raw_rows_folded"].value
        for m in world.last_result.get_asset_materialization_events()
        if m.asset_key.path == [spec.name, "current"]
    ]
    assert folded == [40]  # the rows each of the two backfills inserted
    assert current_rows(world) == current_before


def test_raw_backfill_keeps_streaming_offsets_beyond_the_window(world: World) -> None:
    three_days_of_flights(world)
    world.run()
    world.flight(f"UA999-{KEYS[2]}", "scheduled", 1)  # today's message, not ingested yet
    before = coordinates(world)
    world.run(backfill=(KEYS[2], KEYS[2]), layers=("raw", "quarantine"))
    assert coordinates(world) == before  # nothing past the committed offsets was read
    world.run()
    assert len(coordinates(world)) == len(before) + 1


def test_vacuum_keeps_the_current_versions_embeddings_have_yet_to_read(world: World) -> None:
    from freshlake.embed.chunking import ChunkerSettings
    from freshlake.lance.sync import oldest_unread_current_versions

    three_days_of_flights(world)
    world.run()
    storage = world.resources["storage"]
    registry = storage.registry()
    live = {name: registry.live(name).table_name for name in ("flights", "bookings", "policies")}
    flights_current = open_table(storage.delta_uri(world.specs["flights"], "current")).version()

    unread = oldest_unread_current_versions(
        list(world.specs.values()), live=live, progress=storage.progress(), chunker=ChunkerSettings()
    )
    assert unread["flights"] == flights_current + 1  # read up to the latest by both followers

    world.flight(f"UA000-{KEYS[0]}", "cancelled", 3)
    world.run(layers=("raw", "quarantine", "current"))  # embeddings not run: it is behind now
    unread = oldest_unread_current_versions(
        list(world.specs.values()), live=live, progress=storage.progress(), chunker=ChunkerSettings()
    )
    assert unread["flights"] == flights_current + 1
    newer = open_table(storage.delta_uri(world.specs["flights"], "current")).version()
    assert newer > flights_current


def test_raw_backfill_beside_streaming_ingestion_loses_and_duplicates_nothing(world: World) -> None:
    import threading

    from freshlake.ingest.backfill import reingest_window
    from freshlake.ingest.raw import ingest_stream
    from freshlake.partitions import window

    three_days_of_flights(world)
    world.run()
    storage, spec = world.resources["storage"], world.specs["flights"]
    kafka = world.resources["kafka"].client_config()
    tables = storage.raw_tables(spec)
    errors: list[BaseException] = []
    done = threading.Event()

    def backfill_repeatedly() -> None:
        try:
            while not done.is_set():
                reingest_window(
                    spec=spec, kafka_config=kafka, tables=tables, window=window([KEYS[1], KEYS[2]])
                )
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=backfill_repeatedly)
    thread.start()
    try:
        for n in range(12):  # today's messages, ingested in small streaming passes meanwhile
            for i in range(5):
                world.flight(f"UA8{n:02d}{i}-today", "scheduled", 1)
            ingest_stream(spec=spec, kafka_config=kafka, tables=tables)
    finally:
        done.set()
        thread.join(timeout=120)
    assert not errors, errors
    got = coordinates(world)
    assert len(got) == len(set(got)) == 60 + 60  # three past days + today, each offset once
    for p in {p for p, _ in got}:  # and no gap: every partition holds 0..last
        offsets = [o for q, o in got if q == p]
        assert offsets == list(range(len(offsets)))


def test_hourly_raw_backfill_replaces_exactly_its_hour(world: World) -> None:
    import dataclasses

    from freshlake.ingest.backfill import reingest_window
    from freshlake.partitions import window
    from freshlake.streams import Partitioning

    three_days_of_flights(world)  # each day: minutes 0-9 and 30-39 past noon, all in one hour
    day = DAYS[1]
    for n in range(5):  # and five more in the next hour of that day
        world.flight(f"UA7{n:02d}-late", "scheduled", 1, at=day + timedelta(hours=1, minutes=n))
    world.run()
    storage = world.resources["storage"]
    spec = dataclasses.replace(world.specs["flights"], partitioning=Partitioning(cadence="hourly"))
    before = coordinates(world)
    table = open_table(storage.delta_uri(spec, "raw"))
    table.delete(f"kafka_date = '{KEYS[1]}' AND key LIKE 'UA7%'")  # lose the 13:00 hour only
    assert len(coordinates(world)) == len(before) - 5

    hour = (day + timedelta(hours=1)).strftime("%Y-%m-%d-%H:%M")
    result = reingest_window(
        spec=spec,
        kafka_config=world.resources["kafka"].client_config(),
        tables=storage.raw_tables(spec),
        window=window([hour], cadence="hourly"),
    )

    assert result.rows_written == 5
    assert coordinates(world) == before
