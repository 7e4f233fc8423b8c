from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime

import pytest

from examples.flight_assistant.world import DemoWorld
from freshlake.embed.chunking import (
    MAX_CHUNK_TOKENS,
    ChunkerSettings,
    chunk_spans,
    chunk_text,
    count_tokens,
)


def policy_bodies(n: int = 4) -> list[str]:
    world = DemoWorld(seed=3, start=datetime(2026, 1, 1, tzinfo=UTC), streams=["policies"])
    messages = (m for m in world.messages() if m.value is not None)
    return [json.loads(next(messages).value)["body"] for _ in range(n)]


@pytest.mark.parametrize("max_tokens,overlap", [(200, 32), (64, 16), (254, 0), (20, 5)])
def test_every_chunk_fits_and_the_text_is_covered(max_tokens: int, overlap: int) -> None:
    for body in policy_bodies():
        assert count_tokens(body) > 254  # long enough to need splitting
        spans = chunk_spans(body, max_tokens=max_tokens, overlap_tokens=overlap)
        assert len(spans) > 1
        for start, end in spans:
            assert count_tokens(body[start:end]) <= max_tokens
        assert spans[0][0] == 0
        assert spans[-1][1] == len(body.rstrip())
        for (_, prev_end), (start, _) in itertools.pairwise(spans):
            assert not body[prev_end:start].strip()  # no gap: every word is in some chunk
            if overlap:
                assert start < prev_end  # and consecutive chunks share text


def test_chunks_are_slices_of_the_original_text() -> None:
    text = "Ümlaut café: ROUND-TRIP fares (economy) are refundable.\n\n" * 40
    spans = chunk_spans(text, max_tokens=50, overlap_tokens=10)
    assert chunk_text(text, max_tokens=50, overlap_tokens=10) == [text[s:e] for s, e in spans]
    for chunk in chunk_text(text, max_tokens=50, overlap_tokens=10):
        assert chunk in text  # case, accents and punctuation kept: no detokenization
        assert chunk == chunk.strip()


def test_chunks_end_at_sentence_boundaries_when_they_can() -> None:
    body = policy_bodies(1)[0]
    chunks = chunk_text(body)
    assert all(c.endswith((".", "!", "?")) for c in chunks)
    assert all(c[0].isupper() for c in chunks)  # and start at one, in the overlap


def test_short_text_is_one_chunk_and_blank_text_none() -> None:
    assert chunk_text("  Flight UA101 to JFK is delayed 30 minutes.\n") == [
        "Flight UA101 to JFK is delayed 30 minutes."
    ]
    assert chunk_text("") == []
    assert chunk_text(" \n\t ") == []


def test_a_giant_word_is_still_cut_within_the_limit() -> None:
    text = "prefix " + "-".join(f"x{i}y" for i in range(400)) + " suffix"
    for start, end in chunk_spans(text, max_tokens=40, overlap_tokens=8):
        assert count_tokens(text[start:end]) <= 40


@pytest.mark.parametrize(
    "max_tokens,overlap", [(0, 0), (MAX_CHUNK_TOKENS + 1, 0), (256, 32), (50, 50), (50, -1)]
)
def test_limits_the_model_cannot_honour_are_rejected(max_tokens: int, overlap: int) -> None:
    with pytest.raises(ValueError, match=r"max_tokens|overlap_tokens"):
        chunk_text("some text", max_tokens=max_tokens, overlap_tokens=overlap)
    with pytest.raises(ValueError):
        ChunkerSettings(max_tokens=max_tokens, overlap_tokens=overlap)


def test_chunking_is_deterministic() -> None:
    body = policy_bodies(1)[0]
    assert chunk_text(body) == chunk_text(body)
    assert ChunkerSettings().chunk(body) == chunk_text(body, max_tokens=200, overlap_tokens=32)


def test_settings_version_changes_with_the_settings() -> None:
    assert ChunkerSettings().version == ChunkerSettings(max_tokens=200, overlap_tokens=32).version
    versions = {
        ChunkerSettings().version,
        ChunkerSettings(max_tokens=128).version,
        ChunkerSettings(overlap_tokens=0).version,
    }
    assert len(versions) == 3
