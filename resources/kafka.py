"""Kafka connection settings for runs and sensors; freshlake builds explicit-offset clients.

Field names follow dagster-kafka's `KafkaResource` so its documentation applies; unset fields
fall back to the `KAFKA_*` environment variables the CLI reads, so one setting serves both.
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from freshlake.kafka.connection import client_config


class KafkaResource(dg.ConfigurableResource):
    """Where Kafka is and how to authenticate; empty fields come from `KAFKA_*` env vars."""

    bootstrap_servers: str | None = Field(default=None, description="host:port[,host:port]")
    security_protocol: str | None = Field(default=None, description="PLAINTEXT, SSL, SASL_SSL...")
    sasl_mechanism: str | None = Field(default=None, description="PLAIN, SCRAM-SHA-512, ...")
    sasl_username: str | None = None
    sasl_password: str | None = None
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: str | None = None
    additional_config: dict[str, str] = Field(
        default_factory=dict, description="Any other librdkafka property, passed through as is."
    )

    def client_config(self) -> dict[str, object]:
        overrides = {
            "security.protocol": self.security_protocol,
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password,
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
            "ssl.key.password": self.ssl_key_password,
            **self.additional_config,
        }
        return client_config(bootstrap=self.bootstrap_servers, overrides=overrides)
