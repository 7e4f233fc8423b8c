"""Dagster assets and asset checks, built from stream specs."""
