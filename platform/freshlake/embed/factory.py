"""Pick the embedder a process uses: the warm service when configured, else the model in-process.

FRESHLAKE_EMBEDDER_URL       http://HOST:PORT of `freshlake embedder` (checked on creation)
FRESHLAKE_EMBEDDER_TOKEN     bearer token the service requires (sent with every request)
FRESHLAKE_EMBED_PRECISION    float32 | bfloat16   (in-process only)
FRESHLAKE_EMBED_BATCH_SIZE   positive integer     (in-process only)
FRESHLAKE_EMBED_DEVICE       auto | cpu | cuda | cuda:N | mps (in-process only)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from freshlake.embed.base import Embedder
from freshlake.errors import FreshlakeConfigError

log = logging.getLogger(__name__)


def embedder_from_env(*, env: Mapping[str, str] | None = None) -> Embedder:
    """The service client when `FRESHLAKE_EMBEDDER_URL` is set (fails fast if it is down),
    else a lazily loaded in-process `SentenceTransformerEmbedder` (~7 s on first embed)."""
    env = os.environ if env is None else env
    url = (env.get("FRESHLAKE_EMBEDDER_URL") or "").strip()
    if url:
        from freshlake.embed.service import EmbeddingServiceClient

        token = (env.get("FRESHLAKE_EMBEDDER_TOKEN") or "").strip() or None
        client = EmbeddingServiceClient(url=url, token=token)
        health = client.health()
        log.info("embedding through the service", extra={"url": url, **health})
        return client

    from freshlake.embed.models import (
        PRECISIONS,
        SentenceTransformerEmbedder,
        default_precision,
        validate_settings,
    )

    precision = (env.get("FRESHLAKE_EMBED_PRECISION") or "").strip() or default_precision()
    device = (env.get("FRESHLAKE_EMBED_DEVICE") or "").strip() or "auto"
    raw_batch = (env.get("FRESHLAKE_EMBED_BATCH_SIZE") or "").strip() or "64"
    if precision not in PRECISIONS:
        msg = f"FRESHLAKE_EMBED_PRECISION={precision!r}: set it to {' or '.join(PRECISIONS)}"
        raise FreshlakeConfigError(msg)
    batch_size = int(raw_batch) if raw_batch.isdigit() else 0
    if batch_size < 1:
        msg = f"FRESHLAKE_EMBED_BATCH_SIZE={raw_batch!r}: set it to a positive integer, e.g. 64"
        raise FreshlakeConfigError(msg)
    try:
        validate_settings(device=device, precision=precision, batch_size=batch_size)
    except ValueError as exc:
        msg = f"FRESHLAKE_EMBED_DEVICE={device!r}: {exc}; fix or unset it"
        raise FreshlakeConfigError(msg) from None
    log.info(
        "embedding in-process (set FRESHLAKE_EMBEDDER_URL to use the warm service)",
        extra={"precision": precision, "device": device, "batch_size": batch_size},
    )
    return SentenceTransformerEmbedder(
        device=device,
        precision=precision,  # type: ignore[arg-type]  # checked against PRECISIONS above
        batch_size=batch_size,
    )


def model_code_from_env(*, env: Mapping[str, str] | None = None) -> str:
    """`model@precision` the embeddings will be built with: the embeddings assets' code version,
    so a precision switch shows them stale in Dagster. With the warm service, start it with the
    same environment (`freshlake dev` does)."""
    from freshlake.embed.models import MODEL_NAME, default_precision

    env = os.environ if env is None else env
    precision = (env.get("FRESHLAKE_EMBED_PRECISION") or "").strip() or default_precision()
    return f"{MODEL_NAME}@{precision}"
