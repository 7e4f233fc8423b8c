"""The Dagster instance of the embedded default: SQLite under `$FRESHLAKE_HOME/dagster`.

Written as `dagster.yaml` into DAGSTER_HOME by `freshlake dev`; a production deployment keeps its
own dagster.yaml (Postgres storage, a k8s or Celery run launcher) and never calls this.
"""

from __future__ import annotations

from pathlib import Path

# Runs per stream chain are small and frequent: 4 at once keeps 2 cores busy without thrashing,
# and at most one sensor run per stream (tag `freshlake/stream`) keeps them from reading the same
# offsets twice. That is economy, not correctness: raw commits only on the offsets a run planned
# from (any run, any launch path, any instance config), and the offsets sensor waits for runs of
# `<stream>/raw` that lack the tag (UI, CLI, backfills), so a production dagster.yaml needs none.
# Maintenance: every pool gets one slot (`pools.default_limit`; Dagster 1.13 sets other limits only
# through the CLI/UI), claimed per op, so one maintenance writer per table whatever launches it;
# the `freshlake/maintenance` tag limit keeps the queue from starting runs that would only wait.
DAGSTER_YAML = """\
# Written by `freshlake dev`; edits are overwritten. Production: keep your own dagster.yaml.
storage:
  sqlite:
    base_dir: {base_dir}
local_artifact_storage:
  module: dagster._core.storage.root
  class: LocalArtifactStorage
  config:
    base_dir: {base_dir}
run_queue:
  # Dagster checks its queue every 5 s by default: with one short run per stream chain that wait
  # was ~1/3 of produce -> searchable (bench/freshness.py: p50 18.3 s -> 14.3 s with 1 s).
  dequeue_interval_seconds: 1
concurrency:
  pools:
    default_limit: 1
    granularity: op
  runs:
    # A streaming run holds its slot for minutes (one per stream with traffic): room for them and
    # for backfills, manual runs and maintenance beside them.
    max_concurrent_runs: 10
    tag_concurrency_limits:
      - key: freshlake/stream
        value:
          applyLimitPerUniqueValue: true
        limit: 1
      - key: freshlake/maintenance
        value:
          applyLimitPerUniqueValue: true
        limit: 1
run_retries:
  enabled: true
  max_retries: 2
sensors:
  use_threads: true
  num_workers: 4
schedules:
  use_threads: true
  num_workers: 2
freshness:
  enabled: true
telemetry:
  enabled: false
"""


def write_instance_config(*, dagster_home: Path) -> Path:
    """Write dagster.yaml for the embedded default and return its path."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    path = dagster_home / "dagster.yaml"
    path.write_text(DAGSTER_YAML.format(base_dir=dagster_home))
    return path


def cancel_orphaned_runs(*, dagster_home: Path) -> int:
    """Mark runs a killed `freshlake dev` left queued or in flight as canceled; return how many.

    Only for the embedded instance, and only before its daemon starts: `freshlake dev` then owns
    it (the broker's data lock proves no other one runs on this home), so no run of it can still
    be alive. The default run launcher cannot check a worker's health, so without this those
    runs stay STARTED forever and hold the one-run-per-stream slot. Canceled, as Ctrl-C leaves
    them, so run retries do not start stale copies; their uncommitted offsets are read again."""
    if not (dagster_home / "dagster.yaml").is_file() or not (dagster_home / "history" / "runs.db").is_file():
        return 0
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    statuses = [
        DagsterRunStatus.QUEUED,
        DagsterRunStatus.NOT_STARTED,
        DagsterRunStatus.STARTING,
        DagsterRunStatus.STARTED,
        DagsterRunStatus.CANCELING,
    ]
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = instance.get_runs(filters=RunsFilter(statuses=statuses))
        for run in runs:
            instance.report_run_canceled(
                run,
                message="the previous `freshlake dev` ended (killed) while this run was queued or running",
            )
    return len(runs)
