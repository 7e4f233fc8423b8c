from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator

import numpy as np
import pytest

from freshlake.embed.factory import embedder_from_env
from freshlake.embed.models import HashEmbedder
from freshlake.embed.service import EmbeddingServiceClient, make_server, serve
from freshlake.errors import FreshlakeConfigError, FreshlakeError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    """`serve` in a thread, as `freshlake embedder` runs it, with the hash embedder."""
    port, ready, stop = free_port(), threading.Event(), threading.Event()
    thread = threading.Thread(
        target=serve,
        kwargs={"port": port, "embedder": HashEmbedder(), "ready": ready, "stop": stop},
        daemon=True,
    )
    thread.start()
    assert ready.wait(10)
    yield f"http://127.0.0.1:{port}"
    stop.set()
    thread.join(10)
    assert not thread.is_alive()


def test_health_describes_the_model(service: str) -> None:
    with urllib.request.urlopen(f"{service}/health", timeout=5) as response:
        health = json.loads(response.read())
    assert health == {
        "model_name": "freshlake/hash-embedder",
        "model_version": "1",
        "dimension": 384,
        "device": "cpu",
        "precision": "float32",
    }


def test_binary_round_trip_equals_direct_embed(service: str) -> None:
    texts = [f"flight UA{i} to JFK is delayed {i} minutes" for i in range(600)]  # 3 requests
    client = EmbeddingServiceClient(url=service)
    got = client.embed(texts)
    np.testing.assert_array_equal(got, HashEmbedder().embed(texts))
    assert got.dtype == np.float32 and got.flags.writeable
    assert client.embed([]).shape == (0, 384)
    assert (client.model_name, client.model_version, client.dimension) == (
        "freshlake/hash-embedder",
        "1",
        384,
    )


def test_raw_response_headers(service: str) -> None:
    request = urllib.request.Request(
        f"{service}/embed", data=json.dumps({"texts": ["a", "b"]}).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        body = response.read()
        assert response.headers["Content-Type"] == "application/octet-stream"
        assert response.headers["X-Rows"] == "2"
        assert response.headers["X-Dimension"] == "384"
        assert response.headers["X-Model-Name"] == "freshlake/hash-embedder"
        assert response.headers["X-Model-Version"] == "1"
    assert len(body) == 2 * 384 * 4


def test_bad_request_is_a_clear_error(service: str) -> None:
    client = EmbeddingServiceClient(url=service)
    with pytest.raises(FreshlakeError, match="answered 400"):
        client._fetch(urllib.request.Request(f"{service}/embed", data=b'{"texts": [1]}', method="POST"))


def test_unreachable_service_says_how_to_fix_it() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(FreshlakeError, match=r"not answering.*freshlake embedder"):
        EmbeddingServiceClient(url=url, timeout=2).embed(["x"])
    with pytest.raises(FreshlakeConfigError, match="FRESHLAKE_EMBEDDER_URL"):
        embedder_from_env(env={"FRESHLAKE_EMBEDDER_URL": url})


def test_factory_uses_the_service_when_configured(service: str) -> None:
    embedder = embedder_from_env(env={"FRESHLAKE_EMBEDDER_URL": service})
    assert isinstance(embedder, EmbeddingServiceClient)
    assert embedder.model_name == "freshlake/hash-embedder"


@pytest.mark.parametrize(
    "env,match",
    [
        ({"FRESHLAKE_EMBED_PRECISION": "fp16"}, "FRESHLAKE_EMBED_PRECISION"),
        ({"FRESHLAKE_EMBED_BATCH_SIZE": "0"}, "FRESHLAKE_EMBED_BATCH_SIZE"),
        ({"FRESHLAKE_EMBED_BATCH_SIZE": "lots"}, "FRESHLAKE_EMBED_BATCH_SIZE"),
        ({"FRESHLAKE_EMBED_DEVICE": "tpu"}, "FRESHLAKE_EMBED_DEVICE"),
        ({"FRESHLAKE_EMBEDDER_URL": "localhost:8765"}, "http://"),
    ],
)
def test_factory_rejects_bad_settings_with_the_fix(env: dict[str, str], match: str) -> None:
    with pytest.raises(FreshlakeConfigError, match=match):
        embedder_from_env(env=env)


def test_factory_falls_back_to_the_model_in_process_without_loading_it() -> None:
    env = {"FRESHLAKE_EMBED_PRECISION": "bfloat16", "FRESHLAKE_EMBED_BATCH_SIZE": "16"}
    embedder = embedder_from_env(env=env)
    assert embedder.model_version.endswith("+bfloat16")
    assert embedder.batch_size == 16  # type: ignore[attr-defined]
    assert embedder._model is None  # type: ignore[attr-defined]  # loads on first embed


def test_busy_port_is_a_config_error() -> None:
    server = make_server(port=0, embedder=HashEmbedder())
    try:
        with pytest.raises(FreshlakeConfigError, match="choose another port"):
            make_server(port=server.server_address[1], embedder=HashEmbedder())
    finally:
        server.server_close()


def test_client_never_imports_torch(service: str) -> None:
    code = (
        "import sys\n"
        "from freshlake.embed.factory import embedder_from_env\n"
        f"e = embedder_from_env(env={{'FRESHLAKE_EMBEDDER_URL': {service!r}}})\n"
        "assert e.embed(['a flight', 'a bag']).shape == (2, 384)\n"
        "heavy = {'torch', 'sentence_transformers', 'transformers'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
