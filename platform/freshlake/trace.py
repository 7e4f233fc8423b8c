"""Per-record provenance: a chunk id or stream key, walked back to the Kafka message.

chunk (LanceDB) -> current row (Delta, its version) -> raw row (Delta, found by
topic/partition/offset, with the commit that added it) -> Kafka coordinates and message time,
optionally re-read from the broker to prove the offset still holds that message. A message that
failed to parse is found in `<stream>/quarantine` by its Kafka key or its offset (`p0@703`), with
the reason it was refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from freshlake.errors import FreshlakeConfigError
from freshlake.streams import StreamSpec

CHUNK_COLUMNS = (
    "chunk_id",
    "key",
    "chunk_index",
    "text",
    "source_topic",
    "source_partition",
    "source_offset",
    "source_version",
    "raw_delta_version",
    "current_delta_version",
    "event_time",
    "ingested_at",
    "embedded_at",
    "model_name",
    "model_version",
)
CURRENT_COLUMNS = (
    "key",
    "is_deleted",
    "version",
    "source_topic",
    "source_partition",
    "source_offset",
    "raw_delta_version",
    "kafka_timestamp",
    "event_time",
    "ingested_at",
)
RAW_COLUMNS = ("kafka_topic", "kafka_partition", "kafka_offset", "kafka_timestamp", "key", "event_time")
QUARANTINE_COLUMNS = (
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "kafka_key",
    "kafka_timestamp",
    "error_class",
    "error_message",
    "ingested_at",
)
OFFSET_TARGET = re.compile(r"^p?(\d+)@(\d+)$")  # p0@703: partition 0, offset 703


@dataclass(frozen=True, kw_only=True)
class SourceTrace:
    """One Kafka message and the raw Delta row it became."""

    topic: str
    partition: int
    offset: int
    raw_row: dict[str, Any] | None  # None: not in raw (vacuumed, or a different table)
    raw_commit_version: int | None  # the raw Delta commit that added the row
    kafka_timestamp: datetime | None
    broker_check: str | None = None  # "match", "gone: ...", or None when not asked


@dataclass(frozen=True, kw_only=True)
class TraceReport:
    stream: str
    key: str
    chunks: list[dict[str, Any]] = field(default_factory=list)
    lance_version: int | None = None
    current: dict[str, Any] | None = None
    current_table_version: int | None = None
    sources: list[SourceTrace] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)  # refused messages, newest first

    @property
    def found(self) -> bool:
        return bool(self.chunks or self.current or self.sources or self.quarantined)

    def source_for(self, chunk: Mapping[str, Any]) -> SourceTrace | None:
        coords = (chunk["source_topic"], chunk["source_partition"], chunk["source_offset"])
        return next((s for s in self.sources if (s.topic, s.partition, s.offset) == coords), None)

    def render(self) -> str:
        lines = [f"{self.stream} / {self.key}"]
        if not self.found:
            return lines[0] + ": not found in LanceDB, current, raw or quarantine"
        for q in self.quarantined:
            lines.append(
                f"  QUARANTINED kafka {q['kafka_topic']}[{q['kafka_partition']}]@{q['kafka_offset']} "
                f"at {q['kafka_timestamp']} (ingested {q['ingested_at']}): {q['error_class']}: "
                f"{q['error_message']}"
            )
        if self.quarantined and not (self.chunks or self.current or self.sources):
            lines.append("  (refused at ingest: fix the producer or the stream's fields, then backfill)")
            return "\n".join(lines)
        for chunk in self.chunks:
            text = chunk["text"] if len(chunk["text"]) <= 80 else chunk["text"][:77] + "..."
            lines += [
                f"  chunk {chunk['chunk_id']} (LanceDB version {self.lance_version})",
                f"    text: {text}",
                f"    model {chunk['model_name']}@{chunk['model_version']}, embedded {chunk['embedded_at']}",
                f"    from {chunk['source_topic']}[{chunk['source_partition']}]@{chunk['source_offset']}, "
                f"current version {chunk['current_delta_version']}, raw version {chunk['raw_delta_version']}",
                f"    order {_order(chunk.get('source_version'))}",
            ]
        if self.current is not None:
            c = self.current
            state = "deleted" if c["is_deleted"] else "live"
            lines += [
                f"  current row ({state}, table version {self.current_table_version}): "
                f"order {_order(c['version'])}, from {c['source_topic']}[{c['source_partition']}]@"
                f"{c['source_offset']}, event time {c['event_time']}",
            ]
        else:
            lines.append("  current row: none")
        for s in self.sources:
            raw = "not in raw" if s.raw_row is None else f"raw Delta version {s.raw_commit_version}"
            check = f", broker: {s.broker_check}" if s.broker_check else ""
            lines.append(
                f"  kafka {s.topic}[{s.partition}]@{s.offset} at {s.kafka_timestamp} -> {raw}{check}"
            )
        return "\n".join(lines)


def split_target(target: str, *, stream: str | None, specs: Sequence[StreamSpec]) -> tuple[str, str]:
    """(stream, key) of a chunk id (`<stream>:<key>:<index>`) or of a key of `stream`."""
    names = {s.name for s in specs}
    head, _, rest = target.partition(":")
    if head in names and rest.rpartition(":")[2].isdigit() and (stream is None or stream == head):
        return head, rest.rpartition(":")[0]
    if stream is None:
        msg = (
            f"{target!r} is not a chunk id (<stream>:<key>:<index>): give the stream of the key "
            f"with --stream (one of {', '.join(sorted(names))})"
        )
        raise FreshlakeConfigError(msg)
    if stream not in names:
        msg = f"unknown stream {stream!r}: known streams are {', '.join(sorted(names))}"
        raise FreshlakeConfigError(msg)
    return stream, target


def trace(
    *,
    chunk_id_or_key: str,
    stream: str | None,
    delta_root: str,
    lance_root: str,
    storage_options: Mapping[str, str] | None = None,
    specs: Sequence[StreamSpec],
    kafka_config: Mapping[str, object] | None = None,
) -> TraceReport:
    """Walk a chunk id (only that chunk) or a key (all its chunks) back to Kafka.

    Args:
        kafka_config: when given, each source offset is re-read from the broker and compared
            with the raw row (key and timestamp); otherwise the Delta record is the evidence.
    """
    from freshlake.delta.tables import open_table

    offset_target = OFFSET_TARGET.match(chunk_id_or_key) if stream is not None else None
    if offset_target is not None:
        return _trace_offset(
            stream=split_target(chunk_id_or_key, stream=stream, specs=specs)[0],
            partition=int(offset_target.group(1)),
            offset=int(offset_target.group(2)),
            delta_root=delta_root,
            storage_options=storage_options,
            specs=specs,
            kafka_config=kafka_config,
        )
    name, key = split_target(chunk_id_or_key, stream=stream, specs=specs)
    spec = next(s for s in specs if s.name == name)
    chunks, lance_version = ([], None)
    if spec.document is not None:
        only = chunk_id_or_key if chunk_id_or_key != key else None
        chunks, lance_version = _chunks(
            lance_root, spec.name, key=key, chunk_id=only, options=storage_options
        )
    current_uri, raw_uri = f"{delta_root}/{name}/current", f"{delta_root}/{name}/raw"
    current, current_version = None, None
    table = open_table(current_uri, storage_options=storage_options)
    if table is not None:
        current_version = table.version()
        rows = _where(table.to_pyarrow_table(columns=list(CURRENT_COLUMNS)), key=key)
        current = rows[0] if rows else None
    coords: list[tuple[str, int, int, int | None]] = []
    for row in chunks:
        coords.append(
            (row["source_topic"], row["source_partition"], row["source_offset"], row["raw_delta_version"])
        )
    if current is not None and chunk_id_or_key == key:  # a key: its current row's source too
        coords.append(
            (
                current["source_topic"],
                current["source_partition"],
                current["source_offset"],
                current["raw_delta_version"],
            )
        )
    seen: dict[tuple[str, int, int], SourceTrace] = {}
    raw = open_table(raw_uri, storage_options=storage_options)
    for topic, partition, offset, hint in coords:
        if (topic, partition, offset) in seen:
            continue
        source = _raw_source(raw, topic=topic, partition=partition, offset=offset, version_hint=hint)
        if kafka_config is not None:
            source = _check_broker(source, kafka_config)
        seen[(topic, partition, offset)] = source
    return TraceReport(
        stream=name,
        key=key,
        chunks=chunks,
        lance_version=lance_version,
        current=current,
        current_table_version=current_version,
        sources=list(seen.values()),
        quarantined=_quarantined(f"{delta_root}/{name}/quarantine", options=storage_options, key=key),
    )


def _trace_offset(
    *,
    stream: str,
    partition: int,
    offset: int,
    delta_root: str,
    storage_options: Mapping[str, str] | None,
    specs: Sequence[StreamSpec],
    kafka_config: Mapping[str, object] | None,
) -> TraceReport:
    """One Kafka offset: the raw row it became, or the quarantine row that says why not."""
    from freshlake.delta.tables import open_table

    spec = next(s for s in specs if s.name == stream)
    raw = open_table(f"{delta_root}/{stream}/raw", storage_options=storage_options)
    source = _raw_source(raw, topic=spec.topic, partition=partition, offset=offset, version_hint=None)
    if kafka_config is not None:
        source = _check_broker(source, kafka_config)
    quarantined = _quarantined(
        f"{delta_root}/{stream}/quarantine", options=storage_options, partition=partition, offset=offset
    )
    key = source.raw_row["key"] if source.raw_row else f"p{partition}@{offset}"
    sources = [source] if source.raw_row is not None or not quarantined else []
    return TraceReport(stream=stream, key=key, sources=sources, quarantined=quarantined)


def _quarantined(
    uri: str,
    *,
    options: Mapping[str, str] | None,
    key: str | None = None,
    partition: int | None = None,
    offset: int | None = None,
) -> list[dict[str, Any]]:
    """Quarantine rows at (partition, offset), or whose Kafka key is `key` (as sent, or a JSON key
    holding it, e.g. Debezium's `{"id": 7}`), newest first."""
    from freshlake.delta.tables import open_table

    table = open_table(uri, storage_options=options)
    if table is None:
        return []
    if offset is not None:
        flt = (pc.field("kafka_partition") == partition) & (pc.field("kafka_offset") == offset)
        rows = table.to_pyarrow_dataset().to_table(columns=list(QUARANTINE_COLUMNS), filter=flt).to_pylist()
    else:
        rows = [
            r
            for r in table.to_pyarrow_table(columns=list(QUARANTINE_COLUMNS)).to_pylist()
            if _key_matches(r["kafka_key"], key or "")
        ]
    for r in rows:
        r["kafka_key"] = None if r["kafka_key"] is None else r["kafka_key"].decode("utf-8", "replace")
    return sorted(rows, key=lambda r: (r["ingested_at"], r["kafka_offset"]), reverse=True)


def _key_matches(raw: bytes | None, key: str) -> bool:
    if raw is None or not key:
        return False
    text = raw.decode("utf-8", "replace")
    if text in (key, f'"{key}"'):
        return True
    import json

    try:
        parsed = json.loads(text)
    except ValueError:
        return False
    if isinstance(parsed, dict):
        parsed = parsed.get("payload", parsed)
    values = parsed.values() if isinstance(parsed, dict) else [parsed]
    return any(str(v) == key for v in values if not isinstance(v, (dict, list)))


def _chunks(
    lance_root: str, stream: str, *, key: str, chunk_id: str | None, options: Mapping[str, str] | None
) -> tuple[list[dict[str, Any]], int | None]:
    import lancedb

    from freshlake.lance.store import sql_literal
    from freshlake.lance.tables import live_table_name

    table_name = live_table_name(uri=lance_root, stream=stream, storage_options=options)
    if table_name is None:
        return [], None
    db = lancedb.connect(lance_root, storage_options=dict(options or {}) or None)
    try:
        table = db.open_table(table_name)
    except (ValueError, FileNotFoundError):
        return [], None
    where = f"chunk_id = {sql_literal(chunk_id)}" if chunk_id else f"key = {sql_literal(key)}"
    rows = table.search().where(where).select(list(CHUNK_COLUMNS)).to_arrow().to_pylist()
    return sorted(rows, key=lambda r: r["chunk_index"]), table.version


def _where(rows: pa.Table, **equals: object) -> list[dict[str, Any]]:
    mask = None
    for column, value in equals.items():
        test = pc.equal(rows.column(column), pa.scalar(value, rows.schema.field(column).type))
        mask = test if mask is None else pc.and_(mask, test)
    return rows.filter(mask).to_pylist() if rows.num_rows else []


def _raw_source(raw, *, topic: str, partition: int, offset: int, version_hint: int | None) -> SourceTrace:
    """The raw row at (topic, partition, offset) and the commit that added it.

    The commit is read from raw's Change Data Feed: at `version_hint` (the version `current`
    recorded) first, else from the whole feed.
    """
    missing = SourceTrace(
        topic=topic,
        partition=partition,
        offset=offset,
        raw_row=None,
        raw_commit_version=None,
        kafka_timestamp=None,
    )
    if raw is None:
        return missing
    from deltalake.exceptions import DeltaError

    from freshlake.delta.tables import read_change_feed

    coords = {"kafka_topic": topic, "kafka_partition": partition, "kafka_offset": offset}
    predicate = f"kafka_partition = {int(partition)} AND kafka_offset = {int(offset)}"
    windows = [(version_hint, version_hint)] if version_hint is not None else []
    windows.append((0, raw.version()))
    for first, last in windows:
        try:
            feed = raw.load_cdf(starting_version=first, ending_version=last, predicate=predicate)
            changes = read_change_feed(feed)
        except (DeltaError, OSError):  # a vacuumed version, or one from before CDF: next window
            continue
        if changes.num_rows == 0:
            continue
        changes = changes.filter(pc.equal(changes.column("_change_type").cast(pa.string()), "insert"))
        found = _where(changes.select([*RAW_COLUMNS, "_commit_version"]), **coords)
        if found:
            row = found[0]
            version = row.pop("_commit_version")
            return SourceTrace(
                topic=topic,
                partition=partition,
                offset=offset,
                raw_row=row,
                raw_commit_version=int(version),
                kafka_timestamp=row["kafka_timestamp"],
            )
    rows = _where(raw.to_pyarrow_table(columns=list(RAW_COLUMNS)), **coords)  # CDF gone: row only
    if not rows:
        return missing
    return SourceTrace(
        topic=topic,
        partition=partition,
        offset=offset,
        raw_row=rows[0],
        raw_commit_version=None,
        kafka_timestamp=rows[0]["kafka_timestamp"],
    )


def _check_broker(source: SourceTrace, kafka_config: Mapping[str, object]) -> SourceTrace:
    """Re-read the one message at the source offset; say whether it is the one raw recorded."""
    import dataclasses

    from freshlake.errors import FreshlakeError
    from freshlake.kafka.consumer import read_batches

    try:
        batches = list(
            read_batches(
                kafka_config,
                topic=source.topic,
                ranges={source.partition: (source.offset, source.offset + 1)},
                stall_timeout=5.0,
            )
        )
    except FreshlakeError as exc:
        return dataclasses.replace(source, broker_check=f"gone: {exc}")
    offsets = [o for b in batches for o in b.offsets]
    if offsets != [source.offset]:
        return dataclasses.replace(source, broker_check=f"gone: read offsets {offsets}")
    stamp = batches[0].timestamps_ms[0]
    ts = None if stamp is None else datetime.fromtimestamp(stamp / 1000, tz=UTC)
    if source.raw_row is not None and source.kafka_timestamp is not None and ts != source.kafka_timestamp:
        return dataclasses.replace(source, broker_check=f"differs: broker time {ts}")
    return dataclasses.replace(source, broker_check="match", kafka_timestamp=source.kafka_timestamp or ts)


def _order(version: str | None) -> str:
    """A source version for people: each part (a document's row, its joined row) decoded."""
    from freshlake.ordering import describe

    if not version:
        return "none"
    return " / joined ".join(describe(part) for part in version.split("/"))
