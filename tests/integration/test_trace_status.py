"""Provenance and status against the real broker, Delta and LanceDB (hash embedder).

`trace` on a chunk returned by `search` must reach the exact Kafka (partition, offset) that
produced it; `status` must exit 0 in SLO and non-zero out of it.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from freshlake.assets.checks import build_lag_checks
from freshlake.assets.partitions import current_partition
from freshlake.cli.status import run_status
from freshlake.cli.trace import run_trace
from freshlake.ordering import split_version
from freshlake.status import exit_code, status_report
from freshlake.streams import Freshness
from freshlake.trace import trace
from tests.demo_streams import demo_stream
from tests.integration.test_processed import World

pytestmark = pytest.mark.integration


def produce_flight(world: World, flight_id: str, status: str, version: int) -> tuple[int, int]:
    """One flight event with event_time now; its (partition, offset) from the delivery report."""
    return world.flight(flight_id, status, version, event_time=datetime.now(UTC).isoformat())


@pytest.fixture
def world(kafka_config, tmp_path) -> World:
    return World(kafka_config, tmp_path)


def roots(world: World) -> dict[str, str]:
    storage = world.resources["storage"]
    return {"delta_root": storage.delta_root, "lance_root": storage.lance_root}


def test_trace_of_a_search_hit_reaches_its_kafka_offset(world: World, kafka_config, capsys) -> None:
    produce_flight(world, "UA7-2026-11-21", "scheduled", 1)
    partition, offset = produce_flight(world, "UA7-2026-11-21", "delayed", 2)
    world.run()
    (hit,) = [h for h in world.search("UA7 delayed", mode="hybrid", k=5) if h.key == "UA7-2026-11-21"]

    report = trace(
        chunk_id_or_key=hit.chunk_id,
        stream=None,
        specs=tuple(world.specs.values()),
        kafka_config=kafka_config,
        **roots(world),
    )
    (source,) = report.sources
    assert (source.topic, source.partition, source.offset) == (
        world.specs["flights"].topic,
        partition,
        offset,
    )
    assert source.broker_check == "match"
    assert source.raw_row["key"] == "UA7-2026-11-21"
    assert source.raw_commit_version == hit.provenance["raw_delta_version"]
    assert source.kafka_timestamp is not None
    assert [c["chunk_id"] for c in report.chunks] == [hit.chunk_id]
    assert report.current["source_offset"] == offset
    assert split_version(report.current["version"])[1:] == (partition, offset)  # + the order prefix
    text = report.render()
    assert f"{world.specs['flights'].topic}[{partition}]@{offset}" in text and "broker: match" in text

    by_key = trace(
        chunk_id_or_key="UA7-2026-11-21",
        stream="flights",
        specs=tuple(world.specs.values()),
        **roots(world),
    )
    assert [(s.partition, s.offset) for s in by_key.sources] == [(partition, offset)]
    assert by_key.sources[0].broker_check is None  # no broker given: Delta is the evidence

    missing = trace(
        chunk_id_or_key="nope", stream="flights", specs=tuple(world.specs.values()), **roots(world)
    )
    assert not missing.found and "not found" in missing.render()


def test_status_in_and_out_of_slo(world: World, kafka_config, monkeypatch, capsys) -> None:
    specs = tuple(
        dataclasses.replace(
            s, freshness=Freshness(warn_after_seconds=60, fail_after_seconds=120, max_consumer_lag=0)
        )
        for s in world.specs.values()
    )
    produce_flight(world, "UA8-2026-11-21", "boarding", 1)
    world.run()

    fresh = status_report(kafka_config=kafka_config, specs=specs, **roots(world))
    flights = next(s for s in fresh if s.spec.name == "flights")
    assert flights.verdict.state == "PASS" and flights.lag.consumer_lag == 0
    assert flights.lag.event_time_source == "lancedb" and flights.lag.event_time_lag_seconds < 60
    assert exit_code(fresh) == 0

    later = datetime.now(UTC) + timedelta(minutes=10)
    stale = status_report(kafka_config=kafka_config, specs=specs, now=later, **roots(world))
    assert exit_code(stale) == 1
    assert next(s for s in stale if s.spec.name == "flights").verdict.event_time_lag == "FAIL"

    produce_flight(world, "UA8-2026-11-21", "departed", 2)  # not ingested: consumer lag 1 > 0
    behind = status_report(kafka_config=kafka_config, specs=specs, **roots(world))
    flights = next(s for s in behind if s.spec.name == "flights")
    assert flights.lag.consumer_lag == 1 and flights.verdict.consumer_lag == "FAIL"
    assert exit_code(behind) == 1

    # The CLI entry points, as `freshlake status --json` / `freshlake trace` call them.
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", str(kafka_config["bootstrap.servers"]))
    monkeypatch.setenv("FRESHLAKE_DELTA_URI", roots(world)["delta_root"])
    monkeypatch.setenv("FRESHLAKE_LANCE_URI", roots(world)["lance_root"])
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    capsys.readouterr()
    assert run_status(as_json=True, specs=specs) == 1
    payload = json.loads(capsys.readouterr().out)
    assert {p["stream"]: p["state"] for p in payload}["flights"] == "FAIL"
    world.run()
    assert run_status(as_json=False, specs=specs) == 0
    out = capsys.readouterr().out
    assert "STREAM" in out and "\033[" not in out  # not a TTY: no colour
    # a chunk id that is not there
    assert run_trace(target="flights:UA0-nowhere:0", stream=None, specs=specs) == 1
    assert "not found" in capsys.readouterr().out


def test_lag_checks_in_a_run_pass_then_fail(world: World, kafka_config) -> None:
    spec = world.specs["flights"]
    strict = dataclasses.replace(
        spec, freshness=Freshness(warn_after_seconds=60, fail_after_seconds=120, max_consumer_lag=0)
    )
    produce_flight(world, "UA9-2026-11-21", "scheduled", 1)
    checks = build_lag_checks(strict)
    result = dg.materialize(
        [*world.assets, *checks],
        resources=world.resources,
        partition_key=current_partition(demo_stream("flights")),
    )
    assert result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evaluations["consumer_lag"].passed and evaluations["event_time_lag"].passed
    assert evaluations["consumer_lag"].metadata["consumer_lag"].value == 0

    produce_flight(world, "UA9-2026-11-21", "boarding", 2)
    context = dg.build_asset_check_context(
        resources={"kafka": world.resources["kafka"], "storage": world.resources["storage"]}
    )
    by_name = {r.check_name: r for r in checks[0](context)}
    assert not by_name["consumer_lag"].passed
    assert by_name["consumer_lag"].metadata["consumer_lag"].value == 1
