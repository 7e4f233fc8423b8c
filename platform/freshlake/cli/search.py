"""`freshlake search`: the processed store from a terminal, with the age of every answer."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from freshlake.cli.args import add_streams_option, load, positive_int, stream_names
from freshlake.errors import FreshlakeConfigError
from freshlake.streams import StreamSpec


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("search", help="search the processed store")
    parser.add_argument("query", help="what to look for, in words")
    parser.add_argument(
        "--stream",
        action="append",
        metavar="NAME",
        help="embedded stream to search (repeatable; default: every embedded stream)",
    )
    parser.add_argument("--mode", choices=("vector", "fts", "hybrid"), default="hybrid")
    parser.add_argument("--k", type=positive_int, default=5, help="hits to return")
    parser.add_argument("--where", help="SQL filter on the vector rows, e.g. \"status = 'cancelled'\"")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    add_streams_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load(args)
    wanted = stream_names(config, args.stream, embedded=True)
    specs = [s for s in config.document_streams if not wanted or s.name in wanted]
    return run_search(
        query=args.query, specs=specs, mode=args.mode, k=args.k, where=args.where, as_json=args.json
    )


def open_stores(*, specs: Sequence[StreamSpec]) -> list:
    """The live embeddings tables of the embedded `specs` that have data."""
    from freshlake.lance.tables import TableRegistry, live_store
    from freshlake.settings import store_roots

    _, lance_root = store_roots()
    specs = [s for s in specs if s.document is not None]
    registry = TableRegistry(uri=lance_root)
    stores = [store for s in specs if (store := live_store(uri=lance_root, spec=s, registry=registry))]
    present = [store for store in stores if store.count() > 0]
    if not present:
        msg = (
            f"no embedded data under {lance_root}: run `freshlake dev` (or materialize the "
            "<stream>/embeddings assets) first, or set FRESHLAKE_HOME / FRESHLAKE_LANCE_URI"
        )
        raise FreshlakeConfigError(msg)
    return present


def run_search(
    *,
    query: str,
    specs: Sequence[StreamSpec],
    mode: str,
    k: int,
    where: str | None,
    as_json: bool,
) -> int:
    from freshlake.embed.factory import embedder_from_env
    from freshlake.lance.search import search

    embedder = embedder_from_env()
    stores = open_stores(specs=specs)
    hits = search(
        stores=stores,
        embedder=[embedder, *_other_precisions(stores, embedder)],
        query=query,
        mode=mode,
        k=k,
        where=where,  # type: ignore[arg-type]
    )
    if as_json:
        payload = [
            {
                "chunk_id": h.chunk_id,
                "stream": h.stream,
                "key": h.key,
                "score": h.score,
                "text": h.text,
                "age_seconds": h.age_seconds,
                "as_of": h.as_of,
                "attributes": h.attributes,
                "provenance": h.provenance,
            }
            for h in hits
        ]
        json.dump(payload, sys.stdout, default=str, indent=2)
        print()
        return 0
    if not hits:
        print("no hits")
    for rank, h in enumerate(hits, 1):
        text = h.text if len(h.text) <= 240 else h.text[:237] + "..."
        print(f"{rank}. [{h.stream}] {h.key}  score={h.score:.4f}  {h.as_of}  ({h.chunk_id})")
        print(f"   {text}")
    return 0


def _other_precisions(stores: Sequence, embedder) -> list:
    """In-process encoders for live tables built at another precision of the packaged model
    (a precision rollout in progress), so a search never fails or mixes vector spaces."""
    from freshlake.embed.models import MODEL_NAME, PRECISIONS, SentenceTransformerEmbedder

    wanted = {store.model() for store in stores} - {(embedder.model_name, embedder.model_version), None}
    extra = []
    for precision in PRECISIONS:
        candidate = SentenceTransformerEmbedder(precision=precision)
        if (MODEL_NAME, candidate.model_version) in wanted:
            extra.append(candidate)
    return extra
