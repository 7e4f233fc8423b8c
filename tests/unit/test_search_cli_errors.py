"""`freshlake search` mistakes are one line and exit 2, never a traceback: a bad `--where`, a
field one of the searched streams lacks, an empty query (LanceDB tables on tmp_path, hash
embedder, full-text mode so no model loads)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from freshlake.embed.models import HashEmbedder
from tests.demo_streams import EXAMPLE_FILE
from tests.retrieval_tables import demo_tables

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("search") / "home"
    demo_tables(str(home / "lance"), HashEmbedder(dimension=384))
    return home


def search(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "FRESHLAKE_"))}
    return subprocess.run(
        [sys.executable, "-m", "freshlake.cli", "search", *args, "--mode", "fts"],
        cwd=ROOT,
        env={**env, "FRESHLAKE_HOME": str(home), "FRESHLAKE_STREAMS": str(EXAMPLE_FILE)},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["refund", "--where", "status = = 1"], "cannot be evaluated"),
        (["refund", "--where", "nope = 1", "--stream", "flights"], "No field named nope"),
        (["refund", "--where", "status = 'cancelled'"], "--stream NAME"),  # policies has no status
        (["   "], "the query is empty"),
    ],
)
def test_mistakes_are_one_line(home: Path, args: list[str], says: str) -> None:
    done = search(home, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("freshlake search: "), done.stderr
    assert says in lines[0] and "Traceback" not in done.stderr


def test_a_field_of_the_searched_stream_works(home: Path) -> None:
    done = search(home, "cancelled", "--where", "status = 'cancelled'", "--stream", "flights")
    assert done.returncode == 0, done.stderr
    assert "[flights] UA1" in done.stdout
