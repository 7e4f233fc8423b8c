"""Lag checks: evaluations from the SLO, the check op and the sensor; offline (no broker here,
so the op and sensor see Kafka as unreachable: the consumer-lag check must fail, not crash).
The same checks against a real broker run in tests/integration/test_trace_status.py."""

from __future__ import annotations

import dataclasses
import socket
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from freshlake.assets.checks import (
    build_lag_checks,
    consumer_lag_check_key,
    event_time_lag_check_key,
    lag_evaluations,
    quarantine_check_key,
)
from freshlake.components.stream import build_stream_definitions
from freshlake.lag import StreamLag
from freshlake.resources.kafka import KafkaResource
from freshlake.resources.storage import StorageResource
from freshlake.sensors.lag import build_lag_sensor, evaluate
from freshlake.streams import Freshness
from tests.demo_streams import demo_stream

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
SPEC = dataclasses.replace(
    demo_stream("flights"),
    freshness=Freshness(warn_after_seconds=60, fail_after_seconds=120, max_consumer_lag=10),
)


def measured(*, behind: int, age: float) -> StreamLag:
    return StreamLag(
        stream="flights",
        topic="flights",
        measured_at=NOW,
        watermarks={0: 50},
        committed={0: 49 - behind},
        consumer_lag=behind,
        newest_event_time=NOW - timedelta(seconds=age),
        event_time_source="lancedb",
    )


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def resources(tmp_path, closed_port) -> dict:
    return {
        "kafka": KafkaResource(bootstrap_servers=f"127.0.0.1:{closed_port}"),
        "storage": StorageResource(delta_root=str(tmp_path / "delta"), lance_root=str(tmp_path / "lance")),
    }


def test_check_keys_target_raw_and_the_searchable_asset() -> None:
    assert consumer_lag_check_key(SPEC) == dg.AssetCheckKey(dg.AssetKey(["flights", "raw"]), "consumer_lag")
    assert event_time_lag_check_key(SPEC).asset_key == dg.AssetKey(["flights", "embeddings"])
    feedback = demo_stream("feedback")  # not embedded: event-time lag is checked on raw
    assert event_time_lag_check_key(feedback).asset_key == dg.AssetKey(["feedback", "raw"])
    (checks,) = build_lag_checks(SPEC)
    assert set(checks.check_keys) == {
        consumer_lag_check_key(SPEC),
        event_time_lag_check_key(SPEC),
        quarantine_check_key(SPEC),
    }
    assert quarantine_check_key(SPEC).asset_key == dg.AssetKey(["flights", "quarantine"])
    assert not any(spec.blocking for spec in checks.check_specs)


def test_evaluations_pass_warn_and_fail() -> None:
    consumer, event = consumer_lag_check_key(SPEC), event_time_lag_check_key(SPEC)
    fresh = lag_evaluations(SPEC, measured(behind=2, age=5))
    assert fresh[consumer]["passed"] and fresh[event]["passed"]
    assert fresh[consumer]["metadata"]["consumer_lag"] == 2
    assert fresh[event]["metadata"]["event_time_lag_seconds"] == 5.0
    assert fresh[event]["metadata"]["fail_after_seconds"] == 120

    warn = lag_evaluations(SPEC, measured(behind=2, age=90))[event]
    assert not warn["passed"] and warn["severity"] == dg.AssetCheckSeverity.WARN

    late = lag_evaluations(SPEC, measured(behind=11, age=500))
    assert not late[consumer]["passed"] and late[consumer]["severity"] == dg.AssetCheckSeverity.ERROR
    assert not late[event]["passed"] and late[event]["severity"] == dg.AssetCheckSeverity.ERROR


def test_check_op_fails_consumer_lag_when_kafka_is_unreachable(resources) -> None:
    (checks,) = build_lag_checks(SPEC)
    results = list(checks(dg.build_asset_check_context(resources=resources)))
    by_name = {r.check_name: r for r in results}
    assert set(by_name) == {"consumer_lag", "event_time_lag", "quarantine"}
    assert by_name["quarantine"].passed  # no quarantine table yet: nothing refused
    assert not by_name["consumer_lag"].passed
    assert "Kafka unreadable" in by_name["consumer_lag"].description
    assert by_name["event_time_lag"].passed  # nothing searchable yet: unknown, not failing
    assert "event_time_lag_seconds" not in by_name["event_time_lag"].metadata  # unknown: left out


def test_sensor_reports_runless_check_evaluations(resources) -> None:
    result = evaluate(SPEC, **resources)
    assert not result.run_requests
    assert {(e.asset_key, e.check_name) for e in result.asset_events} == {
        (k.asset_key, k.name)
        for k in (consumer_lag_check_key(SPEC), event_time_lag_check_key(SPEC), quarantine_check_key(SPEC))
    }
    assert all(isinstance(e, dg.AssetCheckEvaluation) for e in result.asset_events)
    sensor = build_lag_sensor(SPEC)
    assert sensor.minimum_interval_seconds == 30 and sensor.name == "flights_lag"


def test_checks_and_sensor_load_beside_the_stream_assets(resources) -> None:
    defs = dg.Definitions.merge(
        build_stream_definitions(SPEC),  # the factory wires the checks and the lag sensor
        dg.Definitions(resources={**resources, "embedder": dg.ResourceDefinition.none_resource()}),
    )
    job = defs.resolve_job_def("flights_ingest")
    assert consumer_lag_check_key(SPEC) in job.asset_layer.asset_graph.asset_check_keys
    assert defs.resolve_sensor_def("flights_lag") is not None


def test_column_lineage_raw_to_current_to_embeddings() -> None:
    from freshlake.assets.lineage import column_lineage, embeddings_column_lineage

    raw, current = dg.AssetKey(["bookings", "raw"]), dg.AssetKey(["bookings", "current"])
    spec = demo_stream("bookings")
    deps = column_lineage(spec).deps_by_column
    assert deps["source_offset"] == [dg.TableColumnDep(asset_key=raw, column_name="kafka_offset")]
    assert deps["is_deleted"] == [dg.TableColumnDep(asset_key=raw, column_name="is_delete")]
    assert "raw_delta_version" not in deps  # from the commit log, not a column
    # The version is the source position (Debezium), then partition and offset.
    version = {d.column_name for d in deps["version"]}
    assert {"source_lsn", "source_file", "source_pos", "kafka_partition", "kafka_offset"} <= version
    flights = {d.column_name for d in column_lineage(demo_stream("flights")).deps_by_column["version"]}
    assert flights == {"version", "kafka_partition", "kafka_offset"}
    emb = embeddings_column_lineage(spec).deps_by_column
    assert emb["source_version"] == [dg.TableColumnDep(asset_key=current, column_name="version")]
    text = set(emb["text"])
    assert dg.TableColumnDep(asset_key=current, column_name="passenger_name") in text
    assert dg.TableColumnDep(asset_key=dg.AssetKey(["flights", "current"]), column_name="status") in text
    assert emb["vector"] == emb["text"]
