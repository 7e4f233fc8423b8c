"""Quarantine is loud: messages refused at ingest (real broker, real Delta) fail the stream's
`quarantine` check in the ingest run (ERROR above the share, WARN below), the quarantine asset's
metadata carries the run's count, the table's total and the error classes, the alert sensor pages
once and resolves once the window is clean (evaluated by the lag sensor), and `trace` finds the
message by its key and by its offset, with the reason."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from freshlake.alerts.notify import RetryPolicy
from freshlake.assets.checks import (
    QUARANTINE_ERROR_SHARE_ENV,
    build_lag_checks,
    quarantine_check_key,
    quarantine_window_seconds,
)
from freshlake.assets.keys import quarantine_key, raw_key
from freshlake.assets.partitions import current_partition
from freshlake.assets.raw import build_raw_assets
from freshlake.assets.topics import topic_asset_spec
from freshlake.resources.kafka import KafkaResource
from freshlake.resources.storage import StorageResource
from freshlake.sensors.alerts import build_alert_sensor
from freshlake.sensors.lag import evaluate as lag_sensor_evaluate
from freshlake.trace import trace
from tests.demo_streams import demo_stream
from tests.receiver import Received, local_receiver

pytestmark = pytest.mark.integration
FAST = RetryPolicy(tries=2, base_seconds=0.01, timeout_seconds=2)
BAD = b'{"flight_id": "BAD1", "status": "boarding", "event_time": "not a time", "version": 1}'


@pytest.fixture
def pager(monkeypatch) -> Iterator[Received]:
    with local_receiver() as pd:
        monkeypatch.setenv("FRESHLAKE_PAGERDUTY_URL", pd.url + "v2/enqueue")
        monkeypatch.setenv("FRESHLAKE_PAGERDUTY_ROUTING_KEY", "test-routing-key")
        monkeypatch.delenv("FRESHLAKE_SLACK_WEBHOOK_URL", raising=False)
        yield pd


def send_bad(kafka_config, topic: str, count: int) -> None:
    from confluent_kafka import Producer

    producer = Producer(dict(kafka_config))
    for _ in range(count):
        producer.produce(topic, key=b"BAD1", value=BAD, partition=0)
    assert producer.flush(10) == 0


def test_quarantined_messages_fail_the_check_page_once_resolve_and_trace(
    kafka_config, unique_topic, tmp_path, pager, monkeypatch
) -> None:
    from examples.flight_assistant.producer import produce_demo

    produce_demo(
        config=kafka_config,
        count=40,
        streams=("flights",),
        partitions=1,
        topic_prefix=unique_topic + "-",
        start=datetime.now(UTC) - timedelta(minutes=5),
    )
    spec = dataclasses.replace(demo_stream("flights"), topic=f"{unique_topic}-flights")
    send_bad(kafka_config, spec.topic, 2)
    kafka = KafkaResource(bootstrap_servers=str(kafka_config["bootstrap.servers"]))
    storage = StorageResource(delta_root=str(tmp_path / "delta"), lance_root=str(tmp_path / "lance"))
    check = quarantine_check_key(spec)

    with dg.DagsterInstance.ephemeral() as instance:
        run = dg.materialize(
            [topic_asset_spec(spec), build_raw_assets(spec), *build_lag_checks(spec)],
            resources={"kafka": kafka, "storage": storage},
            selection=[raw_key(spec), quarantine_key(spec)],
            partition_key=current_partition(spec),
            instance=instance,
        )
        assert run.success
        evaluation = {e.check_name: e for e in run.get_asset_check_evaluations()}["quarantine"]
        assert not evaluation.passed
        assert evaluation.severity == dg.AssetCheckSeverity.ERROR  # 2 of 42 = 4.8 % >= 1 %
        assert evaluation.metadata["quarantined_in_window"].value == 2
        assert evaluation.metadata["messages_in_window"].value == 42
        assert evaluation.metadata["error_from_share_percent"].value == 1.0
        assert "2 of 42 messages quarantined" in evaluation.description
        assert "4.8 % of the window's messages: ERROR, ERROR from 1 %" in evaluation.description
        assert "freshlake trace --stream flights p0@41" in evaluation.description

        meta = run.asset_materializations_for_node("flights_raw")
        quarantine_meta = next(m for m in meta if m.asset_key == quarantine_key(spec)).metadata
        assert quarantine_meta["rows_quarantined"].value == 2
        assert quarantine_meta["rows_quarantined_total"].value == 2
        assert quarantine_meta["error_classes"].value.endswith(" x2")
        assert quarantine_meta["latest_error"].value.startswith("p0@41 ")
        raw_meta = next(m for m in meta if m.asset_key == raw_key(spec)).metadata
        assert all(v.value != -1 for v in raw_meta.values())

        # Below the share it is a WARN (same window, the lag sensor's evaluation).
        monkeypatch.setenv(QUARANTINE_ERROR_SHARE_ENV, "0.5")
        warned = lag_sensor_evaluate(spec, kafka=kafka, storage=storage)
        (warn,) = [e for e in warned.asset_events if e.check_name == "quarantine"]
        assert not warn.passed and warn.severity == dg.AssetCheckSeverity.WARN
        assert "messages: WARN, ERROR from 50 %" in warn.description
        monkeypatch.delenv(QUARANTINE_ERROR_SHARE_ENV)

        # The alert sensor pages once for the failed check over several ticks...
        sensor = build_alert_sensor(asset_keys=[], check_keys=[check], retry=FAST)
        cursor = None
        for _ in range(3):
            result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
            cursor = result.cursor
        key = "freshlake:flights/quarantine:quarantine"
        assert [(b["event_action"], b["dedup_key"]) for b in pager.bodies] == [("trigger", key)]
        assert pager.bodies[0]["payload"]["severity"] == "critical"
        assert pager.bodies[0]["payload"]["custom_details"]["quarantined_in_window"] == 2

        # ...and resolves once a whole window passed without a refused message (lag sensor).
        later = datetime.now(UTC) + timedelta(seconds=quarantine_window_seconds() + 5)
        clean = lag_sensor_evaluate(spec, kafka=kafka, storage=storage, now=later)
        for event in clean.asset_events:
            instance.report_runless_asset_event(event)
        (passed,) = [e for e in clean.asset_events if e.check_name == "quarantine"]
        assert passed.passed and passed.metadata["rows_quarantined_total"].value == 2
        for _ in range(2):
            result = sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
            cursor = result.cursor
        assert [b["event_action"] for b in pager.bodies] == ["trigger", "resolve"]

    # trace: by key and by offset, with the reason
    roots = {"delta_root": str(tmp_path / "delta"), "lance_root": str(tmp_path / "lance"), "specs": [spec]}
    by_key = trace(chunk_id_or_key="BAD1", stream="flights", **roots)
    assert by_key.found and [q["kafka_offset"] for q in by_key.quarantined] == [41, 40]
    text = by_key.render()
    assert "QUARANTINED" in text and "event_time" in text and "not a time" in text
    by_offset = trace(chunk_id_or_key="p0@40", stream="flights", **roots)
    assert [q["kafka_offset"] for q in by_offset.quarantined] == [40]
    assert by_offset.quarantined[0]["error_class"] == by_key.quarantined[1]["error_class"]
    good = trace(chunk_id_or_key="p0@3", stream="flights", **roots)
    assert not good.quarantined and good.sources[0].raw_row is not None
    missing = trace(chunk_id_or_key="NOPE", stream="flights", **roots)
    assert not missing.found and "quarantine" in missing.render()
