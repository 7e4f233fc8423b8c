from __future__ import annotations

import subprocess
import sys

import numpy as np

from freshlake.embed.models import HashEmbedder


def test_vectors_are_normalized_float32_rows_in_order() -> None:
    embedder = HashEmbedder()
    vectors = embedder.embed(["flight delayed", "", "baggage allowance", "flight delayed"])
    assert vectors.shape == (4, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(vectors[0], vectors[3])
    assert embedder.embed([]).shape == (0, 384)


def test_texts_sharing_words_are_closer() -> None:
    query, related, unrelated = HashEmbedder(dimension=256).embed(
        [
            "is my flight to New York cancelled",
            "Flight UA101 to New York (JFK) is cancelled due to a winter storm",
            "one carry-on bag and one personal item are included in economy",
        ]
    )
    assert query @ related > query @ unrelated + 0.2


def test_same_vectors_in_another_process() -> None:
    code = (
        "from freshlake.embed.models import HashEmbedder;"
        "print(HashEmbedder().embed(['refund for a cancelled flight']).tobytes().hex())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    here = HashEmbedder().embed(["refund for a cancelled flight"]).tobytes().hex()
    assert out.stdout.strip() == here


def test_identity() -> None:
    embedder = HashEmbedder(dimension=64)
    assert embedder.dimension == 64
    assert embedder.model_name == "freshlake/hash-embedder"
    assert embedder.model_version
