"""The one code location: every stream's assets, checks and sensors, built from its spec."""

from __future__ import annotations

import dagster as dg

from assets.topics import topic_asset_spec
from freshlake.streams import DEMO_STREAMS

defs = dg.Definitions(assets=[topic_asset_spec(spec) for spec in DEMO_STREAMS])
