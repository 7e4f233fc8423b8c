"""`freshlake reset STREAM`: archive one stream's tables so it starts over from its topic.

For a topic that really was recreated (the offsets sensor fails with OffsetsWentBackwards): the
stream's Delta tables (raw, quarantine, current, ...) and LanceDB tables move under
`$FRESHLAKE_HOME/archive/<UTC time>/<stream>/`, its rollout alias entries are saved there and
removed; nothing is deleted. The next run ingests the topic from its first offset.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

from freshlake.cli.args import UsageError, add_streams_option, load, stream_names
from freshlake.errors import FreshlakeConfigError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("reset", help="archive one stream's tables so it starts over from its topic")
    parser.add_argument("stream", help="the stream to start over")
    parser.add_argument("--yes", action="store_true", help="archive without asking")
    add_streams_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = load(args)
    stream_names(config, [args.stream])
    return run_reset(stream=args.stream, others=[s.name for s in config.streams], yes=args.yes)


def run_reset(*, stream: str, others: list[str], yes: bool, now: datetime | None = None) -> int:
    """Move `stream`'s tables into the archive after a confirmation (or `yes`)."""
    from freshlake.dev import read_dev_state
    from freshlake.settings import data_paths, store_roots

    home = data_paths().home
    running = read_dev_state(home)
    if running is not None:
        msg = (
            f"freshlake dev is running on {home} (pid {running['pid']}): stop it (Ctrl-C) first, "
            f"its runs would write {stream}'s tables while they move"
        )
        raise FreshlakeConfigError(msg)
    delta_root, lance_root = store_roots()
    for root in (delta_root, lance_root):
        if "://" in root:
            msg = (
                f"reset archives local tables only, and {root} is an object store: copy then remove "
                f"{root}/{stream}* with your storage tools"
            )
            raise UsageError(msg)
    delta = Path(delta_root) / stream
    lance = _lance_tables(Path(lance_root), stream=stream, others=others)
    moving = ([delta] if delta.exists() else []) + lance
    if not moving:
        print(f"nothing to reset: {stream} has no tables under {delta_root} or {lance_root}")
        return 0
    archive = home / "archive" / (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ") / stream
    print(f"freshlake reset {stream} moves these to {archive}:")
    for path in moving:
        print(f"  {path}")
    if not yes and not _confirmed():
        print("nothing moved")
        return 1
    (archive / "lance").mkdir(parents=True, exist_ok=True)
    if delta.exists():
        shutil.move(str(delta), str(archive / "delta"))
    for path in lance:
        shutil.move(str(path), str(archive / "lance" / path.name))
    aliases = _drop_aliases(lance_root, stream=stream)
    if aliases:
        (archive / "lance" / "aliases.json").write_text(json.dumps(aliases, indent=2, default=str) + "\n")
    print(
        f"archived {len(moving)} table folders of {stream}; its next run ingests {stream}'s topic from "
        "its first offset (start `make run` / `freshlake dev` again)"
    )
    return 0


def _confirmed() -> bool:
    if not sys.stdin.isatty():
        msg = "no terminal to confirm on: pass --yes to archive without asking"
        raise UsageError(msg)
    return input("archive them? [y/N] ").strip().lower() in ("y", "yes")


def _lance_tables(root: Path, *, stream: str, others: list[str]) -> list[Path]:
    """`<stream>__<space>.lance` folders; not those of a stream whose name extends this one's."""
    if not root.is_dir():
        return []
    longer = [o for o in others if o != stream and o.startswith(stream)]
    return sorted(
        p
        for p in root.glob(f"{stream}__*.lance")
        if p.is_dir() and not any(p.name.startswith(f"{o}__") for o in longer)
    )


def _drop_aliases(lance_root: str, *, stream: str) -> list[dict]:
    """Remove the stream's rows from the rollout alias table; return them for the archive."""
    if not Path(lance_root).is_dir():
        return []
    import lancedb

    from freshlake.lance.store import sql_literal
    from freshlake.lance.tables import TABLE

    try:
        table = lancedb.connect(lance_root).open_table(TABLE)
    except (ValueError, FileNotFoundError):  # no alias table yet
        return []
    where = f"stream = {sql_literal(stream)}"
    rows = table.search().where(where).to_arrow().to_pylist()
    if rows:
        table.delete(where)
    return rows
