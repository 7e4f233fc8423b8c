"""Kafka client settings from the environment: one place maps KAFKA_* variables to librdkafka."""

from __future__ import annotations

import os
from collections.abc import Mapping

from freshlake.errors import FreshlakeConfigError

# KAFKA_<NAME> environment variable -> librdkafka property. The same names feed the Dagster
# resource, so a real cluster is configured once for the CLI, the sensors and the runs.
ENV_TO_LIBRDKAFKA: dict[str, str] = {
    "KAFKA_BOOTSTRAP_SERVERS": "bootstrap.servers",
    "KAFKA_SECURITY_PROTOCOL": "security.protocol",
    "KAFKA_SASL_MECHANISM": "sasl.mechanism",
    "KAFKA_SASL_USERNAME": "sasl.username",
    "KAFKA_SASL_PASSWORD": "sasl.password",
    "KAFKA_SSL_CA_LOCATION": "ssl.ca.location",
    "KAFKA_SSL_CERTIFICATE_LOCATION": "ssl.certificate.location",
    "KAFKA_SSL_KEY_LOCATION": "ssl.key.location",
    "KAFKA_SSL_KEY_PASSWORD": "ssl.key.password",
}

_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")

# Defaults of every client freshlake makes; the cluster's own settings win. With librdkafka's
# 100 ms reconnect backoff a new client's first request waited about 50 ms in a third of tries
# on the embedded broker (0 of 30 with 20 ms); every run and sensor tick makes new clients.
# The backoff still grows to `reconnect.backoff.max.ms` (10 s) while a broker stays down.
CLIENT_DEFAULTS: dict[str, object] = {"reconnect.backoff.ms": 20}


def client_config(
    *,
    bootstrap: str | None = None,
    overrides: Mapping[str, object] | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """librdkafka settings for freshlake's clients: environment, then `overrides`, then `bootstrap`.

    Raises:
        FreshlakeConfigError: no bootstrap address, or security settings that cannot work.
    """
    env = os.environ if env is None else env
    config: dict[str, object] = {
        prop: env[var].strip() for var, prop in ENV_TO_LIBRDKAFKA.items() if env.get(var, "").strip()
    }
    config.update({k: v for k, v in (overrides or {}).items() if v not in (None, "")})
    if bootstrap:
        config["bootstrap.servers"] = bootstrap
    if not config.get("bootstrap.servers"):
        msg = (
            "no Kafka address: set KAFKA_BOOTSTRAP_SERVERS=host:port (or pass --bootstrap), "
            "or start the embedded broker with `freshlake broker` / `make run`"
        )
        raise FreshlakeConfigError(msg)
    protocol = str(config.get("security.protocol", "PLAINTEXT")).upper()
    if protocol not in _SECURITY_PROTOCOLS:
        msg = f"KAFKA_SECURITY_PROTOCOL={protocol!r} is not one of {', '.join(_SECURITY_PROTOCOLS)}"
        raise FreshlakeConfigError(msg)
    if protocol.startswith("SASL") and not config.get("sasl.mechanism"):
        msg = f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_MECHANISM (e.g. PLAIN, SCRAM-SHA-512)"
        raise FreshlakeConfigError(msg)
    return config
