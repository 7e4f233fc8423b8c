"""`freshlake search`: the processed store from a terminal, with the age of every answer."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from freshlake.cli.args import UsageError, add_streams_option, load, positive_int, stream_names
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
    parser.add_argument(
        "--k", type=positive_int, default=5, help="documents (or, with --chunks, chunks) to return"
    )
    parser.add_argument("--chunks", action="store_true", help="raw chunk hits instead of documents")
    parser.add_argument("--where", help="SQL filter on the vector rows, e.g. \"status = 'cancelled'\"")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    add_streams_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load(args)
    wanted = stream_names(config, args.stream, embedded=True)
    specs = [s for s in config.document_streams if not wanted or s.name in wanted]
    return run_search(
        query=args.query,
        specs=specs,
        mode=args.mode,
        k=args.k,
        where=args.where,
        as_json=args.json,
        chunks=args.chunks,
    )


def run_search(
    *,
    query: str,
    specs: Sequence[StreamSpec],
    mode: str,
    k: int,
    where: str | None,
    as_json: bool,
    chunks: bool = False,
) -> int:
    from freshlake.retrieval import FreshlakeSearchError, Searcher

    searcher = Searcher.open(streams=specs)
    try:
        result = searcher.search(query, mode=mode, k=k, where=where, chunks=chunks)  # type: ignore[arg-type]
    except FreshlakeSearchError as exc:
        text = " ".join(str(exc).split())  # one line, whatever the table engine wrote
        if "cannot be evaluated" in text and len(specs) > 1:
            text += " (`--stream NAME`, repeatable, picks them)"
        raise UsageError(text) from None
    if not any(f.rows for f in result.freshness.values()):
        msg = (
            f"no embedded data under {searcher.lance_root}: run `freshlake dev` (or materialize the "
            "<stream>/embeddings assets) first, or set FRESHLAKE_HOME / FRESHLAKE_LANCE_URI"
        )
        raise FreshlakeConfigError(msg)
    found = result.hits if chunks else result.documents
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
                **({} if chunks else {"passages": [p.text for p in h.passages]}),  # type: ignore[union-attr]
            }
            for h in found
        ]
        json.dump(payload, sys.stdout, default=str, indent=2)
        print()
        return 0
    if not found:
        print("no hits")
    for rank, h in enumerate(found, 1):
        text = h.text if len(h.text) <= 240 else h.text[:237] + "..."
        more = "" if chunks else f", {len(h.passages)} matching chunks"  # type: ignore[union-attr]
        print(f"{rank}. [{h.stream}] {h.key}  score={h.score:.4f}  {h.as_of}  ({h.chunk_id}{more})")
        print(f"   {text}")
    return 0
