"""What every embedder offers; the rest of freshlake depends on this and nothing else."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class Embedder(Protocol):
    """Normalized float32 vectors, one row per text, in input order."""

    @property
    def model_name(self) -> str: ...

    @property
    def model_version(self) -> str: ...  # changes whenever vectors would change (precision too)

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...
