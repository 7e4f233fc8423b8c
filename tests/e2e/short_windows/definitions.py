"""Test-only code location: `definitions.py` for the `flights` stream alone, with short windows.

Freshness warns after 60 s and fails after 90 s (60 s is the smallest window Dagster accepts) and
the alert sensor ticks every 5 s, so `tests/e2e/test_alerts_e2e.py` sees PASS -> WARN -> FAIL ->
PASS within a few minutes. Built with the production factories; the maintenance schedules are left
out (their runs only add load and record observations, which freshness ignores).
"""

from __future__ import annotations

from dataclasses import replace

import dagster as dg

from freshlake.components.stream import build_stream_definitions
from freshlake.resources.embedder import EmbedderResource
from freshlake.resources.kafka import KafkaResource
from freshlake.resources.storage import StorageResource
from freshlake.sensors.alerts import build_alert_sensor
from freshlake.streams import Freshness
from tests.demo_streams import demo_stream

WARN_AFTER_SECONDS = 60
FAIL_AFTER_SECONDS = 90
ALERT_INTERVAL_SECONDS = 5


def build_definitions() -> dg.Definitions:
    spec = replace(
        demo_stream("flights"),
        freshness=Freshness(warn_after_seconds=WARN_AFTER_SECONDS, fail_after_seconds=FAIL_AFTER_SECONDS),
    )
    stream = build_stream_definitions(spec)
    watched = [
        key
        for asset in stream.assets or ()
        if isinstance(asset, dg.AssetsDefinition)
        for key in asset.keys
        if asset.specs_by_key[key].freshness_policy is not None
    ]
    checks = [key for check in stream.asset_checks or () for key in check.check_keys]
    alerts = build_alert_sensor(
        asset_keys=watched, check_keys=checks, interval_seconds=ALERT_INTERVAL_SECONDS
    )
    return dg.Definitions.merge(
        stream,
        dg.Definitions(sensors=[alerts]),
        dg.Definitions(
            resources={
                "kafka": KafkaResource(),
                "storage": StorageResource(),
                "embedder": EmbedderResource(),
            }
        ),
    )


defs = build_definitions()
