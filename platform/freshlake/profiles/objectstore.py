"""S3 on loopback: moto's server mode, and a front that can make it unreachable on demand.

delta-rs 1.x commits to S3 with conditional puts (`If-None-Match: *` on the next log entry),
the default since 0.23 when no locking provider is set, so concurrent writers are safe without
DynamoDB on any store that honours it: AWS S3 (since 2024-08), and moto, which this module
checks at start. LanceDB's commits use the same put-if-absent. Storage options are passed to
both explicitly (`FRESHLAKE_STORAGE_OPTIONS`), never through AWS_* process variables.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from freshlake.errors import FreshlakeConfigError
from freshlake.procs import die_with_parent

log = logging.getLogger(__name__)

ACCESS_KEY, SECRET_KEY, REGION = "freshlake", "freshlake-secret", "us-east-1"
READY_TIMEOUT_S = 30.0


def storage_options(
    *, endpoint: str, retry_timeout_s: float = 60.0, timeout_s: float = 10.0
) -> dict[str, str]:
    """delta-rs / LanceDB / polars options for an S3-compatible endpoint.

    Each request is retried up to object_store's default 10 times, each wait drawn from
    [3.5 s, 3 x the last) and capped at 5 s: at least 35 s, never past `retry_timeout_s`, so a
    30 s outage is ridden out inside the request (measured: a 0.5 s floor failed a commit in a
    15 s outage). A store that stays down fails the operation, naming the URL. Readers a person
    waits on (`freshlake status`) replace these with a short budget
    (`freshlake.status.probe_storage_options`). No `max_retries` key: polars claims that name
    for its own setting and refuses the string delta-rs needs."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": REGION,
        "AWS_ALLOW_HTTP": "true" if endpoint.startswith("http://") else "false",
        # Put-if-absent on commits: safe concurrent writers without a DynamoDB lock.
        "aws_conditional_put": "etag",
        "timeout": f"{timeout_s:g}s",
        "connect_timeout": "2s",
        "retry_timeout": f"{retry_timeout_s:g}s",
        "backoff_config.init_backoff": "3500ms",
        "backoff_config.max_backoff": "5s",
        "backoff_config.base": "3",
    }


@dataclass(kw_only=True)
class ObjectStore:
    """A running moto server; `endpoint` is its S3 address."""

    host: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def create_bucket(self, name: str) -> None:
        client = self.client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=name)

    def check_conditional_put(self, bucket: str) -> None:
        """Refuse a store that ignores If-None-Match: concurrent commits would overwrite."""
        client, key = self.client(), "_freshlake/conditional-put-probe"
        client.put_object(Bucket=bucket, Key=key, Body=b"1")
        try:
            client.put_object(Bucket=bucket, Key=key, Body=b"2", IfNoneMatch="*")
        except client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
                return
            raise
        msg = (
            f"the object store at {self.endpoint} ignores If-None-Match: concurrent Delta commits "
            "would overwrite each other; use a store with conditional writes or a DynamoDB lock "
            "(AWS_S3_LOCKING_PROVIDER=dynamodb)"
        )
        raise FreshlakeConfigError(msg)

    def is_running(self) -> bool:
        return self.process.poll() is None

    def stop(self, *, timeout: float = 5.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)


def start_object_store(*, log_path: Path, host: str = "127.0.0.1", port: int | None = None) -> ObjectStore:
    """Start `moto.server` (S3 in memory: it lives as long as the process) and wait for it."""
    from freshlake.kafka.broker import free_port

    port = port or free_port(host)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent(sig=15),
        )
    store = ObjectStore(host=host, port=port, process=process, log_path=log_path)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            msg = f"the object store (moto) exited at start with code {process.returncode}: see {log_path}"
            raise FreshlakeConfigError(msg)
        try:
            urllib.request.urlopen(f"{store.endpoint}/moto-api/", timeout=1).close()
            return store
        except urllib.error.HTTPError:
            return store
        except OSError:
            time.sleep(0.1)
    store.stop()
    msg = f"the object store (moto) did not answer within {READY_TIMEOUT_S:.0f}s: see {log_path}"
    raise FreshlakeConfigError(msg)


@dataclass(kw_only=True)
class OutageFront:
    """A TCP front for a service (`freshlake.profiles.outage`, its own process so no caller's
    GIL slows it): `cut()` refuses and resets every connection, `restore()` serves again on the
    same port. Clients point at `endpoint`; the service behind keeps its state."""

    target: tuple[str, int]
    host: str = "127.0.0.1"
    port: int = 0
    log_path: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> OutageFront:
        from freshlake.kafka.broker import free_port

        self.port = self.port or free_port(self.host)
        err = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "freshlake.profiles.outage",
                    "--listen",
                    f"{self.host}:{self.port}",
                    "--target",
                    f"{self.target[0]}:{self.target[1]}",
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                preexec_fn=die_with_parent(sig=15),
            )
        finally:
            if self.log_path:
                err.close()
        self._expect("front ready")
        return self

    def _expect(self, text: str) -> None:
        assert self.process is not None and self.process.stdout is not None
        line = self.process.stdout.readline().decode()
        if text not in line:
            msg = f"the outage front did not answer {text!r} (got {line!r}): see {self.log_path}"
            raise FreshlakeConfigError(msg)

    def _send(self, command: str) -> None:
        assert self.process is not None and self.process.stdin is not None, "start() first"
        self.process.stdin.write(f"{command}\n".encode())
        self.process.stdin.flush()
        self._expect(f"ok {command}")

    def cut(self) -> None:
        """From now on connections are refused and open ones reset."""
        self._send("cut")

    def restore(self) -> None:
        self._send("restore")

    def stop(self, *, timeout: float = 5.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout)
