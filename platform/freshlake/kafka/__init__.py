"""Kafka access: the embedded broker, connections, topics and offsets."""
