"""The embedder a run uses: the warm service when configured, else the model in-process."""

from __future__ import annotations

import os
from typing import Literal

import dagster as dg
from pydantic import Field, PrivateAttr


class EmbedderResource(dg.ConfigurableResource):
    """Empty fields come from `FRESHLAKE_EMBEDDER_URL` / `FRESHLAKE_EMBED_*` env vars."""

    url: str | None = Field(default=None, description="embedding service, e.g. http://host:8765")
    precision: str | None = Field(default=None, description="float32 or bfloat16 (in-process)")
    batch_size: int | None = None
    device: str | None = Field(default=None, description="auto, cpu, cuda, cuda:N")
    kind: Literal["model", "hash"] = Field(
        default="model", description="`hash`: deterministic test embedder, no model"
    )
    _embedder: object = PrivateAttr(default=None)

    def get(self):
        """One embedder per process, built on first use (a run that embeds nothing loads nothing)."""
        if self._embedder is None:
            if self.kind == "hash":
                from freshlake.embed.models import HashEmbedder

                self._embedder = HashEmbedder()
            else:
                from freshlake.embed.factory import embedder_from_env

                overrides = {
                    "FRESHLAKE_EMBEDDER_URL": self.url,
                    "FRESHLAKE_EMBED_PRECISION": self.precision,
                    "FRESHLAKE_EMBED_BATCH_SIZE": None if self.batch_size is None else str(self.batch_size),
                    "FRESHLAKE_EMBED_DEVICE": self.device,
                }
                env = {**os.environ, **{k: v for k, v in overrides.items() if v}}
                self._embedder = embedder_from_env(env=env)
        return self._embedder
