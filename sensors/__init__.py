"""Dagster sensors: Kafka offsets, freshness alerts, maintenance triggers."""
