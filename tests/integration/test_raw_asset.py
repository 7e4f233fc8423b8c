"""Materializing `<stream>/raw` by hand with no config, as the UI does."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import dagster as dg
import polars as pl
import pytest

from freshlake.assets.keys import quarantine_key, raw_key
from freshlake.assets.partitions import current_partition
from freshlake.assets.raw import build_raw_assets
from freshlake.assets.topics import topic_asset_spec
from freshlake.resources.kafka import KafkaResource
from freshlake.resources.storage import StorageResource
from freshlake.streams import Batching
from tests.demo_streams import demo_stream

pytestmark = pytest.mark.integration


def test_manual_materialization_ingests_up_to_the_watermark_capped(
    kafka_config, unique_topic, tmp_path
) -> None:
    from examples.flight_assistant.producer import produce_demo

    produce_demo(
        config=kafka_config,
        count=500,
        streams=("flights",),
        bad_ratio=0.04,
        partitions=3,
        topic_prefix=unique_topic + "-",
        start=datetime(2026, 11, 21, tzinfo=UTC),
    )
    spec = dataclasses.replace(
        demo_stream("flights"),
        topic=f"{unique_topic}-flights",
        batching=Batching(max_records_per_run=300),
    )
    resources = {
        "kafka": KafkaResource(bootstrap_servers=str(kafka_config["bootstrap.servers"])),
        "storage": StorageResource(delta_root=str(tmp_path)),
    }
    assets = [topic_asset_spec(spec), build_raw_assets(spec)]

    first = dg.materialize(
        assets,
        resources=resources,
        selection=[raw_key(spec), quarantine_key(spec)],
        partition_key=current_partition(spec),
    )
    assert first.success
    meta = first.asset_materializations_for_node("flights_raw")[0].metadata
    assert meta["messages_read"].value == 300  # capped per run
    assert meta["consumer_lag"].value == 200
    assert meta["rows_written"].value + meta["rows_quarantined"].value == 300
    for name in (
        "delta_version",
        "read_seconds",
        "parse_seconds",
        "write_seconds",
        "offset_ranges",
        "event_time_lag_seconds",
        "newest_message_time",
    ):
        assert name in meta

    second = dg.materialize(
        assets,
        resources=resources,
        selection=[raw_key(spec), quarantine_key(spec)],
        partition_key=current_partition(spec),
    )
    meta = second.asset_materializations_for_node("flights_raw")[0].metadata
    assert meta["messages_read"].value == 200 and meta["consumer_lag"].value == 0
    raw = pl.read_delta(str(tmp_path / "flights" / "raw"))
    quarantine = pl.read_delta(str(tmp_path / "flights" / "quarantine"))
    assert raw.height + quarantine.height == 500
    assert raw.select("kafka_partition", "kafka_offset").is_unique().all()
