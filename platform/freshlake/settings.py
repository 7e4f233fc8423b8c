"""Where freshlake keeps its data and how it reaches Kafka, read from the environment on demand."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOME = ".freshlake"


@dataclass(frozen=True, kw_only=True)
class DataPaths:
    """The data root and its stores: Delta tables, LanceDB, the Dagster instance, the broker's log."""

    home: Path

    @property
    def delta(self) -> Path:
        return self.home / "delta"

    @property
    def lance(self) -> Path:
        return self.home / "lance"

    @property
    def dagster(self) -> Path:
        return self.home / "dagster"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def broker(self) -> Path:
        """The embedded broker's topics and offsets (`freshlake.kafka.logstore`)."""
        return self.home / "broker"

    def ensure(self) -> DataPaths:
        for path in (self.delta, self.lance, self.dagster, self.logs):
            path.mkdir(parents=True, exist_ok=True)
        return self


def data_paths(*, env: Mapping[str, str] | None = None) -> DataPaths:
    """Resolve `$FRESHLAKE_HOME` (default `./.freshlake`) to an absolute path."""
    env = os.environ if env is None else env
    return DataPaths(home=Path(env.get("FRESHLAKE_HOME") or DEFAULT_HOME).resolve())


def bootstrap_servers(*, env: Mapping[str, str] | None = None) -> str | None:
    """`$KAFKA_BOOTSTRAP_SERVERS`, or None when freshlake should use its embedded broker."""
    env = os.environ if env is None else env
    value = (env.get("KAFKA_BOOTSTRAP_SERVERS") or "").strip()
    return value or None


def store_roots(*, env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(Delta root URI, LanceDB root URI): `$FRESHLAKE_DELTA_URI` / `$FRESHLAKE_LANCE_URI`
    (local paths or s3://, gs://, az:// URIs), else under the data root."""
    env = os.environ if env is None else env
    paths = data_paths(env=env)
    delta = (env.get("FRESHLAKE_DELTA_URI") or "").strip() or str(paths.delta)
    lance = (env.get("FRESHLAKE_LANCE_URI") or "").strip() or str(paths.lance)
    return delta.rstrip("/"), lance.rstrip("/")


STORAGE_OPTIONS_ENV = "FRESHLAKE_STORAGE_OPTIONS"


def storage_options(*, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """`$FRESHLAKE_STORAGE_OPTIONS`: a JSON object of delta-rs / LanceDB storage options for
    object-store roots (endpoint, credentials, `aws_conditional_put`, retry settings); {} unset."""
    import json

    from freshlake.errors import FreshlakeConfigError

    env = os.environ if env is None else env
    raw = (env.get(STORAGE_OPTIONS_ENV) or "").strip()
    if not raw:
        return {}
    try:
        options = json.loads(raw)
    except ValueError as exc:
        example = '{"AWS_REGION": "eu-west-1"}'
        msg = f"{STORAGE_OPTIONS_ENV} is not JSON ({exc}): set it to an object, e.g. {example}"
        raise FreshlakeConfigError(msg) from None
    if not isinstance(options, dict):
        msg = f"{STORAGE_OPTIONS_ENV} must be a JSON object of option -> value, got {type(options).__name__}"
        raise FreshlakeConfigError(msg)
    return {str(k): str(v) for k, v in options.items()}
