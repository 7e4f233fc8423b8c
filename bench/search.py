"""Search latency of the processed store: vector, full-text and hybrid, plus vector recall.

Builds one chunk table of N chunks (dim 384, clustered random unit vectors: 1000 topic centres
plus noise, shaped like real embeddings), indexes it with `ChunkStore.ensure_indexes`, then times
`freshlake.lance.search.search` per mode (k=10; query vectors precomputed, so only search is
timed) and the recall@10 of the vector index against brute force.

    .venv/bin/python -m bench.search [--chunks 100000] [--queries 200]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from freshlake.chunks import Chunk, Provenance

AIRLINES = "UA DL AA BA LH AF KL QF NH EK".split()
CITIES = (
    "Chicago|New York|Boston|Denver|Seattle|Miami|Dallas|Atlanta|London|Paris|Frankfurt|Tokyo|"
    "Sydney|Dubai|Amsterdam|Toronto"
).split("|")
STATUSES = "on time|delayed|cancelled|boarding|diverted|departed|landed".split("|")
REASONS = (
    "a winter storm|crew scheduling|a technical inspection|air traffic control|"
    "late inbound aircraft|fog|a security check|volcanic ash"
).split("|")
POLICY = (
    "baggage carry-on refund voucher rebooking pets cabin seat upgrade lounge meal wheelchair "
    "infant check-in passport visa compensation overbooking connection miles fare economy "
    "business allowance fee dollars hours kilograms approved carrier"
).split()
STATUS_OF = {s: s.replace(" ", "_") for s in STATUSES}


class Precomputed:
    """An embedder that returns vectors made in advance: only search is timed."""

    model_name = "bench/random"
    model_version = "1"

    def __init__(self, vectors: dict[str, np.ndarray]) -> None:
        self.vectors = vectors
        self.dimension = len(next(iter(vectors.values())))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.vectors[t] for t in texts])


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def text_for(rng: random.Random, i: int) -> tuple[str, str]:
    if i % 3:
        status = rng.choice(STATUSES)
        origin, destination = rng.sample(CITIES, 2)
        reason = f" because of {rng.choice(REASONS)}" if status != "on time" else ""
        gate = f"{rng.choice('ABCDE')}{rng.randint(1, 40)}"
        flight = f"{rng.choice(AIRLINES)}{rng.randint(1, 9999)}"
        text = f"Flight {flight} from {origin} to {destination} is {status}{reason}, gate {gate}."
        return text, STATUS_OF[status]
    words = rng.choices(POLICY, k=rng.randint(12, 40))
    return "Policy: " + " ".join(words) + ".", "policy"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000.0


def main() -> None:
    from freshlake.lance.search import search
    from freshlake.lance.store import ChunkStore

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--dimension", type=int, default=384)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--out", default="bench/results/search.json")
    args = parser.parse_args()
    n, dim, k = args.chunks, args.dimension, args.k

    rng, nprng = random.Random(7), np.random.default_rng(7)
    centres = unit(nprng.standard_normal((1000, dim), dtype=np.float32))
    vectors = unit(centres[nprng.integers(0, 1000, n)] + 0.06 * nprng.standard_normal((n, dim), np.float32))
    now = datetime.now(UTC)
    texts = [text_for(rng, i) for i in range(n)]
    chunks = [
        Chunk(
            stream="bench",
            key=f"doc-{i}",
            chunk_index=0,
            text=text,
            attributes={"status": status},
            provenance=Provenance(
                source_topic="bench",
                source_partition=i % 3,
                source_offset=i,
                source_version=f"{i:016x}",
                raw_delta_version=1,
                current_delta_version=1,
                event_time=now - timedelta(seconds=rng.randint(1, 86_400)),
                ingested_at=now,
            ),
        )
        for i, (text, status) in enumerate(texts)
    ]
    queries = [text_for(rng, i)[0] for i in range(args.queries)]
    qvectors = unit(
        centres[nprng.integers(0, 1000, len(queries))]
        + 0.06 * nprng.standard_normal((len(queries), dim), np.float32)
    )
    embedder = Precomputed(dict(zip(queries, qvectors, strict=True)))

    with tempfile.TemporaryDirectory() as tmp:
        store = ChunkStore(uri=tmp, table_name="bench", dimension=dim, attribute_fields=["status"])
        started = time.perf_counter()
        for start in range(0, n, 25_000):
            store.apply(
                upserts=chunks[start : start + 25_000],
                vectors=vectors[start : start + 25_000],
                deletes_keys={},
                keep_counts={},
                embedder_name=embedder.model_name,
                embedder_version=embedder.model_version,
            )
        load_s = time.perf_counter() - started
        indexes = store.ensure_indexes()
        optimize = store.optimize()

        result: dict[str, object] = {
            "chunks": n,
            "dimension": dim,
            "k": k,
            "queries": len(queries),
            "load_seconds": round(load_s, 2),
            "index_seconds": round(indexes["seconds"], 2),
            "indexes": indexes["created"] + indexes["present"],
            "optimize_seconds": round(optimize["seconds"], 2),
        }
        for mode in ("vector", "fts", "hybrid"):
            search(stores=[store], embedder=embedder, query=queries[0], mode=mode, k=k)  # warm
            latencies = []
            for q in queries:
                t0 = time.perf_counter()
                search(stores=[store], embedder=embedder, query=q, mode=mode, k=k)
                latencies.append(time.perf_counter() - t0)
            result[mode] = {
                "p50_ms": round(percentile(latencies, 50), 2),
                "p95_ms": round(percentile(latencies, 95), 2),
            }

        truth = np.argsort(-(qvectors @ vectors.T), axis=1)[:, :k]
        recalls = []
        for q, want in zip(queries, truth, strict=True):
            hits = search(stores=[store], embedder=embedder, query=q, mode="vector", k=k)
            got = {int(h.key.removeprefix("doc-")) for h in hits}
            recalls.append(len(got & set(want.tolist())) / k)
        result["vector_recall_at_k"] = round(statistics.fmean(recalls), 4)

        # An incremental apply on the indexed table: 100 changed chunks, as a sensor run would.
        apply_s = []
        for round_ in range(10):
            picked = rng.sample(range(n), 100)
            changed = [
                Chunk(
                    stream="bench",
                    key=chunks[i].key,
                    chunk_index=0,
                    text=chunks[i].text + f" Update {round_}.",
                    attributes=chunks[i].attributes,
                    provenance=dataclasses.replace(chunks[i].provenance, source_version=f"{n + round_:016x}"),
                )
                for i in picked
            ]
            t0 = time.perf_counter()
            store.apply(
                upserts=changed,
                vectors=vectors[picked],
                deletes_keys={},
                keep_counts={},
                embedder_name=embedder.model_name,
                embedder_version=embedder.model_version,
            )
            apply_s.append(time.perf_counter() - t0)
        result["apply_100_chunks"] = {
            "p50_ms": round(percentile(apply_s, 50), 1),
            "max_ms": round(max(apply_s) * 1000, 1),
        }

    result["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
