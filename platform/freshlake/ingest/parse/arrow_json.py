"""The fastest path: a chunk of JSON records read by Arrow's JSON reader (C++, no Python object
per field), when every message is a good record and Arrow reads each one as `decode.loads` does.
"""

from __future__ import annotations

import functools
import re
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from freshlake.delta.schemas import TS
from freshlake.ingest.parse.compiled import Compiled
from freshlake.ingest.parse.timestamps import text_timestamps

READ_AHEAD = 4  # chunks on the JSON reader path at once, each on its own thread
JSON_BLOCK = 1 << 20  # bytes per block of Arrow's JSON reader
_MAX_NESTING = 200  # brackets in a value up to which `json.loads` surely does not recurse too deep
# Bytes a NaN / Inf / Infinity token can follow (`:`, `,`, `[`, `-`, whitespace).
_BEFORE_TOKEN = np.frombuffer(b":,[- \t\n\r", dtype=np.uint8)


@functools.cache
def parse_pool() -> ThreadPoolExecutor:
    """Threads for `read_chunk`: made on first use, never at import."""
    return ThreadPoolExecutor(max_workers=READ_AHEAD, thread_name_prefix="freshlake-parse")


def read_chunk(
    c: Compiled,
    values: pa.Array,
    buffer: bytes,
    coordinates: list[pa.Array],
    days: pa.Array,
    ingested: pa.Scalar,
) -> pa.Table | None:
    """The chunk's raw table read by Arrow's JSON reader; else None (another path decides).
    Runs on its own thread: it reads no state that changes.

    The reader takes a few things `json.loads` refuses (or reads differently); the checks
    before and after it make sure none of them is in the chunk, each naming what it rules out.
    Types are checked by the reader (the spec's kinds as an explicit schema: a value of
    another JSON type, an int with a fraction or beyond int64, a duplicate field fails it).
    """
    n = len(values)
    # Raises on text that is not UTF-8 (anywhere, as `loads` decodes the whole value).
    texts = values.cast(pa.string())
    # Each value `{...}`: no BOM or surrounding space, no empty value, no bare `null` (which
    # the reader crashes on). The reader takes the values (one per line) as one stream of
    # documents; with these ends, no document can run from one value into the next (after
    # a value's last `}` comes a newline, then `{`: a syntax error, unless that `}` closed
    # the value's first document), so with the row count checked below, value i is row i.
    # Blocks end at a newline: a value cut there (at a newline inside it) fails to parse.
    if pc.starts_with(texts, "{").false_count or pc.ends_with(texts, "}").false_count:
        return None
    data = np.frombuffer(buffer, dtype=np.uint8)
    # NaN / Infinity tokens: the reader also takes `Inf` and `-NaN`, json.loads does not.
    if _has_nan_or_inf(data):
        return None
    # Nesting: json.loads gives up at about the recursion limit, the reader never does.
    brackets = np.count_nonzero(data == ord("{")) + np.count_nonzero(data == ord("["))
    if brackets - n > _MAX_NESTING and _deepest(values) > _MAX_NESTING:
        return None
    # Integers longer than Python converts from text (ignored fields too).
    if _has_long_integer(values):
        return None
    options = pj.ReadOptions(use_threads=False, block_size=JSON_BLOCK)  # chunks run side by side
    read = pj.read_json(pa.py_buffer(buffer), read_options=options, parse_options=c.json_options)
    if read.num_rows != n:  # a value held more than one document
        return None
    names = c.names
    columns = {name: read.column(name).combine_chunks() for name in names}
    key = columns[c.key_fields[0]]
    if key.null_count or any(columns[name].null_count for name in c.not_null if name in columns):
        return None
    if not all(_plain_floats(columns[names[i]]) for i in c.float_fields):
        return None
    stamps: dict[int, pa.Array] = {}
    for i in c.timestamp_fields:
        converted = text_timestamps(columns[names[i]])
        if converted is None:
            return None
        stamps[i] = converted
    if c.event_time_index is None:
        event_times = pa.nulls(n, type=TS)
    elif c.event_time_index in stamps:
        event_times = stamps[c.event_time_index]
    else:
        return None
    return pa.Table.from_arrays(
        [
            *coordinates,
            key if key.type == pa.string() else key.cast(pa.string()),  # an int key: "17"
            pa.repeat(pa.scalar(False), n),
            event_times,
            *[stamps[i] if i in stamps else columns[names[i]] for i in range(c.n_kept)],
            pa.repeat(ingested, n),
            days,
        ],
        schema=c.raw_builder.schema,
    )


def _deepest(values: pa.Array) -> int:
    """The most `{` and `[` in one value of a binary array (an upper bound of its nesting)."""
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32, count=len(values) + 1)
    data = np.frombuffer(values.buffers()[2], dtype=np.uint8, count=int(offsets[-1]))
    opening = ((data == ord("{")) | (data == ord("["))).astype(np.int32)
    return int(np.add.reduceat(opening, offsets[:-1]).max())


def _has_nan_or_inf(data: np.ndarray) -> bool:
    """Whether `NaN` or `Inf` follows a byte a JSON value can follow (in text too: then the
    chunk takes another path, slower but never wrong).
    """
    inner = data[1:-2]
    for token in (b"NaN", b"Inf"):
        at = np.flatnonzero(inner == token[0]) + 1
        at = at[(data[at + 1] == token[1]) & (data[at + 2] == token[2])]
        if at.size and np.isin(data[at - 1], _BEFORE_TOKEN).any():
            return True
    return False


def _has_long_integer(values: pa.Array) -> bool:
    """Whether a value holds a run of more digits than `int()` converts from text (then
    `json.loads` refuses it, while Arrow's reader skips it in a field it ignores).
    """
    limit = sys.get_int_max_str_digits()
    if not limit or pc.max(pc.binary_length(values)).as_py() <= limit:
        return False
    run = re.compile(rb"\d{%d}" % (limit + 1))
    return any(run.search(v) for v in values.to_pylist() if len(v) > limit)


def _plain_floats(column: pa.Array) -> bool:
    """No float `loads` could read otherwise: beyond 2**63 (orjson reads long integers as
    floats, json.loads refuses them for a float field when too large), or -0.0 (`-0` is the
    integer 0 for json.loads, -0.0 for Arrow).
    """
    if column.null_count == len(column):
        return True
    if pc.max(pc.abs(column)).as_py() >= 2.0**63:
        return False
    return not pc.any(pc.equal(column.view(pa.int64()), -(2**63))).as_py()
