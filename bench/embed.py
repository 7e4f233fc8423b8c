"""Embedding: freshlake's in-process embedder and warm service vs. a bare `model.encode`.

All three use the same loaded model object, precision and batch size, in the same run, on the
same demo chunk texts; the figures that matter are the ratios to bare (goal >= 0.9).
`--precision-check` instead compares float32 with bfloat16 (speed and cosine) on 20-200 word
texts: the numbers behind `freshlake.embed.models.default_precision()`.

    .venv/bin/python -m bench.embed [--chunks 2000] [--batch-size 64] [--precision float32]
    .venv/bin/python -m bench.embed --precision-check [--chunks 2000]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np


def _demo_records() -> Iterator[tuple[str, dict]]:
    from examples.flight_assistant.world import DemoWorld

    world = DemoWorld(seed=11, start=datetime(2026, 11, 21, tzinfo=UTC))
    for message in world.messages():
        if message.value is not None and message.bad_kind is None:
            yield message.topic, json.loads(message.value)


def chunk_texts(n: int) -> list[str]:
    """What the embeddings assets embed: policy chunks, flight statuses, rated answers."""
    from freshlake.embed.chunking import ChunkerSettings

    chunker, texts = ChunkerSettings(), []
    for _, record in _demo_records():
        if "body" in record:
            texts += chunker.chunk(f"{record['title']}\n\n{record['body']}")
        elif "flight_number" in record:
            r = record
            texts.append(
                f"Flight {r['flight_number']} ({r['airline']}) from {r['origin']} to "
                f"{r['destination']}, scheduled {r['scheduled_departure']}, is {r['status']}"
                + (f", delayed {r['delay_minutes']} minutes" if r["delay_minutes"] else "")
                + (f" because of {r['reason']}" if r["reason"] else "")
                + f". Gate {r['gate']}."
            )
        elif "query" in record:
            texts.append(f"Q: {record['query']}\nA: {record['answer']}")
        if len(texts) >= n:
            return texts[:n]
    raise AssertionError("unreachable: the demo world is endless")


def sentence_texts(n: int, *, seed: int = 1) -> list[str]:
    """Runs of 20-200 words from the demo policies: the precision check's test set."""
    words: list[str] = []
    for _, record in _demo_records():
        if "body" in record:
            words += record["body"].split()
        if len(words) >= 60_000:
            break
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        length = rng.randint(20, 200)
        start = rng.randrange(len(words) - length)
        texts.append(" ".join(words[start : start + length]))
    return texts


def elapsed(fn: Callable[[Sequence[str]], object], texts: Sequence[str]) -> float:
    started = time.perf_counter()
    fn(texts)
    return time.perf_counter() - started


BENCH_SPEC_FIELDS = {"doc_id": "string", "body": "string"}


class StepPath:
    """freshlake's whole embeddings step (`sync_embeddings`: read current's changes, render, chunk,
    hash lookup, embed, LanceDB merge_insert) over a slice of texts, one document per text.

    Each call gets a `current` table prepared beforehand and an empty LanceDB table created
    beforehand (both untimed: a streaming pipeline appends to tables that exist), so every chunk is
    new and embedded and the step's rate compares with bare `model.encode` directly.
    """

    def __init__(self, *, embedder, root: Path) -> None:
        from freshlake.streams import DocumentSpec, StreamSpec

        self.embedder = embedder
        self.root = root
        self.spec = StreamSpec(
            name="bench",
            topic="bench",
            key_field="doc_id",
            fields=BENCH_SPEC_FIELDS,
            document=DocumentSpec(template="{body}"),
        )
        self.prepared: dict[tuple[str, ...], str] = {}
        self.embedded = 0

    def prepare(self, texts: Sequence[str]) -> None:
        import pyarrow as pa
        from deltalake import write_deltalake

        from freshlake.delta.current import current_schema

        now = datetime.now(UTC)
        uri = str(self.root / f"current-{len(self.prepared)}")
        rows = [
            {
                "key": f"d{i}",
                "is_deleted": False,
                "version": f"{i:016x}",  # a sortable version string
                "source_topic": "bench",
                "source_partition": 0,
                "source_offset": i,
                "raw_delta_version": 0,
                "kafka_timestamp": now,
                "event_time": now,
                "ingested_at": now,
                "doc_id": f"d{i}",
                "body": text,
            }
            for i, text in enumerate(texts)
        ]
        write_deltalake(
            uri,
            pa.Table.from_pylist(rows, schema=current_schema(self.spec)),
            configuration={"delta.enableChangeDataFeed": "true"},
        )
        self.prepared[tuple(texts)] = uri

    def create_tables(self) -> None:
        """Empty LanceDB tables (with their indexes) for every prepared slice, created untimed."""
        from freshlake.lance.progress import Progress
        from freshlake.lance.store import ChunkStore

        self.stores = {}
        for texts, current in self.prepared.items():
            lance = current.replace("current-", "lance-")
            shutil.rmtree(lance, ignore_errors=True)
            store = ChunkStore(uri=lance, table_name="bench", dimension=self.embedder.dimension)
            store.table  # noqa: B018 - create it now
            progress = Progress(uri=lance)
            progress.get("warm")
            self.stores[texts] = (store, progress)

    def __call__(self, texts: Sequence[str]) -> object:
        from freshlake.embed.chunking import ChunkerSettings
        from freshlake.lance.sync import sync_embeddings

        store, progress = self.stores[tuple(texts)]
        result = sync_embeddings(
            spec=self.spec,
            current_uris={"bench": self.prepared[tuple(texts)]},
            store=store,
            embedder=self.embedder,
            chunker=ChunkerSettings(),
            progress=progress,
        )
        self.embedded += result.chunks_embedded
        return result


def compare_paths(args: argparse.Namespace) -> dict[str, object]:
    from freshlake.embed.models import SentenceTransformerEmbedder
    from freshlake.embed.service import EmbeddingServiceClient, make_server

    texts = chunk_texts(args.chunks)
    embedder = SentenceTransformerEmbedder(
        device=args.device, precision=args.precision, batch_size=args.batch_size
    )
    embedder.embed(texts[: args.batch_size])  # load and warm
    model = embedder.model
    server = make_server(port=0, embedder=embedder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = EmbeddingServiceClient(url=f"http://127.0.0.1:{server.server_address[1]}")

    def bare(batch: Sequence[str]) -> object:
        return model.encode(list(batch), batch_size=args.batch_size, normalize_embeddings=True)

    tmp = tempfile.TemporaryDirectory()
    step = StepPath(embedder=embedder, root=Path(tmp.name))
    paths = {"bare": bare, "in_process": embedder.embed, "service": client.embed, "step": step}
    for _ in range(args.repeats):
        for i in range(0, len(texts), args.slice):
            if tuple(texts[i : i + args.slice]) not in step.prepared:
                step.prepare(texts[i : i + args.slice])
    np.testing.assert_allclose(client.embed(texts[:64]), embedder.embed(texts[:64]), atol=1e-5)
    # Fine-grained interleaving (slice by slice, rotating which path goes first) so that other
    # load on a shared machine hits all three paths alike; a rate is total chunks / total time.
    seconds = {name: 0.0 for name in paths}
    runs: dict[str, list[float]] = {name: [] for name in paths}
    names = list(paths)
    for repeat in range(args.repeats):
        step.create_tables()  # fresh, empty tables each repeat, or the step embeds nothing
        spent = dict.fromkeys(paths, 0.0)
        for k, i in enumerate(range(0, len(texts), args.slice)):
            part = texts[i : i + args.slice]
            shift = (repeat + k) % len(names)
            for name in names[shift:] + names[:shift]:
                spent[name] += elapsed(paths[name], part)
        for name in paths:
            seconds[name] += spent[name]
            runs[name].append(len(texts) / spent[name])
        print({name: round(values[-1], 1) for name, values in runs.items()}, flush=True)
    server.shutdown()
    server.server_close()
    tmp.cleanup()
    assert step.embedded == len(texts) * args.repeats, "the step must embed every chunk once per repeat"
    overall = {name: len(texts) * args.repeats / seconds[name] for name in paths}
    return {
        "chunks": len(texts),
        "mean_chars": round(statistics.mean(len(t) for t in texts)),
        "precision": args.precision,
        "batch_size": args.batch_size,
        "device": embedder.device,
        "bare_chunks_per_s": round(overall["bare"], 1),
        "in_process_chunks_per_s": round(overall["in_process"], 1),
        "service_chunks_per_s": round(overall["service"], 1),
        "in_process_ratio": round(overall["in_process"] / overall["bare"], 3),
        "service_ratio": round(overall["service"] / overall["bare"], 3),
        "step_chunks_per_s": round(overall["step"], 1),
        "step_ratio": round(overall["step"] / overall["bare"], 3),
        "runs": {name: [round(x, 1) for x in values] for name, values in runs.items()},
    }


def compare_precisions(args: argparse.Namespace) -> dict[str, object]:
    from freshlake.embed.models import SentenceTransformerEmbedder

    texts = sentence_texts(args.chunks)
    embedders = {
        p: SentenceTransformerEmbedder(device=args.device, precision=p, batch_size=args.batch_size)
        for p in ("float32", "bfloat16")
    }
    runs: dict[str, list[float]] = {p: [] for p in embedders}
    vectors: dict[str, np.ndarray] = {}
    for embedder in embedders.values():
        embedder.embed(texts[: args.batch_size])  # load and warm
    for _ in range(args.repeats):
        for p, embedder in embedders.items():
            started = time.perf_counter()
            vectors[p] = embedder.embed(texts)
            runs[p].append(len(texts) / (time.perf_counter() - started))
            print(f"{p}: {runs[p][-1]:.1f} texts/s", flush=True)
    cosine = np.einsum("ij,ij->i", vectors["float32"], vectors["bfloat16"])
    best = {p: max(values) for p, values in runs.items()}
    return {
        "texts": len(texts),
        "words": "20-200",
        "batch_size": args.batch_size,
        "float32_texts_per_s": round(best["float32"], 1),
        "bfloat16_texts_per_s": round(best["bfloat16"], 1),
        "bfloat16_speedup": round(best["bfloat16"] / best["float32"], 2),
        "cosine_min": round(float(cosine.min()), 6),
        "cosine_mean": round(float(cosine.mean()), 6),
        "cosine_p001": round(float(np.quantile(cosine, 0.001)), 6),
        "runs": {p: [round(x, 1) for x in values] for p, values in runs.items()},
    }


def main() -> None:
    from freshlake.embed.models import PRECISIONS, default_precision

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--precision", choices=PRECISIONS, default=default_precision())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--slice", type=int, default=250, help="chunks per interleaved timing")
    parser.add_argument("--precision-check", action="store_true")
    parser.add_argument("--out", help="default: bench/results/embed.json (paths only)")
    args = parser.parse_args()

    report = compare_precisions(args) if args.precision_check else compare_paths(args)
    out = args.out or (None if args.precision_check else "bench/results/embed.json")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
