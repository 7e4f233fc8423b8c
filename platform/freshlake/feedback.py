"""The feedback loop: rated answers joined with the documents they cite, as a fine-tuning dataset.

Each feedback row of a time window is joined, *as of* the moment of the feedback, with the raw
events of the documents it references: per key, the newest raw event by the stream's version
(`freshlake.ordering`, the order `current` uses) whose Kafka message time is at or before the
feedback's `as_of`. That
version is rendered with the stream's template and chunked, so the dataset holds the chunk texts
the assistant could have retrieved then. Everything is derived from the primary store (raw
Delta): a later revision, a delete or a vacuum of `current` never changes an earlier day, and a
backfill re-derives it row for row.

Clocks: a document version counts from its Kafka message time, when it entered the log (its own
`event_time` may be back- or forward-dated, and `ingested_at` changes when a raw day is
re-ingested). The feedback's `as_of` is `min(event_time, message time)`: the reaction came after
the answer, and never after its own message was produced, so a day's rows depend only on raw data
up to the end of that day.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa

from freshlake.delta.schemas import PARTITION_COLUMN, TS, raw_schema
from freshlake.delta.tables import COMMIT_ATTEMPTS, open_table
from freshlake.documents import render
from freshlake.ordering import assign_versions
from freshlake.partitions import TimeWindow
from freshlake.streams import StreamSpec

log = logging.getLogger(__name__)

DATASET_VERSION = "1"  # bump when rows change meaning: part of the asset's code version
LABELS: dict[str, int] = {"up": 1, "down": 0}
ORDER = "_order_version"  # freshlake.ordering's version of a raw row, beside the record's fields

DOCUMENT = pa.struct(
    [
        pa.field("document_id", pa.string()),  # as the feedback referenced it
        pa.field("stream", pa.string()),  # None: an unknown bare key
        pa.field("key", pa.string()),
        pa.field("status", pa.string()),  # found | deleted | unknown
        pa.field("text", pa.string()),
        pa.field("chunk_texts", pa.list_(pa.string())),
        pa.field("source_topic", pa.string()),
        pa.field("source_partition", pa.int32()),
        pa.field("source_offset", pa.int64()),
        pa.field("source_kafka_date", pa.string()),  # the raw Delta partition holding the event
        pa.field("source_message_time", TS),
        pa.field("source_event_time", TS),
        pa.field("joined_stream", pa.string()),  # the enrichment row used (a booking's flight)
        pa.field("joined_key", pa.string()),
        pa.field("joined_partition", pa.int32()),
        pa.field("joined_offset", pa.int64()),
    ]
)

DATASET_SCHEMA = pa.schema(
    [
        pa.field("feedback_id", pa.string(), nullable=False),
        pa.field("session_id", pa.string()),
        pa.field("query", pa.string()),
        pa.field("answer", pa.string()),
        pa.field("rating", pa.string()),
        pa.field("label", pa.int8()),  # 1 up, 0 down, None for any other rating
        pa.field("comment", pa.string()),
        pa.field("document_ids", pa.list_(pa.string())),
        pa.field("chunk_texts", pa.list_(pa.string())),  # the found documents' chunks, in order
        pa.field("missing_documents", pa.list_(pa.string())),  # ids with no live version at as_of
        pa.field("documents", pa.list_(DOCUMENT)),
        pa.field("event_time", TS),
        pa.field("as_of", TS, nullable=False),
        pa.field("message_time", TS, nullable=False),
        pa.field("source_topic", pa.string(), nullable=False),
        pa.field("source_partition", pa.int32(), nullable=False),
        pa.field("source_offset", pa.int64(), nullable=False),
        pa.field("chunker", pa.string(), nullable=False),
        pa.field(PARTITION_COLUMN, pa.string(), nullable=False),
    ]
)

# Loads raw rows of `stream` for `keys` (message time <= `until` suffices; later rows are ignored).
Loader = Callable[[str, Sequence[str], datetime], pa.Table | None]


@dataclass(frozen=True, kw_only=True)
class Dataset:
    rows: pa.Table  # DATASET_SCHEMA
    duplicates_dropped: int  # feedback keys seen more than once in the window: newest kept
    documents_referenced: int
    documents_missing: int  # referenced ids with no live version at the feedback's as_of

    def count(self, label: int | None) -> int:
        return sum(1 for v in self.rows.column("label").to_pylist() if v == label)


@dataclass(frozen=True, slots=True)
class _Ref:
    """One candidate (stream, key) of one document id of one feedback row."""

    row: int
    doc: int
    stream: str
    key: str
    as_of: datetime


def _message_time():
    """Kafka message time; `ingested_at` when the message had none (as `kafka_date` does)."""
    import polars as pl

    return pl.coalesce(pl.col("kafka_timestamp"), pl.col("ingested_at"))


def document_ids(value: Any) -> list[str]:
    """The referenced ids, in order, without repeats: a JSON list (stored as text) or one id."""
    if value is None or value == "":
        return []
    parsed = value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
    out: list[str] = []
    for item in parsed if isinstance(parsed, list) else [parsed]:
        text = item if isinstance(item, str) else json.dumps(item)
        if text and text not in out:
            out.append(text)
    return out


def candidates(document_id: str, streams: Sequence[str]) -> list[tuple[str, str]]:
    """(stream, key) pairs an id may name: `stream:key` names one stream, a bare key any of them."""
    stream, sep, key = document_id.partition(":")
    if sep and key and stream in streams:
        return [(stream, key)]
    return [(s, document_id) for s in streams]


def as_of_versions(refs, versions, *, spec: StreamSpec):
    """Per ref, the newest version of its key (by `spec`'s order) with message time <= its `as_of`.

    Args:
        refs: polars frame with `ref` (unique), `key`, `as_of`.
        versions: polars frame of raw rows of one stream.
        spec: that stream (its order).

    Returns:
        One row per ref that has such a version: `ref`, the raw columns, `message_time` and
        `ORDER` (the version string; a record may have its own `version` field).
    """
    import polars as pl

    timed = versions.with_columns(_message_time().alias("message_time"))
    if refs.is_empty() or versions.is_empty():
        return timed.head(0).with_columns(
            pl.lit(None, pl.Int64).alias("ref"), pl.lit(None, pl.String).alias("version")
        )
    # versions over the whole loaded history: a tombstone takes its prefix from the row before it
    ordered = assign_versions(timed, spec=spec, column=ORDER).drop("has_order")
    return (
        refs.select("ref", "key", "as_of")
        .join(ordered, on="key", how="inner")
        .filter(pl.col("message_time") <= pl.col("as_of"))
        .sort("ref", ORDER)
        .group_by("ref", maintain_order=True)
        .last()
        .drop("as_of")
    )


def prepare_feedback(feedback: pa.Table, *, spec: StreamSpec | None = None):
    """(live feedback rows with `message_time` and `as_of`, one per key, the newest by `spec`'s
    order wins (by offset within a partition without a spec); number of duplicates dropped).
    Tombstones are not feedback."""
    import polars as pl

    frame = pl.from_arrow(feedback).filter(~pl.col("is_delete"))
    frame = frame.with_columns(_message_time().alias("message_time"))
    frame = frame.with_columns(pl.min_horizontal("event_time", "message_time").alias("as_of"))
    if spec is not None and frame.height:
        ordered = assign_versions(frame, spec=spec, column=ORDER).sort(ORDER).drop(ORDER, "has_order")
    else:
        ordered = frame.sort("kafka_partition", "kafka_offset")
    unique = ordered.unique(subset="key", keep="last", maintain_order=True)
    return unique.sort("message_time", "kafka_partition", "kafka_offset"), frame.height - unique.height


def _pick(
    wanted: Mapping[int, tuple[str, datetime]], table: pa.Table | None, spec: StreamSpec
) -> dict[int, dict[str, Any]]:
    """ref id -> the as-of version in `table` (raw rows of `spec`) of its (key, as_of)."""
    import polars as pl

    if not wanted:
        return {}
    frame = pl.DataFrame(
        {
            "ref": list(wanted),
            "key": [key for key, _ in wanted.values()],
            "as_of": [as_of for _, as_of in wanted.values()],
        },
        schema={"ref": pl.Int64, "key": pl.String, "as_of": pl.Datetime("us", "UTC")},
    )
    versions = pl.from_arrow(table if table is not None else raw_schema(spec).empty_table())
    return {v["ref"]: v for v in as_of_versions(frame, versions, spec=spec).to_dicts()}


def build_dataset(
    feedback: pa.Table,
    *,
    load: Loader,
    streams: Sequence[StreamSpec],
    chunker,  # freshlake.embed.chunking.ChunkerSettings
) -> Dataset:
    """Feedback raw rows -> dataset rows; all reads go through `load` (pure otherwise).

    Args:
        feedback: raw rows of the feedback stream for the window (any order, duplicates allowed).
        load: raw rows of a document stream for some keys (see `Loader`).
        streams: every stream; those with a `document` spec resolve ids, in this order.
        chunker: cuts rendered text as the embeddings do (`ChunkerSettings`).
    """
    specs = {s.name: s for s in streams if s.document is not None}
    by_name = {s.name: s for s in streams}
    rows, duplicates = prepare_feedback(feedback, spec=next((s for s in streams if s.feedback), None))
    records = rows.to_dicts()
    ids = [document_ids(r.get("document_ids")) for r in records]
    until = max((r["as_of"] for r in records), default=None)

    refs: list[_Ref] = [
        _Ref(row=i, doc=j, stream=stream, key=key, as_of=record["as_of"])
        for i, (record, doc_ids) in enumerate(zip(records, ids, strict=True))
        for j, document_id in enumerate(doc_ids)
        for stream, key in candidates(document_id, list(specs))
    ]
    picked: dict[int, dict[str, Any]] = {}
    joined: dict[int, dict[str, Any]] = {}
    for name, spec in specs.items():
        mine = {n: (r.key, r.as_of) for n, r in enumerate(refs) if r.stream == name}
        if not mine:
            continue
        found = _pick(mine, load(name, sorted({key for key, _ in mine.values()}), until), spec)
        picked |= found
        enrich = spec.document.enrich
        if enrich is None or enrich.stream not in by_name:
            continue
        wanted = {  # the joined row as of the same moment (a booking's flight then)
            n: (str(v[enrich.on]), refs[n].as_of)
            for n, v in found.items()
            if not v["is_delete"] and v.get(enrich.on) is not None
        }
        if wanted:
            table = load(enrich.stream, sorted({key for key, _ in wanted.values()}), until)
            other = _pick(wanted, table, by_name[enrich.stream])
            joined |= {n: v for n, v in other.items() if not v["is_delete"]}

    texts: dict[tuple, tuple[str, list[str]]] = {}  # one render + chunk per document version

    def entry(n: int, document_id: str) -> dict[str, Any]:
        ref, version, join = refs[n], picked[n], joined.get(n)
        spec = specs[ref.stream]
        out = {
            "document_id": document_id,
            "stream": spec.name,
            "key": ref.key,
            "status": "deleted" if version["is_delete"] else "found",
            "chunk_texts": [],
            "source_topic": version["kafka_topic"],
            "source_partition": version["kafka_partition"],
            "source_offset": version["kafka_offset"],
            "source_kafka_date": version[PARTITION_COLUMN],
            "source_message_time": version["message_time"],
            "source_event_time": version["event_time"],
        }
        if join is not None:
            out |= {
                "joined_stream": spec.document.enrich.stream,
                "joined_key": join["key"],
                "joined_partition": join["kafka_partition"],
                "joined_offset": join["kafka_offset"],
            }
        if not version["is_delete"]:
            at = (spec.name, version["kafka_partition"], version["kafka_offset"])
            at += (None,) if join is None else (join["kafka_partition"], join["kafka_offset"])
            if at not in texts:
                text = render(spec.document, row=version, joined=join)
                texts[at] = (text, chunker.chunk(text))
            out["text"], out["chunk_texts"] = texts[at][0], list(texts[at][1])
        return out

    by_doc: dict[tuple[int, int], list[int]] = {}
    for n, ref in enumerate(refs):
        by_doc.setdefault((ref.row, ref.doc), []).append(n)

    out: list[dict[str, Any]] = []
    referenced = missing = 0
    for i, (record, doc_ids) in enumerate(zip(records, ids, strict=True)):
        docs: list[dict[str, Any]] = []
        absent: list[str] = []
        for j, document_id in enumerate(doc_ids):
            referenced += 1
            seen = [entry(n, document_id) for n in by_doc.get((i, j), []) if n in picked]
            live = [d for d in seen if d["status"] == "found"]
            if not live:
                absent.append(document_id)
            if live or seen:
                docs.extend(live or seen)
                continue
            (stream, key), *more = candidates(document_id, list(specs)) or [(None, document_id)]
            docs.append(
                {
                    "document_id": document_id,
                    "stream": None if more else stream,
                    "key": document_id if more else key,
                    "status": "unknown",
                    "chunk_texts": [],
                }
            )
        missing += len(absent)
        rating = record.get("rating")
        out.append(
            {
                "feedback_id": record["key"],
                "session_id": record.get("session_id"),
                "query": record.get("query"),
                "answer": record.get("answer"),
                "rating": rating,
                "label": None if rating is None else LABELS.get(str(rating).strip().lower()),
                "comment": record.get("comment"),
                "document_ids": doc_ids,
                "chunk_texts": [c for d in docs if d["status"] == "found" for c in d["chunk_texts"]],
                "missing_documents": absent,
                "documents": docs,
                "event_time": record.get("event_time"),
                "as_of": record["as_of"],
                "message_time": record["message_time"],
                "source_topic": record["kafka_topic"],
                "source_partition": record["kafka_partition"],
                "source_offset": record["kafka_offset"],
                "chunker": chunker.version,
                PARTITION_COLUMN: record[PARTITION_COLUMN],
            }
        )
    return Dataset(
        rows=pa.Table.from_pylist(out, schema=DATASET_SCHEMA),
        duplicates_dropped=duplicates,
        documents_referenced=referenced,
        documents_missing=missing,
    )


# --- reading raw Delta, writing the dataset ---

_BINARY = ("kafka_key", "kafka_headers", "value")  # not needed here: never read


def _scan(uri: str, *, storage_options: Mapping[str, str] | None):
    """A lazy scan of the Delta table at `uri`, or None if nothing was written there yet."""
    import polars as pl

    table = open_table(uri, storage_options=storage_options)
    if table is None:
        return None
    scan = pl.scan_delta(table)
    return scan.select(pl.exclude(*_BINARY))


def read_window(
    uri: str, *, window: TimeWindow, storage_options: Mapping[str, str] | None = None
) -> pa.Table | None:
    """Raw rows whose Kafka message time falls in `window` (pruned to its `kafka_date`s)."""
    import polars as pl

    scan = _scan(uri, storage_options=storage_options)
    if scan is None:
        return None
    return (
        scan.filter(pl.col(PARTITION_COLUMN).is_in(window.dates))
        .filter(_message_time().is_between(window.start, window.end, closed="left"))
        .collect()
        .to_arrow()
    )


def read_versions(
    uri: str,
    *,
    keys: Sequence[str],
    until: datetime | None,
    storage_options: Mapping[str, str] | None = None,
) -> pa.Table | None:
    """Raw rows of `keys` with message time <= `until`: the history an as-of join picks from."""
    import polars as pl

    scan = _scan(uri, storage_options=storage_options)
    if scan is None or until is None or not keys:
        return None
    return (
        scan.filter(pl.col(PARTITION_COLUMN) <= until.date().isoformat())
        .filter(pl.col("key").is_in(list(keys)) & (_message_time() <= until))
        .collect()
        .to_arrow()
    )


def window_predicate(window: TimeWindow) -> str:
    """The rows of the dataset a run for `window` replaces (by partition, then by time)."""
    dates = ", ".join(f"'{d}'" for d in window.dates)
    predicate = f"{PARTITION_COLUMN} IN ({dates})"
    whole_days = window.start.time() == window.end.time() == datetime.min.time()
    if not whole_days:
        predicate += (
            f" AND message_time >= '{window.start.isoformat()}' AND message_time < '{window.end.isoformat()}'"
        )
    return predicate


def write_dataset(
    uri: str, rows: pa.Table, *, window: TimeWindow, storage_options: Mapping[str, str] | None = None
) -> int:
    """Replace the window's rows with `rows` in one commit (idempotent); the new table version."""
    from deltalake import write_deltalake
    from deltalake.exceptions import CommitFailedError

    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            write_deltalake(
                uri,
                rows.cast(DATASET_SCHEMA),
                mode="overwrite",
                predicate=window_predicate(window),
                partition_by=[PARTITION_COLUMN],
                storage_options=dict(storage_options or {}) or None,
            )
        except CommitFailedError:
            log.warning("dataset commit conflict, retrying", extra={"uri": uri, "attempt": attempt})
            continue
        return open_table(uri, storage_options=storage_options).version()
    msg = f"could not commit to {uri} after {COMMIT_ATTEMPTS} attempts (another run writes the same days)"
    raise RuntimeError(msg)


def to_jsonl(rows: pa.Table) -> bytes:
    """One JSON object per dataset row (timestamps as ISO-8601), for fine-tuning tools."""
    lines = [json.dumps(row, ensure_ascii=False, default=lambda v: v.isoformat()) for row in rows.to_pylist()]
    return "".join(line + "\n" for line in lines).encode()


def export_jsonl(
    uri: str, *, directory: str, window: TimeWindow, storage_options: Mapping[str, str] | None = None
) -> list[str]:
    """Write `<directory>/<kafka_date>.jsonl` for each day `window` touches, from the dataset table.

    Each file holds the whole day (read back after the write, so hourly runs keep it complete)
    in feedback order, and replaces the previous one (local files: renamed into place). The
    directory is a path or a URI pyarrow can open (s3://, gs://, abfs://), credentials from the
    environment.
    """
    import os

    import polars as pl
    from pyarrow import fs

    filesystem, root = fs.FileSystem.from_uri(directory if "://" in directory else os.path.abspath(directory))
    filesystem.create_dir(root, recursive=True)
    table = open_table(uri, storage_options=storage_options)
    frame = (
        pl.scan_delta(table).filter(pl.col(PARTITION_COLUMN).is_in(window.dates)).collect()
        if table is not None
        else pl.from_arrow(DATASET_SCHEMA.empty_table())
    )
    written: list[str] = []
    for day in window.dates:
        rows = frame.filter(pl.col(PARTITION_COLUMN) == day).sort(
            "message_time", "source_partition", "source_offset"
        )
        path = f"{root}/{day}.jsonl"
        with filesystem.open_output_stream(path + ".tmp") as out:
            out.write(to_jsonl(rows.to_arrow().cast(DATASET_SCHEMA)))
        filesystem.move(path + ".tmp", path)
        written.append(path)
    return written


@dataclass(frozen=True, kw_only=True)
class FinetuningResult:
    dataset: Dataset
    feedback_rows: int  # raw feedback rows read for the window (tombstones, duplicates included)
    delta_version: int
    seconds: float


def build_finetuning(
    *,
    feedback_uri: str,
    raw_uris: Mapping[str, str],
    out_uri: str,
    streams: Sequence[StreamSpec],
    feedback: StreamSpec,
    window: TimeWindow,
    chunker,  # freshlake.embed.chunking.ChunkerSettings
    storage_options: Mapping[str, str] | None = None,
) -> FinetuningResult:
    """Read the window's feedback and the cited documents' raw history, replace the window's rows.

    Args:
        feedback_uri: the feedback stream's raw table.
        raw_uris: stream name -> raw table, for every document stream (and enrichment stream).
        out_uri: the dataset's Delta table.
        streams: every stream (document streams resolve the ids).
        feedback: the feedback stream's spec.
        window: the partitions being built.
        chunker: as the embeddings use it.
    """
    t0 = time.perf_counter()
    raw = read_window(feedback_uri, window=window, storage_options=storage_options)
    raw = raw if raw is not None else raw_schema(feedback).empty_table()

    def load(stream: str, keys: Sequence[str], until: datetime) -> pa.Table | None:
        if stream not in raw_uris:
            return None
        return read_versions(raw_uris[stream], keys=keys, until=until, storage_options=storage_options)

    dataset = build_dataset(raw, load=load, streams=streams, chunker=chunker)
    version = write_dataset(out_uri, dataset.rows, window=window, storage_options=storage_options)
    log.info(
        "feedback dataset written",
        extra={"rows": dataset.rows.num_rows, "missing": dataset.documents_missing, "version": version},
    )
    return FinetuningResult(
        dataset=dataset, feedback_rows=raw.num_rows, delta_version=version, seconds=time.perf_counter() - t0
    )
