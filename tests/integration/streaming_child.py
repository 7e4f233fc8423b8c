"""A streaming run's loop in a process of its own, for the kill tests.

    python -m tests.integration.streaming_child '{"bootstrap": ..., "topic": ..., "root": ...,
        "pause_at": "commit", "marker": PATH, "idle_seconds": 2}'

`pause_at` names a loop stage ("read", "write", "commit", "fold", "embed", "done"): the first
time a batch reaches it the child writes `marker` and waits there to be killed. One line per
batch on stdout (its ranges), then `ended <reason>`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path


def main(settings: dict) -> None:
    from freshlake.embed.models import HashEmbedder
    from freshlake.resources.storage import StorageResource
    from freshlake.streaming.loop import StreamRun
    from freshlake.streaming.signals import stop_on_signals
    from freshlake.streaming.stages import StreamStores
    from tests.demo_streams import demo_stream

    base = demo_stream("flights")
    spec = dataclasses.replace(
        base,
        topic=settings["topic"],
        batching=dataclasses.replace(
            base.batching,
            idle_seconds=settings.get("idle_seconds", 2),
            max_records_per_run=settings.get("max_records", 50_000),
        ),
    )
    root = Path(settings["root"])
    storage = StorageResource(delta_root=str(root / "delta"), lance_root=str(root / "lance"))

    def barrier(stage: str) -> None:
        if stage == settings.get("pause_at"):
            Path(settings["marker"]).write_text(stage)
            time.sleep(3600)  # killed here

    with stop_on_signals() as stop:
        run = StreamRun(
            spec=spec,
            kafka_config={"bootstrap.servers": settings["bootstrap"]},
            stores=StreamStores(spec=spec, storage=storage, embedder=HashEmbedder()),
            stop=stop,
            barrier=barrier,
        )
        for report in run.batches():
            ranges = [[r.partition, r.start, r.end] for r in report.ingest.ranges]
            print(json.dumps({"batch": report.number, "ranges": ranges}), flush=True)
            if settings.get("slow_batches"):
                time.sleep(settings["slow_batches"])
    print(f"ended {run.stopped_by}", flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
