"""Topic administration: explicit partition counts, and existence checks before consuming."""

from __future__ import annotations

import time
from collections.abc import Mapping

from freshlake.errors import FreshlakeConfigError


def admin_client(config: Mapping[str, object]):
    from confluent_kafka.admin import AdminClient

    from freshlake.kafka.connection import CLIENT_DEFAULTS

    return AdminClient({"log_level": 0, **CLIENT_DEFAULTS, **config})


def cluster_metadata(config: Mapping[str, object], *, timeout: float = 5.0):
    """All topics' metadata from one request (naming no topic, so nothing is auto-created), or
    a config error that names the address and the fix."""
    try:
        return admin_client(config).list_topics(timeout=timeout)
    except Exception as exc:
        failure = type(exc).__name__
    # Outside the except block: confluent-kafka 2.16 leaks the exception being handled when a
    # Kafka call raises during it, and with it the first client (alive, reconnecting, forever).
    from freshlake.kafka.connection import explain_failure

    if why := explain_failure(config, timeout=2.0):  # a rejected login or an untrusted cert
        raise FreshlakeConfigError(why)
    msg = (
        f"no Kafka broker answers at {config.get('bootstrap.servers')} within {timeout:.0f}s: check "
        f"KAFKA_BOOTSTRAP_SERVERS (and security settings), or unset it to use the embedded broker ({failure})"
    )
    raise FreshlakeConfigError(msg)


def check_reachable(config: Mapping[str, object], *, timeout: float = 5.0) -> str:
    """Return the cluster id, or fail with a message that names the address and the fix."""
    return str(cluster_metadata(config, timeout=timeout).cluster_id)


def existing_topics(config: Mapping[str, object], *, timeout: float = 5.0) -> dict[str, int]:
    """Topic name -> partition count, from one metadata request (which auto-creates nothing)."""
    metadata = admin_client(config).list_topics(timeout=timeout)
    return {name: len(t.partitions) for name, t in metadata.topics.items() if t.error is None}


def ensure_topics(
    config: Mapping[str, object], *, topics: Mapping[str, int], timeout: float = 10.0
) -> dict[str, int]:
    """Create the missing `topics` (name -> partitions); existing ones are left as they are."""
    from confluent_kafka.admin import NewTopic

    check_reachable(config, timeout=timeout)
    have = existing_topics(config, timeout=timeout)
    missing = [NewTopic(name, n) for name, n in topics.items() if name not in have]
    if missing:
        admin = admin_client(config)  # keep a reference: the futures die with the handle
        for name, future in admin.create_topics(missing).items():
            try:
                future.result(timeout=timeout)
            except Exception as exc:
                if "already exists" not in str(exc).lower():
                    msg = f"could not create topic {name!r}: {exc}"
                    raise FreshlakeConfigError(msg) from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        have = existing_topics(config, timeout=timeout)
        if all(name in have for name in topics):
            return {name: have[name] for name in topics}
        time.sleep(0.1)
    msg = f"topics {sorted(set(topics) - set(have))} did not appear in metadata in {timeout:.0f}s"
    raise FreshlakeConfigError(msg)
