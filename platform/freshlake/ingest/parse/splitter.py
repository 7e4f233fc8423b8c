"""The splitter: batches of Kafka messages -> raw rows and quarantine rows, chunk by chunk.

Each chunk takes the fastest path that can vouch for it: Arrow's JSON reader (`arrow_json`),
orjson a column at a time (`orjson_chunk`), else message by message (`checks`). What lands
where never depends on the path.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from freshlake.cdc.debezium import key_from_kafka_key
from freshlake.delta.schemas import DEBEZIUM_COLUMNS, PARTITION_COLUMN, TS
from freshlake.ingest.parse import decode
from freshlake.ingest.parse.arrow_json import READ_AHEAD, parse_pool, read_chunk
from freshlake.ingest.parse.checks import check
from freshlake.ingest.parse.compiled import Compiled, compile_spec
from freshlake.ingest.parse.errors import ARROW_ERRORS, SCHEMA, RejectedMessage, reject
from freshlake.ingest.parse.orjson_chunk import orjson_chunk
from freshlake.ingest.parse.rows import (
    N_COORDINATES,
    QUARANTINE_BUILDER,
    coordinate_arrays,
    coordinates,
    kafka_arrays,
    refused_rows,
)
from freshlake.ingest.parse.timestamps import (
    EPOCH,
    MAX_MS,
    MIN_MS,
    MS_PER_DAY,
    partition_value,
    timestamps,
    utc,
)
from freshlake.kafka.messages import KafkaMessage, MessageBatch
from freshlake.streams import StreamSpec

CHUNK_ROWS = 8192  # messages per Arrow conversion in `split_messages`
JSON_MAX_WAIT = 16  # chunks `Splitter._json_start` sits out after failing again and again
_SOURCE_TS_MS = [f.name for f in DEBEZIUM_COLUMNS].index("source_ts_ms")


@dataclass(frozen=True, slots=True)
class _Parsed:
    """The rows of a chunk that passed `check`, column by column."""

    kept: list[int]  # position in the chunk of each row
    keys: list[str]
    deletes: list[bool]
    columns: list[tuple[Any, ...]]  # per checked field (see `Compiled.names`)
    stamps: dict[int, pa.Array]  # field position -> converted timestamps
    debezium: list[tuple[Any, ...] | None]
    errors: dict[int, RejectedMessage]  # row -> why a timestamp refused it (already quarantined)


def kafka_key_mismatches(c: Compiled, table: pa.Table) -> int:
    """Rows of a raw table whose Kafka key is present and names another key than the row's.

    Equal bytes are a match (plain-text keys); the rest are read as `key_from_kafka_key` reads
    a tombstone's key (JSON structs, schema-wrapped or not) and compared. Tombstones are keyed by
    their Kafka key, so they always match.
    """
    if not table.num_rows:
        return 0
    kafka = table.column("kafka_key")
    keys = table.column("key").cast(pa.binary())
    differ = pc.invert(pc.equal(kafka, keys).fill_null(True))
    candidates = pc.and_(differ, pc.is_valid(table.column("value")))
    if not pc.any(candidates).as_py():
        return 0
    if len(c.key_fields) == 1:  # compact struct keys as Kafka Connect writes them: in Arrow too
        opening = f'{{"{c.key_fields[0]}":'.encode()
        if c.key_kinds[0] == "int":  # the key text is the JSON number
            struct = pc.binary_join_element_wise(opening, keys, b"}", b"")
        else:
            struct = pc.binary_join_element_wise(opening + b'"', keys, b'"}', b"")
        # Only keys JSON writes as they are (no quote, backslash or control character to escape).
        plain = pc.invert(pc.match_substring_regex(table.column("key"), r'["\\\x00-\x1f]'))
        struct = pc.and_(pc.equal(kafka, struct).fill_null(False), plain)
        candidates = pc.and_(candidates, pc.invert(struct))
        if not pc.any(candidates).as_py():
            return 0
    picked = table.filter(candidates)
    n = 0
    fields = c.key_fields
    for kafka_key, key in zip(
        picked.column("kafka_key").to_pylist(), picked.column("key").to_pylist(), strict=True
    ):
        try:
            named = key_from_kafka_key(kafka_key, fields)
        except UnicodeDecodeError:
            named = None
        n += named != key
    return n


def parse_record(spec: StreamSpec, message: KafkaMessage) -> dict[str, Any]:
    """One message -> its raw row, or raise `RejectedMessage`.

    The row is what `split_messages` makes of the message, without `ingested_at` and the
    partition column (`kafka_date`), which belong to the batch. Timestamps are aware UTC
    datetimes; `kafka_headers` is a list of `{"key", "value"}` dicts.
    """
    splitter = Splitter(spec, ingested_at=EPOCH)
    splitter.add([message])
    raw, quarantine = splitter.finish()
    if quarantine.num_rows:
        error = quarantine.select(["error_class", "error_message"]).to_pylist()[0]
        raise RejectedMessage(error["error_class"], error["error_message"])
    row = raw.to_pylist()[0]
    del row["ingested_at"], row[PARTITION_COLUMN]
    return row


def split_messages(
    spec: StreamSpec, messages: Iterable[KafkaMessage] | MessageBatch, *, ingested_at: datetime
) -> tuple[pa.Table, pa.Table]:
    """Parse a batch: (raw table, quarantine table), each message in exactly one, in input order.

    The tables have exactly `raw_schema(spec)` and `quarantine_schema()`; the raw one may hold
    several record batches (one per `CHUNK_ROWS` messages).

    Args:
        spec: the stream the messages belong to.
        messages: messages of that stream's topic.
        ingested_at: the batch's ingest time (naive = UTC); also gives `kafka_date` to messages
            without a Kafka timestamp.
    """
    splitter = Splitter(spec, ingested_at=ingested_at)
    splitter.add(messages)
    return splitter.finish()


class Splitter:
    """`split_messages` a batch at a time, e.g. while the reader fetches the next one.

    Messages are checked one by one; the columns of every `CHUNK_ROWS` messages become Arrow
    arrays at once (timestamps included), so the Python objects of a big read never pile up.
    """

    def __init__(self, spec: StreamSpec, *, ingested_at: datetime) -> None:
        self._c = compile_spec(spec)
        self._ingested_at = utc(ingested_at)
        self._ingested_scalar = pa.scalar(self._ingested_at, type=TS)
        self._fallback_day = self._ingested_at.date().isoformat()
        self._days: dict[int, str] = {}
        self._chunks: list[pa.Table] = []
        self._bad: list[tuple[int, tuple[Any, ...]]] = []  # (input position, quarantine row)
        self._seen = 0
        self._mismatches = 0
        self._json_misses = 0  # chunks the JSON reader path failed in a row
        self._json_wait = 0  # chunks it still sits out
        self._pending: deque[tuple[MessageBatch, int, Future[pa.Table | None]]] = deque()  # chunks being read

    def add(self, messages: Iterable[KafkaMessage] | MessageBatch) -> list[pa.RecordBatch]:
        """Parse `messages`, the next ones in input order; returns the raw rows of the chunks
        finished meanwhile (the last ones may still be read: `drain` returns their rows).
        """
        size = CHUNK_ROWS
        known = len(self._chunks)
        if isinstance(messages, MessageBatch):
            for start in range(0, len(messages), size):
                self._add_chunk(messages if len(messages) <= size else messages.slice(start, start + size))
        else:
            it = iter(messages)
            while chunk := MessageBatch.from_messages(itertools.islice(it, size)):
                self._add_chunk(chunk)
        return self._batches_since(known)

    def drain(self) -> list[pa.RecordBatch]:
        """Finish the chunks still being read; returns their raw rows."""
        known = len(self._chunks)
        self._complete()
        return self._batches_since(known)

    @property
    def quarantined(self) -> int:
        """Messages refused so far (of the chunks finished)."""
        return len(self._bad)

    def finish(self) -> tuple[pa.Table, pa.Table]:
        """(raw table, quarantine table) of everything added, each in input order."""
        self._complete()
        c = self._c
        raw = pa.concat_tables(self._chunks) if self._chunks else c.raw_builder.schema.empty_table()
        self._bad.sort(key=lambda item: item[0])
        quarantine = QUARANTINE_BUILDER.build([row for _, row in self._bad], ingested_at=self._ingested_at)
        return raw, quarantine

    @property
    def kafka_key_mismatches(self) -> int:
        """Raw rows (of the chunks finished) whose Kafka key names another key than the record's
        key fields: ingested under the record's key, and counted (see the package docstring).
        """
        return self._mismatches

    def _keep(self, table: pa.Table) -> None:
        self._chunks.append(table)
        self._mismatches += kafka_key_mismatches(self._c, table)

    def _batches_since(self, known: int) -> list[pa.RecordBatch]:
        return [batch for table in self._chunks[known:] for batch in table.to_batches()]

    def _kafka_times(self, stamps: list[int | None]) -> tuple[list[int | None], list[str]]:
        """Each message's Kafka time in epoch microseconds (None: none) and `kafka_date`."""
        micros: list[int | None] = []
        days: list[str] = []
        known = self._days
        for ms in stamps:
            if ms is None or not MIN_MS <= ms <= MAX_MS:
                micros.append(None)
                days.append(self._fallback_day)
                continue
            micros.append(ms * 1000)
            day = known.get(ms // MS_PER_DAY)
            if day is None:
                day = known[ms // MS_PER_DAY] = partition_value(ms, ingested_at=self._ingested_at)
            days.append(day)
        return micros, days

    def _add_chunk(self, batch: MessageBatch) -> None:
        """Start the chunk on Arrow's JSON reader path on its own thread (Arrow and numpy release
        the GIL, so the next batches are fetched meanwhile), or parse it another way now. Chunks
        finish in input order.
        """
        while len(self._pending) >= READ_AHEAD:
            self._complete_one()
        first = self._seen
        self._seen += len(batch)
        if not self._c.debezium:
            read = self._json_start(batch)
            if read is not None:
                self._pending.append((batch, first, read))
                return
        self._complete()
        self._other_paths(batch, first)

    def _complete(self) -> None:
        while self._pending:
            self._complete_one()

    def _complete_one(self) -> None:
        batch, first, read = self._pending.popleft()
        table = self._json_end(read)
        if table is not None:
            self._keep(table)
        else:
            self._other_paths(batch, first)

    def _other_paths(self, batch: MessageBatch, first: int) -> None:
        """orjson a column at a time when every message is a good record, else message by
        message: what lands where is the same either way.
        """
        if not self._c.debezium and decode.orjson_loads is not None:
            try:
                table = self._orjson_chunk(batch)
            except ARROW_ERRORS:
                table = None
            if table is not None:
                self._keep(table)
                return
        self._message_chunk(batch, first)

    def _orjson_chunk(self, batch: MessageBatch) -> pa.Table | None:
        return orjson_chunk(self._c, batch, fallback_day=self._fallback_day, ingested=self._ingested_scalar)

    def _message_chunk(self, batch: MessageBatch, first: int) -> None:
        c = self._c
        micros, days = self._kafka_times(batch.timestamps_ms)

        kept: list[int] = []  # position in the batch of each row
        keys: list[str] = []
        deletes: list[bool] = []
        records: list[Sequence[Any]] = []
        debezium: list[tuple[Any, ...] | None] = []
        rejected: list[tuple[int, RejectedMessage]] = []
        for position, (key, value) in enumerate(zip(batch.keys, batch.values, strict=True)):
            try:
                row_key, is_delete, values, extra = check(c, key, value)
            except RejectedMessage as exc:
                rejected.append((position, exc))
                continue
            kept.append(position)
            keys.append(row_key)
            deletes.append(is_delete)
            records.append(values)
            debezium.append(extra)

        columns = list(zip(*records, strict=True)) if records else [()] * len(c.names)
        errors: dict[int, RejectedMessage] = {}  # row -> why a timestamp refused it
        stamps = {i: timestamps(columns[i], c.names[i], errors) for i in c.timestamp_fields}
        for row, exc in errors.items():
            rejected.append((kept[row], exc))
        for position, exc in rejected:
            self._quarantine(batch, micros, days, first + position, position, exc)
        if not records:
            return
        parsed = _Parsed(kept, keys, deletes, columns, stamps, debezium, errors)
        try:
            table = self._table(batch, micros, days, parsed)
        except ARROW_ERRORS:
            self._refuse_unstorable(batch, micros, days, first, parsed)
        else:
            self._keep(table)

    def _json_start(self, batch: MessageBatch) -> Future[pa.Table | None] | None:
        """`_json_prepare` and the read started, sitting out a growing number of chunks after
        each failure in a row, so a stream with bad messages in every chunk does not pay for it
        over and over.
        """
        if self._c.json_options is None:
            return None
        if self._json_wait:
            self._json_wait -= 1
            return None
        try:
            read = self._json_prepare(batch)
        except ARROW_ERRORS:
            read = None
        if read is None:
            self._json_failed()
        return read

    def _json_end(self, read: Future[pa.Table | None]) -> pa.Table | None:
        try:
            table = read.result()
        except ARROW_ERRORS:
            table = None
        if table is None:
            self._json_failed()
        else:
            self._json_misses = 0
        return table

    def _json_failed(self) -> None:
        self._json_misses += 1
        self._json_wait = min(2**self._json_misses - 1, JSON_MAX_WAIT)

    def _json_prepare(self, batch: MessageBatch) -> Future[pa.Table | None] | None:
        """What needs the messages' Python objects, here; then `read_chunk` started on its own
        thread (Arrow and numpy release the GIL, so the next batch is fetched meanwhile). None:
        a check here rules the chunk out.
        """
        values = batch.values
        if None in values or not all(batch.keys):  # tombstones, messages without a key
            return None
        kafka_times = kafka_arrays(batch.timestamps_ms, fallback_day=self._fallback_day)
        if kafka_times is None:
            return None
        micros, days = kafka_times
        value_array = pa.array(values, type=pa.binary())
        arrays = coordinate_arrays(batch, micros, value_array)
        return parse_pool().submit(
            read_chunk, self._c, value_array, b"\n".join(values), arrays, days, self._ingested_scalar
        )

    def _quarantine(
        self,
        batch: MessageBatch,
        micros: list[int | None],
        days: list[str],
        index: int,
        position: int,
        exc: RejectedMessage,
    ) -> None:
        row = coordinates(batch, micros, position)
        self._bad.append((index, (*row, exc.error_class, str(exc), days[position])))

    def _event_times(self, parsed: _Parsed) -> pa.Array:
        c = self._c
        i = c.event_time_index
        if i is None:
            times = pa.nulls(len(parsed.kept), type=TS)
        elif i in parsed.stamps:
            times = parsed.stamps[i]
        else:  # an event-time field declared with another kind: stored as epoch microseconds
            times = pa.array(parsed.columns[i], type=pa.int64()).cast(TS)
        if c.debezium:  # no event time in the row image: the source's commit time
            source = [
                ms * 1000 if ms is not None and MIN_MS <= ms <= MAX_MS else None
                for ms in (extra[_SOURCE_TS_MS] for extra in parsed.debezium)
            ]
            times = times.fill_null(pa.array(source, type=pa.int64()).cast(TS))
        return times

    def _table(
        self, batch: MessageBatch, micros: list[int | None], days: list[str], parsed: _Parsed
    ) -> pa.Table:
        """The raw table of a chunk's rows, a column at a time."""
        c = self._c
        n = len(batch)
        arrays = coordinate_arrays(batch, pa.array(micros, type=pa.int64()).cast(TS))
        if len(parsed.kept) < n:
            taken = pa.array(parsed.kept, type=pa.int64())
            arrays = [array.take(taken) for array in arrays]
        arrays += [
            pa.array(parsed.keys, type=pa.string()),
            pa.array(parsed.deletes, type=pa.bool_()),
            self._event_times(parsed),
        ]
        if c.debezium:
            extra = list(zip(*parsed.debezium, strict=True))
            arrays += [
                pa.array(values, type=field.type)
                for values, field in zip(extra, DEBEZIUM_COLUMNS, strict=True)
            ]
        for i, arrow_type in enumerate(c.types):
            stamps = parsed.stamps.get(i)
            arrays.append(stamps if stamps is not None else pa.array(parsed.columns[i], type=arrow_type))
        arrays.append(pa.repeat(self._ingested_scalar, len(parsed.kept)))
        day_list = days if len(parsed.kept) == n else [days[p] for p in parsed.kept]
        arrays.append(pa.array(day_list, type=pa.string()))
        table = pa.Table.from_arrays(arrays, schema=c.raw_builder.schema)
        if parsed.errors:  # rows a timestamp refused: already quarantined
            table = table.filter(pa.array([row not in parsed.errors for row in range(len(parsed.kept))]))
        return table

    def _refuse_unstorable(
        self,
        batch: MessageBatch,
        micros: list[int | None],
        days: list[str],
        first: int,
        parsed: _Parsed,
    ) -> None:
        """Slow path, only after Arrow refused a column: build the chunk from row tuples, find
        the rows Arrow refuses by bisection and quarantine them, naming the column (e.g. an int
        beyond int64, a lone surrogate in a string).
        """
        c = self._c
        builder = c.raw_builder
        stamps = {i: array.cast(pa.int64()).to_pylist() for i, array in parsed.stamps.items()}
        i = c.event_time_index
        if i is None:
            event_times: Sequence[Any] = [None] * len(parsed.kept)
        else:
            event_times = stamps[i] if i in stamps else parsed.columns[i]
        if c.debezium:
            event_times = [
                ms * 1000 if t is None and ms is not None and MIN_MS <= ms <= MAX_MS else t
                for t, ms in zip(event_times, (x[_SOURCE_TS_MS] for x in parsed.debezium), strict=True)
            ]
        rows: list[tuple[Any, ...]] = []
        index: list[int] = []
        for row, position in enumerate(parsed.kept):
            if row in parsed.errors:
                continue
            typed = [stamps[i][row] if i in stamps else parsed.columns[i][row] for i in range(c.n_kept)]
            extra = parsed.debezium[row] if c.debezium else ()
            rows.append(
                (
                    *coordinates(batch, micros, position),
                    parsed.keys[row],
                    parsed.deletes[row],
                    event_times[row],
                    *extra,
                    *typed,
                    days[position],
                )
            )
            index.append(first + position)
        bad = set(refused_rows(builder.row_type, rows, 0, len(rows)))
        kept = [row for position, row in enumerate(rows) if position not in bad]
        for position in sorted(bad):
            row = rows[position]
            detail = "row cannot be stored"
            for field, value in zip(builder.row_type, row, strict=True):
                try:
                    pa.array([value], type=field.type)
                except ARROW_ERRORS as exc:
                    detail = f"column {field.name!r} cannot be stored: {type(exc).__name__}: {exc}"
                    break
            err = reject(SCHEMA, detail)
            quarantined = (*row[:N_COORDINATES], err.error_class, str(err), row[-1])
            self._bad.append((index[position], quarantined))
        if kept:
            self._keep(builder.build(kept, ingested_at=self._ingested_at))
