"""From Kafka messages to raw rows: parse, validate, plan offset ranges, ingest."""
