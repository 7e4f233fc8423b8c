"""Streaming runs: one long-lived run per stream, looping in micro-batches (no Dagster here).

`loop.StreamRun` reads with a `tail.Tail` kept open, commits raw through the same exactly-once
path as every ingest, then folds `current` and syncs LanceDB with `stages.StreamStores`;
`signals.stop_on_signals` turns SIGINT/SIGTERM into a stop between batches; `trigger` names the
runs the offsets sensor starts.
"""
