"""`freshlake dev`: the embedded default on one machine, and nothing left behind when it stops.

Broker (child, dies with us), warm embedder, `dagster dev` (webserver + daemon, in its own process
group so the whole group is stopped together) and an optional producer command. Every process
gets the streams file as `FRESHLAKE_STREAMS`, so the code location, the sensors and the CLI read
the same streams. Their output goes to `$FRESHLAKE_HOME/logs/<name>.log`; the terminal gets the
up line, one line per failed run or page (`freshlake.devwatch`) and the stop line. The addresses
chosen are in `$FRESHLAKE_HOME/dev.json` while it runs, for the CLI.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping, MutableMapping, Sequence
from pathlib import Path
from typing import Any

from freshlake.config import STREAMS_ENV, StreamsConfig
from freshlake.errors import FreshlakeConfigError, FreshlakeError
from freshlake.procs import die_with_parent, stop_group, stop_process

log = logging.getLogger(__name__)

UI_READY_TIMEOUT_S = 120.0
EMBEDDER_READY_TIMEOUT_S = 90.0
DAGSTER_STOP_TIMEOUT_S = 20.0
PRODUCER_STOP_TIMEOUT_S = 10.0
DEV_STATE_FILE = "dev.json"
NO_BROKER = (
    "start the platform with `make run` or `freshlake dev` (the CLI then finds its broker in "
    "$FRESHLAKE_HOME/dev.json), or set KAFKA_BOOTSTRAP_SERVERS=host:port / pass --bootstrap to "
    "reach a broker of your own"
)
# What the CLI takes from a running `freshlake dev` when no variable says otherwise.
DEV_STATE_ENV = {
    "bootstrap": "KAFKA_BOOTSTRAP_SERVERS",
    "embedder_url": "FRESHLAKE_EMBEDDER_URL",
    "dagster_home": "DAGSTER_HOME",
    "streams": STREAMS_ENV,
}


def dev_state_path(home: Path) -> Path:
    return home / DEV_STATE_FILE


def write_dev_state(home: Path, state: Mapping[str, Any]) -> Path:
    """`$FRESHLAKE_HOME/dev.json`, replaced atomically: a reader sees the old file or the new one."""
    path = dev_state_path(home)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({**state, "pid": os.getpid()}, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def read_dev_state(home: Path) -> dict[str, Any] | None:
    """The addresses of the `freshlake dev` running on `home`, or None when none runs (no file,
    an unreadable one, or one left by a process that is gone, e.g. after SIGKILL)."""
    try:
        state = json.loads(dev_state_path(home).read_text())
        pid = int(state["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        pass
    return state


def apply_dev_state(env: MutableMapping[str, str], *, home: Path) -> dict[str, Any] | None:
    """Fill the variables that are unset in `env` from the running `freshlake dev`, so the CLI
    finds its broker, warm embedder, Dagster instance and streams file. Set variables win.

    Under `--profile prod` that includes the profile's settings (SASL credentials, CA, object
    store, embedder token), kept beside dev.json in a file only the owner can read."""
    state = read_dev_state(home)
    if state is None:
        return None
    profile_env: dict[str, str] = {}
    if state.get("profile_env"):
        try:
            profile_env = json.loads(Path(state["profile_env"]).read_text())
        except (OSError, ValueError):
            profile_env = {}
    for key, var in DEV_STATE_ENV.items():
        if state.get(key) and not (env.get(var) or "").strip():
            env[var] = str(state[key])
    for var, value in profile_env.items():
        if var != "FRESHLAKE_HOME" and not (env.get(var) or "").strip():
            env[var] = value
    return state


def _start_profile(profile: str, *, home: Path) -> tuple[Any, dict[str, str]]:
    """(the started stack or None, its settings for every child). `prod`: the production-shaped
    stack of `freshlake.profiles.prod` (SASL_SSL broker on durable storage, Postgres-backed
    Dagster, Delta and LanceDB on S3, a token-guarded embedder)."""
    if profile == "embedded":
        return None, {}
    from freshlake.profiles.prod import ProdStack

    stack = ProdStack(home=home / "prod").start()
    settings = {k: v for k, v in stack.env().items() if k != "FRESHLAKE_HOME"}
    path = home / "prod" / "env.json"
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(json.dumps(settings, indent=2) + "\n")
    return stack, {**settings, "FRESHLAKE_PROFILE_ENV": str(path)}


def run_dev(
    *,
    streams: StreamsConfig,
    ui_port: int = 3000,
    broker_port: int | None = None,
    producer: Sequence[str] | None = None,
    workspace: str = "workspace.yaml",
    profile: str = "embedded",
) -> int:
    """Run everything until SIGINT/SIGTERM.

    Args:
        streams: their topics are created; their file is every child's `FRESHLAKE_STREAMS`.
        producer: a command (argv) started once the embedder answers, with the same environment
            as Dagster's (`KAFKA_BOOTSTRAP_SERVERS`, `FRESHLAKE_STREAMS`); stopped with SIGINT.
        profile: `embedded` (the broker on `$FRESHLAKE_HOME/broker`, SQLite Dagster, local disk) or `prod`.
    """
    from freshlake.dagster_instance import cancel_orphaned_runs, write_instance_config
    from freshlake.kafka.broker import EmbeddedBroker, free_port, port_is_free, start_broker
    from freshlake.kafka.connection import client_config
    from freshlake.kafka.topics import check_reachable, ensure_topics
    from freshlake.settings import bootstrap_servers, data_paths

    workspace_path = Path(workspace).resolve()
    if not workspace_path.is_file():
        msg = (
            f"no {workspace} in {Path.cwd()}: run from your project folder "
            "(`freshlake init DIR` writes one) or pass --workspace"
        )
        raise FreshlakeConfigError(msg)
    if not port_is_free(host="127.0.0.1", port=ui_port):
        msg = f"port {ui_port} is busy (another Dagster UI?): stop it or pass --port"
        raise FreshlakeConfigError(msg)

    paths = data_paths().ensure()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    broker: EmbeddedBroker | None = None
    embedder: subprocess.Popen[bytes] | None = None
    dagster: subprocess.Popen[bytes] | None = None
    producing: subprocess.Popen[bytes] | None = None
    state_path: Path | None = None
    watcher = None
    logs = paths.logs
    started = time.time()
    stack = None
    try:
        stack, profile_env = _start_profile(profile, home=paths.home)
        os.environ.update(profile_env)  # this process's clients (topics, watcher) use them too
        dagster_home = Path(os.environ["DAGSTER_HOME"]) if stack is not None else paths.dagster
        if stack is None:
            write_instance_config(dagster_home=dagster_home)
        bootstrap = bootstrap_servers()
        if bootstrap is None:
            broker = start_broker(port=broker_port, log_path=paths.logs / "broker.log", data_dir=paths.broker)
            bootstrap = broker.bootstrap
            if stack is None and (orphans := cancel_orphaned_runs(dagster_home=dagster_home)):
                print(f"canceled {orphans} runs the previous session left queued or running", flush=True)
        config = client_config(bootstrap=bootstrap)
        check_reachable(config)
        ensure_topics(config, topics=streams.topics)

        embedder_url = os.environ.get("FRESHLAKE_EMBEDDER_URL")
        if not embedder_url:  # the warm model: runs embed through it instead of loading torch
            embed_port = free_port()
            embedder_url = f"http://127.0.0.1:{embed_port}"
            embedder = subprocess.Popen(
                [sys.executable, "-m", "freshlake.cli", "embedder", "--port", str(embed_port)],
                stdin=subprocess.DEVNULL,
                **_log_to(logs, "embedder"),
                preexec_fn=die_with_parent(sig=signal.SIGTERM),
            )
        env = {
            **os.environ,
            "FRESHLAKE_EMBEDDER_URL": embedder_url,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            STREAMS_ENV: str(streams.path),
            "FRESHLAKE_HOME": str(paths.home),
            "DAGSTER_HOME": str(dagster_home),
            "HF_HUB_OFFLINE": "1",
            # Dagster evaluates freshness every 30 s by default; pages then lag the SLO by up to
            # 45 s (plus the alert sensor's 15 s). The embedded default answers faster.
            "FRESHNESS_DAEMON_INTERVAL_SECONDS": os.environ.get("FRESHNESS_DAEMON_INTERVAL_SECONDS", "10"),
        }
        dagster = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dagster",
                "dev",
                "-w",
                str(workspace_path),
                "-h",
                "127.0.0.1",
                "-p",
                str(ui_port),
            ],
            cwd=workspace_path.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            **_log_to(logs, "dagster"),  # its event stream, warnings and tracebacks: a file
            start_new_session=True,  # its own group: we stop webserver + daemon together
            preexec_fn=die_with_parent(sig=signal.SIGINT),  # and it stops cleanly if we die
        )
        _wait_for_http(url=f"{embedder_url}/health", timeout=EMBEDDER_READY_TIMEOUT_S, stop=stop)
        if producer and not stop.is_set():
            producing = _start_producer(producer, env=env, logs=logs)
        url = f"http://127.0.0.1:{ui_port}"
        ui_up = _wait_for_http(
            url=f"{url}/server_info", timeout=UI_READY_TIMEOUT_S, stop=stop, process=dagster
        )
        if ui_up:
            state_path = write_dev_state(
                paths.home,
                {
                    "bootstrap": bootstrap,
                    "embedder_url": embedder_url,
                    "ui_url": url,
                    "dagster_home": str(dagster_home),
                    "streams": str(streams.path),
                    "logs": str(paths.logs),
                    "profile": profile,
                    "profile_env": os.environ.get("FRESHLAKE_PROFILE_ENV", ""),
                },
            )
            hint = (
                "Enter: a status line, Ctrl-C stops everything"
                if sys.stdin.isatty()
                else "Ctrl-C stops everything"
            )
            print(
                f"freshlake is up: Dagster UI {url}  broker {bootstrap}  embedder {embedder_url}"
                f"  data {paths.home}  logs {paths.logs}  ({hint})",
                flush=True,
            )
            from freshlake.devwatch import Watcher

            watcher = Watcher(
                dagster_home=dagster_home,
                streams=streams.streams,
                ui_url=url,
                say=_say,
                since=started,
                logs=paths.logs,
            )
            threading.Thread(target=watcher.run, args=(stop,), name="devwatch", daemon=True).start()
            if sys.stdin.isatty():
                threading.Thread(
                    target=watcher.on_enter, args=(stop, sys.stdin), name="devstatus", daemon=True
                ).start()
        producer_ended = False
        while not stop.is_set() and dagster.poll() is None:
            if producing is not None and not producer_ended and producing.poll() is not None:
                producer_ended = True  # a --count producer ends by design; the platform keeps going
                log.log(
                    logging.WARNING if producing.returncode else logging.INFO,
                    "producer exited with code %s (its output: %s)",
                    producing.returncode,
                    logs / "producer.log",
                )
            stop.wait(0.5)
        if dagster.poll() is not None and not stop.is_set():
            path = logs / "dagster.log"
            msg = f"dagster dev exited with code {dagster.returncode}; its log {path} ends:\n{_tail(path)}"
            raise FreshlakeError(msg)
        return 0
    finally:
        stop.set()
        if watcher is not None and dagster is not None and dagster.poll() is None:
            print(
                "freshlake stopping: cancelling runs, then Dagster, the embedder and the broker", flush=True
            )
            try:
                if line := watcher.cancel_runs():
                    print(line, flush=True)
            except Exception as exc:  # stopping must go on
                log.debug("cancelling runs failed: %s", exc)
        if dagster is not None:
            stop_group(dagster, sig=signal.SIGINT, timeout=DAGSTER_STOP_TIMEOUT_S)
        if producing is not None:
            stop_process(producing, sig=signal.SIGINT, timeout=PRODUCER_STOP_TIMEOUT_S)
        if embedder is not None:
            stop_process(embedder, sig=signal.SIGINT, timeout=10)
        if broker is not None:
            broker.stop()
        if stack is not None:
            stack.stop()
        if state_path is not None:
            state_path.unlink(missing_ok=True)
        print("freshlake stopped", flush=True)


def _say(line: str) -> None:
    print(line, flush=True)


def _log_to(logs: Path, name: str) -> dict[str, Any]:
    """Popen arguments sending stdout and stderr to `logs/<name>.log` (appended, marked per start)."""
    path = logs / f"{name}.log"
    handle = path.open("ab")
    handle.write(f"\n==== freshlake dev started {time.strftime('%Y-%m-%d %H:%M:%S')} ====\n".encode())
    handle.flush()
    return {"stdout": handle, "stderr": subprocess.STDOUT}


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _start_producer(argv: Sequence[str], *, env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            **_log_to(logs, "producer"),
            preexec_fn=die_with_parent(sig=signal.SIGTERM),
        )
    except OSError as exc:
        msg = f"cannot start the producer {shlex.join(argv)!r}: {exc.strerror}; check --producer"
        raise FreshlakeConfigError(msg) from None


def _wait_for_http(
    *,
    url: str,
    timeout: float,
    stop: threading.Event,
    process: subprocess.Popen[bytes] | None = None,
) -> bool:
    """Poll `url` until it answers 200, `stop` is set, `process` exits or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.is_set():
        if process is not None and process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        stop.wait(0.5)
    log.warning("not answering yet: %s", url)
    return False
