"""Thin Dagster resources around the `freshlake` library's clients."""
