"""A token-protected hash-embedder service in its own process, slowed per request so a test can
kill it mid-run and start it again on the same port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

from freshlake.kafka.broker import free_port


class SlowService:
    def __init__(self, *, token: str, delay: float) -> None:
        self.token, self.delay, self.port = token, delay, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "FRESHLAKE_EMBEDDER_TOKEN": self.token}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.prod.slow_embedder", str(self.port), str(self.delay)], env=env
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.url}/health", timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("the test embedder did not start")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def __enter__(self) -> SlowService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def main() -> None:
    from freshlake.embed.models import HashEmbedder
    from freshlake.embed.service import serve

    port, delay = int(sys.argv[1]), float(sys.argv[2])

    class Slow(HashEmbedder):
        def embed(self, texts):
            time.sleep(delay)
            return super().embed(texts)

    serve(port=port, embedder=Slow())


if __name__ == "__main__":
    main()
