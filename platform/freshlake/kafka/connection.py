"""Kafka client settings from the environment: one place maps KAFKA_* variables to librdkafka.

A managed cluster (MSK, Confluent Cloud) needs KAFKA_SECURITY_PROTOCOL=SASL_SSL,
KAFKA_SASL_MECHANISM=SCRAM-SHA-512 (or PLAIN), KAFKA_SASL_USERNAME/PASSWORD and, for a private
CA, KAFKA_SSL_CA_LOCATION; hostname verification stays on (librdkafka's default).
"""

from __future__ import annotations

import os
import time
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
    check_security(config)
    return config


_AUTH, _TLS, _DROPPED = (
    "SASL authentication error",
    "certificate verify failed",
    "Disconnected while requesting",
)
_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI")


def check_security(config: Mapping[str, object]) -> None:
    """Refuse SASL/SSL settings that cannot work, before any connection is tried.

    Raises:
        FreshlakeConfigError: naming the KAFKA_* variable to fix.
    """
    protocol = str(config.get("security.protocol", "PLAINTEXT")).upper()
    if protocol.startswith("SASL"):
        mechanism = str(config.get("sasl.mechanism", "")).upper()
        if mechanism not in _SASL_MECHANISMS:
            msg = f"KAFKA_SASL_MECHANISM={mechanism!r} is not one of {', '.join(_SASL_MECHANISMS)}"
            raise FreshlakeConfigError(msg)
        if mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
            missing = [
                var
                for var, prop in (
                    ("KAFKA_SASL_USERNAME", "sasl.username"),
                    ("KAFKA_SASL_PASSWORD", "sasl.password"),
                )
                if not config.get(prop)
            ]
            if missing:
                msg = f"KAFKA_SASL_MECHANISM={mechanism} needs {' and '.join(missing)}"
                raise FreshlakeConfigError(msg)
    if protocol.endswith("SSL"):
        for var, prop in (
            ("KAFKA_SSL_CA_LOCATION", "ssl.ca.location"),
            ("KAFKA_SSL_CERTIFICATE_LOCATION", "ssl.certificate.location"),
            ("KAFKA_SSL_KEY_LOCATION", "ssl.key.location"),
        ):
            location = config.get(prop)
            if location and location != "probe" and not os.path.isfile(str(location)):
                msg = f"{var}={location!r}: no such file; point it at the PEM file (or unset it)"
                raise FreshlakeConfigError(msg)


def explain_failure(config: Mapping[str, object], *, timeout: float = 5.0) -> str | None:
    """Why a client with `config` cannot talk to the cluster, in words that name the fix: a
    rejected SASL login or an untrusted certificate. None when no such cause shows within
    `timeout` (then the broker is simply not answering). librdkafka backs off between tries
    (`reconnect.backoff.ms` growing to `reconnect.backoff.max.ms`), so this is bounded too."""
    from confluent_kafka.admin import AdminClient

    seen: list[str] = []
    admin = AdminClient(
        {"log_level": 0, **CLIENT_DEFAULTS, **config, "error_cb": lambda err: seen.append(str(err))}
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # librdkafka connects on its own; poll serves error_cb
        admin.poll(0.1)
        if any(_AUTH in s or _TLS in s or _DROPPED in s for s in seen):
            break
    else:
        try:
            admin.list_topics(timeout=0.5)
        except Exception as exc:
            seen.append(str(exc))
        else:
            return None
    text = " ".join(seen)
    where = config.get("bootstrap.servers")
    user = config.get("sasl.username")
    if _AUTH in text:
        return (
            f"the Kafka cluster at {where} rejected SASL user {user!r} "
            f"({config.get('sasl.mechanism')}): check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
        )
    if _TLS in text:
        ca = config.get("ssl.ca.location")
        where_ca = (
            f"KAFKA_SSL_CA_LOCATION={ca}" if ca else "the system CA store (KAFKA_SSL_CA_LOCATION unset)"
        )
        return (
            f"the TLS certificate of the Kafka cluster at {where} is not trusted by {where_ca}: "
            "set KAFKA_SSL_CA_LOCATION to the PEM of the CA that signed it"
        )
    if _DROPPED in text and not str(config.get("security.protocol", "")).upper().endswith("SSL"):
        return (
            f"the Kafka cluster at {where} dropped a plaintext connection: it may need TLS; "
            "set KAFKA_SECURITY_PROTOCOL=SASL_SSL (or SSL)"
        )
    return None
