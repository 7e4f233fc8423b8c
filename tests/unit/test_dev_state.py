"""The CLI finds what `freshlake dev` started through `$FRESHLAKE_HOME/dev.json`; set variables
win; a file left by a dead process is ignored; without any broker the advice is one way out, and
`freshlake status` against a broker that is down answers within ~6 s whatever the stream count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from freshlake.dev import apply_dev_state, read_dev_state, write_dev_state
from freshlake.kafka.broker import free_port

ROOT = Path(__file__).resolve().parents[2]
STATE = {
    "bootstrap": "127.0.0.1:19092",
    "embedder_url": "http://127.0.0.1:18000",
    "ui_url": "http://127.0.0.1:3000",
    "dagster_home": "/x/dagster",
    "streams": "/x/streams.yaml",
}
MANY_STREAMS = "streams:\n" + "".join(
    f"  - name: s{i}\n    topic: t{i}\n    key_field: id\n    order_by: [v]\n"
    "    fields: {id: string, v: int}\n"
    for i in range(6)
)


def test_state_is_written_atomically_and_read_back(tmp_path: Path) -> None:
    path = write_dev_state(tmp_path, STATE)
    assert path == tmp_path / "dev.json"
    assert [p.name for p in tmp_path.iterdir()] == ["dev.json"]  # no temporary file left
    state = read_dev_state(tmp_path)
    assert state is not None
    assert state["pid"] == os.getpid()
    assert {k: state[k] for k in STATE} == STATE


def test_unset_variables_come_from_the_running_dev_set_ones_win(tmp_path: Path) -> None:
    write_dev_state(tmp_path, STATE)
    env = {"KAFKA_BOOTSTRAP_SERVERS": "mine:9092", "DAGSTER_HOME": ""}
    apply_dev_state(env, home=tmp_path)
    assert env == {
        "KAFKA_BOOTSTRAP_SERVERS": "mine:9092",
        "FRESHLAKE_EMBEDDER_URL": "http://127.0.0.1:18000",
        "DAGSTER_HOME": "/x/dagster",
        "FRESHLAKE_STREAMS": "/x/streams.yaml",
    }


def test_a_file_left_by_a_dead_dev_is_ignored(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "dev.json").write_text(json.dumps({**STATE, "pid": dead.pid}))
    env: dict[str, str] = {}
    assert apply_dev_state(env, home=tmp_path) is None
    assert env == {}
    (tmp_path / "dev.json").write_text("{not json")
    assert read_dev_state(tmp_path) is None


def _status(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    streams = tmp_path / "streams.yaml"
    streams.write_text(MANY_STREAMS)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "FRESHLAKE_", "DAGSTER_HOME"))}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "freshlake.cli", "status", "--streams", str(streams)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**base, "FRESHLAKE_HOME": str(tmp_path / "home"), **env},
    )
    return done, time.monotonic() - started


def test_no_broker_anywhere_is_one_way_out(tmp_path: Path) -> None:
    done, _ = _status(tmp_path, {})
    assert done.returncode == 1, done.stderr
    assert "make run" in done.stderr and "KAFKA_BOOTSTRAP_SERVERS" in done.stderr
    assert "unset" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_status_with_the_broker_down_answers_within_6s(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    done, seconds = _status(tmp_path, {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"})
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert len([line for line in lines if line.startswith("s")]) >= 6
    assert f"no Kafka broker answers at 127.0.0.1:{port}" in done.stdout
    assert "unset" not in done.stdout and "make run" in done.stdout
    assert seconds < 8.0, seconds  # ~5 s budget + interpreter start-up on a 2-core machine
    # the dev.json of a dead stack is not an address: the same down message, not a stale port
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "dev.json").write_text(json.dumps({**STATE, "pid": 2**22 + 7}))
    done, _ = _status(tmp_path, {})
    assert "no running `freshlake dev`" in done.stderr
