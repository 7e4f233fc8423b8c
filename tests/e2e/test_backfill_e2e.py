"""A backfill launched the way the UI launches it: GraphQL `launchPartitionBackfill` on the
webserver, submitted by the daemon, run by the default run launcher.

`freshlake dev` runs the `flights` stream (tests/e2e/short_windows) with the warm embedder and the
real model. Flights of three past days are produced with their Kafka times; the offsets sensor
ingests and embeds them. A backfill of those three days of `flights/current` and
`flights/embeddings` must complete in one run, embed nothing (every chunk hash is unchanged), and
leave row counts, rows and search results exactly as they were.
"""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.devproc import freshlake_dev
from tests.e2e.test_alerts_e2e import WORKSPACE, wait_for

pytestmark = pytest.mark.e2e

NOON = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
DAYS = [NOON - timedelta(days=n) for n in (3, 2, 1)]
KEYS = [d.strftime("%Y-%m-%d") for d in DAYS]
FLIGHTS_PER_DAY = 8

LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
  }
}
"""
STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status runs { runId status } }
    ... on PythonError { message }
  }
}
"""


def graphql(port: int, query: str, variables: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        body = json.loads(response.read())
    assert "errors" not in body, body
    return body["data"]


def produce_three_days(bootstrap: str) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for d, day in enumerate(DAYS):
        for n in range(FLIGHTS_PER_DAY):
            for version, status in enumerate(("scheduled", "boarding"), start=1):
                at = day + timedelta(minutes=30 * version + n)
                record = {
                    "flight_id": f"UA{d}{n:02d}-{KEYS[d]}",
                    "flight_number": f"UA{d}{n:02d}",
                    "airline": "United",
                    "origin": "SFO",
                    "destination": "JFK",
                    "status": status,
                    "gate": f"B{n}",
                    "version": version,
                    "event_time": at.isoformat(),
                }
                producer.produce(
                    "flights",
                    key=record["flight_id"].encode(),
                    value=json.dumps(record).encode(),
                    timestamp=int(at.timestamp() * 1000),
                )
    assert producer.flush(30) == 0


def snapshot(home: Path, embedder_url: str) -> tuple[list[dict], list[dict], list[list[str]]]:
    from freshlake.delta.tables import open_table
    from freshlake.embed.service import EmbeddingServiceClient
    from freshlake.lance.search import search
    from freshlake.lance.tables import live_store
    from freshlake.settings import store_roots
    from tests.demo_streams import demo_stream

    delta, lance = store_roots(env={"FRESHLAKE_HOME": str(home)})
    spec = demo_stream("flights")
    current = open_table(f"{delta}/flights/current").to_pyarrow_table().to_pylist()
    store = live_store(uri=lance, spec=spec)
    rows = [
        {k: v for k, v in r.items() if k not in ("embedded_at", "vector")}
        for r in store.table.to_arrow().to_pylist()
    ]
    embedder = EmbeddingServiceClient(url=embedder_url)
    hits = [
        [h.chunk_id for h in search(stores=[store], embedder=embedder, query=q, mode=mode, k=5)]
        for q in ("flight boarding at gate B3", "United from SFO to JFK")
        for mode in ("vector", "fts", "hybrid")
    ]
    return (
        sorted(current, key=lambda r: r["key"]),
        sorted(rows, key=lambda r: r["chunk_id"]),
        hits,
    )


def embedded_rows(home: Path) -> int:
    from freshlake.lance.tables import live_store
    from freshlake.settings import store_roots
    from tests.demo_streams import demo_stream

    _, lance = store_roots(env={"FRESHLAKE_HOME": str(home)})
    try:
        store = live_store(uri=lance, spec=demo_stream("flights"))
        return 0 if store is None else store.count()
    except Exception:  # tables being created by the run: the next poll sees them
        return 0


@pytest.mark.timeout(600)
def test_ui_backfill_of_three_processed_days_is_one_run_and_changes_nothing(tmp_path) -> None:
    with freshlake_dev(tmp_path, args=["--workspace", str(WORKSPACE), "--no-producer"]) as dev:
        home, port, embedder_url, context = dev.home, dev.port, dev.embedder_url, dev.log_tail
        produce_three_days(dev.bootstrap)
        total = 3 * FLIGHTS_PER_DAY
        wait_for(
            "the sensor runs to embed every flight",
            lambda: embedded_rows(home) == total,
            timeout=240,
            context=context,
        )
        time.sleep(5)  # let the last streaming run finish its bookkeeping
        before = snapshot(home, embedder_url)

        params = {
            "assetSelection": [{"path": ["flights", "current"]}, {"path": ["flights", "embeddings"]}],
            "partitionNames": KEYS,
            "title": "re-derive three days",
        }
        launched = graphql(port, LAUNCH, {"params": params})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]

        state: dict = {}

        def finished() -> bool:
            state.update(graphql(port, STATUS, {"id": backfill_id})["partitionBackfillOrError"])
            return state.get("status", "").startswith("COMPLETED") or state.get("status") == "FAILED"

        wait_for("the backfill to finish", finished, timeout=240, context=lambda: f"{state}\n{context()}")
        assert state["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), state
        assert len(state["runs"]) == 1 and state["runs"][0]["status"] == "SUCCESS", state

        import dagster as dg

        with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
            records = instance.all_logs(
                state["runs"][0]["runId"], of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
            )
        materialized = {
            (
                r.dagster_event.asset_key.to_user_string(),
                r.dagster_event.partition,
            ): r.dagster_event.event_specific_data.materialization.metadata
            for r in records
        }
        assert {key for key, _ in materialized} == {"flights/current", "flights/embeddings"}
        assert {p for _, p in materialized} == set(KEYS)  # one run, all three partitions
        for (asset, _), metadata in materialized.items():
            if asset == "flights/embeddings":
                assert metadata["chunks_embedded"].value == 0
                assert metadata["backfill_keys"].value == total

        after = snapshot(home, embedder_url)
        assert len(after[0]) == len(before[0]) == total and len(after[1]) == len(before[1]) == total
        assert after == before
