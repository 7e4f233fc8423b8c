"""A stream's order as one sortable ASCII string: the `version` of `current` and LanceDB rows.

`version = <prefix><partition: 8 hex><offset: 16 hex>`. The prefix encodes the event's order
values in fixed width, so comparing two versions as strings (Python `<`, Delta's SQL `>`,
LanceDB's `source_version <= '...'`) is comparing the tuples (order values..., partition,
offset) (invariant 4):

- json streams (and debezium streams with `order_by`): the `order_fields` in order, each 16 hex
  digits: an int as `value XOR 2**63` (negatives sort first), a timestamp as int64 microseconds
  the same way, a float through the usual order-preserving bit flip;
- debezium streams without `order_by`: the source position, a kind letter and its components:
  `M` MySQL (binlog file number, pos, row), `P` PostgreSQL (lsn, txId), `S` SQL Server
  (commit_lsn, change_lsn, 20 hex each), `T` only `ts_ms`. One stream comes from one connector,
  so its rows share a kind; a missing secondary component (txId, row, change_lsn) sorts lowest.

Kafka offsets therefore decide only between events with equal order values, and between
partitions such a tie is decided by (partition, offset): deterministic, so any arrival order
converges to one state; `cross_partition_ties` counts them. A row with no order value (a
tombstone) gets no prefix here: `assign_versions` gives it the prefix of the previous row of its
key in its partition, or the `UNVERSIONED` mark, which sorts below every prefix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from freshlake.errors import FreshlakeConfigError
from freshlake.streams import StreamSpec

PARTITION_WIDTH = 8
OFFSET_WIDTH = 16
SUFFIX_WIDTH = PARTITION_WIDTH + OFFSET_WIDTH
# The prefix of a row with no order value and no earlier row to take one from: '!' sorts below
# every hex digit and kind letter, and marks the row for the MERGE (see freshlake.delta.current).
UNVERSIONED = "!"
ORDER_TYPES = frozenset({"int", "float", "timestamp"})

_SIGN = np.uint64(1 << 63)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_SQLSERVER_PARTS = (8, 8, 4)  # "00000025:00000d98:0002"


# -- fixed-width words ------------------------------------------------------------------------


def int_words(values: np.ndarray) -> np.ndarray:
    """int64 -> uint64 whose unsigned order is the signed order (`value XOR 2**63`)."""
    return np.asarray(values, dtype=np.int64).view(np.uint64) ^ _SIGN


def float_words(values: np.ndarray) -> np.ndarray:
    """float64 -> uint64 whose unsigned order is the numeric order (negatives: all bits
    flipped; others: the sign bit set)."""
    bits = np.asarray(values, dtype=np.float64).view(np.uint64)
    return np.where(bits >> np.uint64(63) == 1, ~bits, bits | _SIGN)


def hex_digits(words: np.ndarray) -> np.ndarray:
    """uint64 (n,) -> ASCII lowercase hex, uint8 (n, 16), most significant digit first."""
    be = np.ascontiguousarray(words, dtype=np.uint64).astype(">u8").view(np.uint8).reshape(-1, 8)
    out = np.empty((be.shape[0], 16), np.uint8)
    out[:, 0::2] = _HEX[be >> 4]
    out[:, 1::2] = _HEX[be & 0x0F]
    return out


def _strings(matrix: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """(n, w) ASCII bytes -> a string array of n fixed-width strings (null where not valid)."""
    n, width = matrix.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32) if n else np.zeros(1, np.int32)
    data = pa.py_buffer(np.ascontiguousarray(matrix).tobytes())
    strings = pa.StringArray.from_buffers(n, pa.py_buffer(offsets.tobytes()), data)
    if valid is None or bool(valid.all()):
        return strings
    return pc.if_else(pa.array(valid), strings, pa.nulls(n, pa.string()))


def _join(parts: Sequence[pa.Array]) -> pa.Array:
    """Concatenate string arrays row by row (null if any part is null)."""
    if len(parts) == 1:
        return parts[0]
    return pc.binary_join_element_wise(*parts, "")


def _values(column: pa.ChunkedArray | pa.Array, kind: str, *, name: str) -> tuple[np.ndarray, np.ndarray]:
    """An order column as (uint64 sortable words, validity)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    valid = np.asarray(array.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    if kind == "timestamp":
        if pa.types.is_timestamp(array.type):
            array = array.cast(pa.timestamp("us", tz=array.type.tz))
        array = array.cast(pa.int64())
        kind = "int"
    if kind == "int":
        values = array.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        return int_words(values), valid
    if kind == "float":
        values = array.cast(pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False)
        return float_words(values), valid
    msg = (
        f"order field {name!r} has type {kind!r}: order_by fields must be int, float or timestamp "
        "(a version, a revision or an event time); pick such a field in order_by"
    )
    raise FreshlakeConfigError(msg)


def _column(table: pa.Table, name: str, kind: str) -> tuple[np.ndarray, np.ndarray]:
    if name in table.column_names:
        return _values(table.column(name), kind, name=name)
    n = table.num_rows
    return np.zeros(n, np.uint64), np.zeros(n, bool)  # a column raw does not have (yet): null


def order_kinds(spec: StreamSpec) -> list[tuple[str, str]]:
    """(raw column, field type) of each order field; raises for a field that cannot order."""
    out = []
    for name in spec.order_fields:
        kind, column = spec.fields.get(name), name
        if kind is None and name == spec.event_time_field:
            kind, column = "timestamp", "event_time"  # the parsed event time raw always has
        if kind not in ORDER_TYPES:
            msg = (
                f"stream {spec.name!r}: order field {name!r} is "
                f"{'not among its fields' if kind is None else f'of type {kind!r}'}; order_by "
                "fields must be declared fields of type int, float or timestamp"
            )
            raise FreshlakeConfigError(msg)
        out.append((column, kind))
    return out


# -- prefixes ---------------------------------------------------------------------------------


def order_prefixes(table: pa.Table, *, spec: StreamSpec) -> pa.Array:
    """Raw rows -> the order prefix of each row; null where the row has no order value."""
    if spec.format == "debezium" and not spec.order_by:
        return source_position_prefixes(table)
    kinds = order_kinds(spec)
    n = table.num_rows
    if not kinds:  # no declared order: every row ties, (partition, offset) decides
        return pa.array([""] * n, pa.string())
    blocks, valid = [], np.ones(n, bool)
    for column, kind in kinds:
        words, ok = _column(table, column, kind)
        blocks.append(hex_digits(words))
        valid &= ok
    return _strings(np.hstack(blocks), valid)


def source_position_prefixes(table: pa.Table) -> pa.Array:
    """Debezium rows -> `<kind><components>` from the raw `source_*` columns (see module doc)."""
    n = table.num_rows

    def ints(name: str) -> tuple[np.ndarray, np.ndarray]:
        return _column(table, name, "int")

    def kind(letter: str, parts: list[tuple[np.ndarray, np.ndarray]], required: np.ndarray) -> pa.Array:
        matrix = np.hstack(
            [np.full((n, 1), ord(letter), np.uint8)]
            + [hex_digits(np.where(ok, words, np.uint64(0))) for words, ok in parts]
        )
        return _strings(matrix, required)

    lsn, txid = ints("source_lsn"), ints("source_txid")
    pos, row = ints("source_pos"), ints("source_row")
    seq = _binlog_sequence(table)
    ts = ints("source_ts_ms")
    commit, change = _sqlserver_lsn(table, "source_commit_lsn"), _sqlserver_lsn(table, "source_change_lsn")
    mysql = kind("M", [seq, pos, row], seq[1] | pos[1])
    postgres = kind("P", [lsn, txid], lsn[1])
    sqlserver = _strings(np.hstack([np.full((n, 1), ord("S"), np.uint8), commit[0], change[0]]), commit[1])
    fallback = kind("T", [ts], ts[1])
    out = fallback
    for candidate in (sqlserver, postgres, mysql):  # the most specific position present wins
        out = pc.if_else(candidate.is_valid(), candidate, out)
    return out


def _binlog_sequence(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """`mysql-bin.000003` -> 3 (the binlog file's number orders files)."""
    if "source_file" not in table.column_names:
        n = table.num_rows
        return np.zeros(n, np.uint64), np.zeros(n, bool)
    files = table.column("source_file").combine_chunks().cast(pa.string())
    digits = pc.struct_field(pc.extract_regex(files, r"(?P<seq>\d+)$"), "seq")
    return _values(pc.cast(digits, pa.int64()), "int", name="source_file")


def _sqlserver_lsn(table: pa.Table, name: str) -> tuple[np.ndarray, np.ndarray]:
    """`00000025:00000d98:0002` -> 20 lowercase hex digits, (n, 20) ASCII, and validity."""
    width = sum(_SQLSERVER_PARTS)
    n = table.num_rows
    if name not in table.column_names:
        return np.full((n, width), ord("0"), np.uint8), np.zeros(n, bool)
    values = table.column(name).combine_chunks().cast(pa.string()).to_pylist()
    texts = [_sqlserver_text(v) for v in values]
    valid = np.array([t is not None for t in texts], bool)
    joined = "".join(t if t is not None else "0" * width for t in texts).encode("ascii")
    matrix = np.frombuffer(joined, np.uint8).reshape(n, width) if n else np.zeros((0, width), np.uint8)
    return matrix, valid


def _sqlserver_text(value: str | None) -> str | None:
    if not value:
        return None
    parts = value.lower().split(":")
    if len(parts) != len(_SQLSERVER_PARTS) or any(
        len(p) > w or not all(c in "0123456789abcdef" for c in p)
        for p, w in zip(parts, _SQLSERVER_PARTS, strict=True)
    ):
        return None
    return "".join(p.rjust(w, "0") for p, w in zip(parts, _SQLSERVER_PARTS, strict=True))


# -- versions ---------------------------------------------------------------------------------


def suffixes(partitions: pa.Array | np.ndarray, offsets: pa.Array | np.ndarray) -> pa.Array:
    """(partition, offset) -> `<partition 8 hex><offset 16 hex>` strings."""
    part = np.asarray(partitions, dtype=np.int64).astype(np.uint64)
    off = np.asarray(offsets, dtype=np.int64).view(np.uint64)
    return _strings(np.hstack([hex_digits(part)[:, 16 - PARTITION_WIDTH :], hex_digits(off)]))


def version_of(prefix: str, *, partition: int, offset: int) -> str:
    """One version string (for tests and tools; the fold builds them vectorised)."""
    return f"{prefix}{partition:0{PARTITION_WIDTH}x}{offset:0{OFFSET_WIDTH}x}"


def split_version(version: str) -> tuple[str, int, int]:
    """version -> (prefix, partition, offset)."""
    prefix, suffix = version[:-SUFFIX_WIDTH], version[-SUFFIX_WIDTH:]
    return prefix, int(suffix[:PARTITION_WIDTH], 16), int(suffix[PARTITION_WIDTH:], 16)


def describe(version: str | None) -> str:
    """A version for people: `<prefix> @ partition p offset o` (prefix `!`: no order value)."""
    if version is None or len(version) < SUFFIX_WIDTH:
        return str(version)
    prefix, partition, offset = split_version(version)
    return f"{prefix or '-'} @ partition {partition} offset {offset}"


def assign_versions(frame, *, spec: StreamSpec, column: str = "version"):
    """Raw rows (polars, with `key`, `kafka_partition`, `kafka_offset`) -> the same rows, sorted
    by (key, partition, offset), with the version in `column` and `has_order` (false: the prefix
    was taken from the row before it in its key and partition, or is `UNVERSIONED`)."""
    import polars as pl

    prefixes = order_prefixes(frame.to_arrow(), spec=spec)
    part = frame.get_column("kafka_partition").to_numpy()
    off = frame.get_column("kafka_offset").to_numpy()
    return (
        frame.with_columns(
            pl.Series("_prefix", prefixes, dtype=pl.String),
            pl.Series("_suffix", suffixes(part, off), dtype=pl.String),
        )
        .sort("key", "kafka_partition", "kafka_offset")
        .with_columns(
            pl.col("_prefix").is_not_null().alias("has_order"),
            pl.col("_prefix").forward_fill().over("key", "kafka_partition").fill_null(UNVERSIONED),
        )
        .with_columns(pl.concat_str("_prefix", "_suffix").alias(column))
        .drop("_prefix", "_suffix")
    )


def cross_partition_ties(versioned) -> int:
    """Keys whose newest order prefix is held by rows of more than one partition: decided by
    (partition, offset), not by the source's order. `versioned` is `assign_versions` output."""
    import polars as pl

    if versioned.height == 0:
        return 0
    prefix = pl.col("version").str.slice(0, pl.col("version").str.len_bytes() - SUFFIX_WIDTH)
    ordered = versioned.filter(~pl.col("version").str.starts_with(UNVERSIONED)).with_columns(
        prefix.alias("_prefix")
    )
    top = ordered.filter(pl.col("_prefix") == pl.col("_prefix").max().over("key"))
    per_key = top.group_by("key").agg(pl.col("kafka_partition").n_unique().alias("n"))
    return int(per_key.filter(pl.col("n") > 1).height)
