"""`freshlake status` and `freshlake trace`: what the CLI parser calls.

Both read the stores from `store_roots()` (`FRESHLAKE_HOME`, `FRESHLAKE_DELTA_URI`,
`FRESHLAKE_LANCE_URI`) and Kafka from `KAFKA_*` (or `bootstrap`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime

from freshlake.streams import StreamSpec


def run_status(
    *,
    as_json: bool,
    bootstrap: str | None = None,
    specs: Sequence[StreamSpec] | None = None,
    now: datetime | None = None,
) -> int:
    """Print each stream's lag and SLO state (default: the demo streams); 1 when any fails its SLO."""
    from freshlake.kafka.connection import client_config
    from freshlake.settings import store_roots
    from freshlake.status import exit_code, last_runs_from_dagster, render, render_json, status_report
    from freshlake.streams import DEMO_STREAMS

    specs = tuple(specs or DEMO_STREAMS)
    delta_root, lance_root = store_roots()
    statuses = status_report(
        kafka_config=client_config(bootstrap=bootstrap),
        delta_root=delta_root,
        lance_root=lance_root,
        specs=specs,
        now=now,
        last_runs=last_runs_from_dagster(specs),
    )
    print(render_json(statuses) if as_json else render(statuses, colour=sys.stdout.isatty()))
    return exit_code(statuses)


def run_trace(*, target: str, stream: str | None, bootstrap: str | None = None) -> int:
    """Print the provenance chain of a chunk id or a stream key; 1 when nothing is found.

    Each Kafka offset is re-read from the broker to confirm it; without a reachable broker the
    chain still prints from Delta alone.
    """
    from freshlake.errors import FreshlakeConfigError
    from freshlake.kafka.connection import client_config
    from freshlake.settings import store_roots
    from freshlake.trace import trace

    delta_root, lance_root = store_roots()
    try:
        kafka = client_config(bootstrap=bootstrap)
    except FreshlakeConfigError:
        kafka = None
    report = trace(
        chunk_id_or_key=target,
        stream=stream,
        delta_root=delta_root,
        lance_root=lance_root,
        kafka_config=kafka,
    )
    print(report.render())
    return 0 if report.found else 1
