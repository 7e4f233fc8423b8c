"""The packaged all-MiniLM-L6-v2 itself: offline load, meaning, precision, and the service."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from freshlake.embed.chunking import MAX_SEQ_LENGTH, chunk_text
from freshlake.embed.models import SentenceTransformerEmbedder, default_precision
from freshlake.embed.service import EmbeddingServiceClient, make_server

pytestmark = pytest.mark.slow

TEXTS = [
    "Flight UA101 from SFO to JFK is cancelled because of a winter storm in the New York area.",
    "Is my flight to New York cancelled?",
    "Economy passengers may bring one carry-on bag and one personal item.",
    "How many bags can I take on board?",
    "Refunds for cancelled flights are paid to the original form of payment within 7 days.",
]


@pytest.fixture(scope="module")
def fp32() -> SentenceTransformerEmbedder:
    embedder = SentenceTransformerEmbedder(device="cpu", precision="float32")
    embedder.embed(["warm up"])
    return embedder


@pytest.fixture(scope="module")
def service(fp32: SentenceTransformerEmbedder) -> Iterator[str]:
    server = make_server(port=0, embedder=fp32)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_packaged_model_loads_offline(fp32: SentenceTransformerEmbedder) -> None:
    import os

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert fp32.model_name == "sentence-transformers/all-MiniLM-L6-v2"
    assert fp32.model_version.endswith("+float32")
    assert fp32.model.max_seq_length == MAX_SEQ_LENGTH  # what the chunker counts against
    vectors = fp32.embed(TEXTS)
    assert vectors.shape == (len(TEXTS), 384) == (len(TEXTS), fp32.dimension)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_related_sentences_are_closer(fp32: SentenceTransformerEmbedder) -> None:
    v = fp32.embed(TEXTS)
    assert v[1] @ v[0] > v[1] @ v[2] + 0.2  # cancellation question -> cancellation notice
    assert v[3] @ v[2] > v[3] @ v[0] + 0.2  # bags question -> baggage rule


def test_chunks_are_never_truncated_by_the_model(fp32: SentenceTransformerEmbedder) -> None:
    text = " ".join(TEXTS * 30)
    tokenizer = fp32.model.tokenizer
    for chunk in chunk_text(text, max_tokens=254, overlap_tokens=0):
        assert len(tokenizer(chunk)["input_ids"]) <= MAX_SEQ_LENGTH


def test_bfloat16_is_close_to_float32(fp32: SentenceTransformerEmbedder) -> None:
    bf16 = SentenceTransformerEmbedder(device="cpu", precision="bfloat16")
    assert bf16.model_version != fp32.model_version  # different vectors, different version
    texts = [*TEXTS, *chunk_text(" ".join(TEXTS * 20), max_tokens=200, overlap_tokens=32)]
    low, full = bf16.embed(texts), fp32.embed(texts)
    assert low.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(low, axis=1), 1.0, atol=1e-5)
    assert np.einsum("ij,ij->i", low, full).min() >= 0.999


def test_the_service_returns_the_in_process_vectors(service: str, fp32: SentenceTransformerEmbedder) -> None:
    client = EmbeddingServiceClient(url=service)
    assert (client.model_name, client.model_version, client.dimension) == (
        fp32.model_name,
        fp32.model_version,
        384,
    )
    health = client.health()
    assert (health["device"], health["precision"]) == ("cpu", "float32")
    texts = TEXTS * 60  # more than one request
    np.testing.assert_allclose(client.embed(texts), fp32.embed(texts), atol=1e-5)


def test_the_service_runs_from_the_command() -> None:
    """`run_embedder` end to end in a subprocess: ready line, health, SIGTERM exits 0."""
    import signal
    import subprocess
    import sys

    code = (
        "from freshlake.cli.embedder import run_embedder;"
        "raise SystemExit(run_embedder(host='127.0.0.1', port=0, precision=None,"
        " batch_size=8, device='cpu'))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("embedder=http://127.0.0.1:"), proc.stderr.read()
        url, model, precision = line.split()
        assert model == "model=sentence-transformers/all-MiniLM-L6-v2"
        assert precision == f"precision={default_precision()}"
        client = EmbeddingServiceClient(url=url.removeprefix("embedder="))
        assert client.embed(["hello"]).shape == (1, 384)
        assert json.dumps(client.health())
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
