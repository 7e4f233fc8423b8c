"""A chunk: the unit the processed store embeds, stores and returns from search.

Its id is stable (`stream:key:chunk_index`), so re-deriving a document updates the same rows, and
its content hash decides whether it needs embedding again (invariant 5).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


def chunk_id(*, stream: str, key: str, chunk_index: int) -> str:
    return f"{stream}:{key}:{chunk_index}"


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True, kw_only=True)
class Provenance:
    """Where a chunk's text came from (invariant 6); `source_version` guards every write."""

    source_topic: str
    source_partition: int
    source_offset: int
    # The document's order (`freshlake.ordering`; an enriched document appends "/" and the joined
    # row's version): compared as text, higher wins, never regressed. Every chunk of a stored
    # document carries it, unchanged chunks too, so a guard on one row is a guard on the document.
    source_version: str
    raw_delta_version: int
    current_delta_version: int
    event_time: datetime | None
    ingested_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class Chunk:
    stream: str
    key: str
    chunk_index: int
    text: str
    provenance: Provenance
    attributes: Mapping[str, str | None] = field(default_factory=dict)  # filterable columns
    embedded_at: datetime | None = None  # set when the vector is carried over from a stored row

    @property
    def chunk_id(self) -> str:
        return chunk_id(stream=self.stream, key=self.key, chunk_index=self.chunk_index)

    @property
    def content_hash(self) -> str:
        return content_hash(self.text)
