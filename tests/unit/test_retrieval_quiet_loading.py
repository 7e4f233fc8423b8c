"""Loading the model prints no progress bar unless on a terminal or asked for."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from freshlake.embed.models import progress_bars_wanted


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bars_only_on_a_terminal_or_when_asked() -> None:
    assert progress_bars_wanted(env={}, stream=io.StringIO()) is False
    assert progress_bars_wanted(env={}, stream=Terminal()) is True
    assert progress_bars_wanted(env={"FRESHLAKE_PROGRESS_BARS": "1"}, stream=io.StringIO()) is True
    assert progress_bars_wanted(env={"FRESHLAKE_PROGRESS_BARS": "false"}, stream=Terminal()) is False


LOAD = "from freshlake.embed.models import SentenceTransformerEmbedder as E; print(E().embed(['x']).shape)"


@pytest.mark.slow
@pytest.mark.parametrize(("asked", "shown"), [(None, False), ("1", True)])
def test_the_real_model_loads_quietly(asked: str | None, shown: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FRESHLAKE_PROGRESS_BARS"}
    if asked is not None:
        env["FRESHLAKE_PROGRESS_BARS"] = asked
    done = subprocess.run(
        [sys.executable, "-c", LOAD], env=env, capture_output=True, text=True, timeout=240, check=True
    )
    assert "(1, 384)" in done.stdout
    assert ("Loading weights" in done.stderr) is shown, done.stderr[-2000:]
