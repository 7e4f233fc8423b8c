"""The production-shaped profile on one machine: durable broker behind SASL_SSL, Postgres-backed
Dagster, Delta and LanceDB on S3-compatible storage, and a token-protected embedder.

Each piece is a small module that starts one real service and stops it again; `prod.ProdStack`
composes them and yields the environment (`KAFKA_*`, `FRESHLAKE_*`, `DAGSTER_HOME`) that points
freshlake at them, exactly as a real deployment would be configured.
"""
