"""Timestamps: field values and Kafka times -> epoch microseconds.

A timestamp field may hold ISO-8601 text (naive = UTC) or an epoch number. Which unit a number
is in: the Debezium envelope's `schema` says it when there is one (`logical_us`); without one,
its magnitude decides (`epoch_us`): below 10**14 it is milliseconds (years up to 5138), from
there microseconds (from 1973 on). Only microsecond times within three years of 1970 sent
without a schema would be misread; declare the unit with a schema to be exact.

Rows carry timestamps as ints: Arrow turns a column of ints into timestamps in one cast, several
times faster than converting aware datetimes one by one. A whole column is converted by Arrow
when it can vouch for every value (`timestamps_at_once`), else value by value (`epoch_us`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from freshlake.delta.schemas import TS
from freshlake.ingest.parse.errors import ARROW_ERRORS, SCHEMA, BadValue, RejectedMessage, reject

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_EPOCH_DATE = date(1970, 1, 1)
_ONE_US = timedelta(microseconds=1)
MS_PER_DAY = 86_400_000
# What a datetime can hold: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999Z
MIN_US = -62_135_596_800_000_000
MAX_US = 253_402_300_799_999_999
MIN_MS, MAX_MS = MIN_US // 1000, MAX_US // 1000
MIN_FAST_DAY_MS = -30_610_224_000_000  # 1000-01-01: Arrow writes 4-digit years as isoformat

# ISO-8601 texts that Arrow's cast reads exactly as `epoch_us` does (the tests compare the two);
# a column with any other text goes through `epoch_us` value by value.
# Years 1000-8999 only: with any UTC offset those are within what a datetime holds.
_ISO_TIME = r"^[1-8]\d{3}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?"
_ISO_AWARE = _ISO_TIME + r"(Z|[+-]\d{2}:\d{2})$"
_ISO_NAIVE = _ISO_TIME + "$"
_NAIVE_TS = pa.timestamp("us")


MICROS_FROM = 10**14  # epoch numbers this large or larger are microseconds, smaller ones millis

# Logical types (the `name` in a Kafka Connect / Debezium schema) of epoch numbers -> micros.
LOGICAL_TIMES: dict[str, int | None] = {  # multiply by n, or None: nanoseconds (divide)
    "io.debezium.time.Timestamp": 1000,  # ms
    "org.apache.kafka.connect.data.Timestamp": 1000,  # ms
    "io.debezium.time.MicroTimestamp": 1,
    "io.debezium.time.NanoTimestamp": None,
    "io.debezium.time.Date": 86_400_000_000,  # days
    "org.apache.kafka.connect.data.Date": 86_400_000_000,  # days
}


def epoch_us(value: str | int) -> int:
    """ISO-8601 text (naive = UTC) or an epoch number (millis or micros, by magnitude) -> micros."""
    if type(value) is str:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            msg = f"expected timestamp (ISO-8601 or epoch ms/us), got string {value[:40]!r}"
            raise BadValue(msg) from None
        us = (parsed - (_NAIVE_EPOCH if parsed.tzinfo is None else EPOCH)) // _ONE_US
    else:
        us = value * 1000 if -MICROS_FROM < value < MICROS_FROM else value
    if MIN_US <= us <= MAX_US:
        return us
    msg = f"timestamp {str(value)[:40]!r} is out of range"
    raise BadValue(msg)


def logical_us(value: int, logical: str) -> int:
    """An epoch number of a `LOGICAL_TIMES` type -> epoch microseconds."""
    factor = LOGICAL_TIMES[logical]
    us = value // 1000 if factor is None else value * factor
    if MIN_US <= us <= MAX_US:
        return us
    msg = f"timestamp {str(value)[:40]!r} ({logical}) is out of range"
    raise BadValue(msg)


def timestamps(values: tuple[Any, ...], name: str, errors: dict[int, RejectedMessage]) -> pa.Array:
    """A column of timestamp field values as a `timestamp[us, UTC]` array: texts as `epoch_us`
    reads them, numbers already in microseconds (the message path converts them, see `checks`).

    A value it refuses is null in the array and its row gets an error in `errors` (keyed by
    position), unless an earlier field already gave that row one.
    """
    try:
        fast = timestamps_at_once(values, micros=True)
    except ARROW_ERRORS:
        fast = None
    if fast is not None:
        return fast
    out: list[int | None] = []
    for position, value in enumerate(values):
        if value is None:
            out.append(None)
            continue
        try:
            out.append(value if type(value) is int else epoch_us(value))
        except BadValue as exc:
            out.append(None)
            if position not in errors:
                errors[position] = reject(SCHEMA, f"field {name!r}: {exc}")
    return pa.array(out, type=pa.int64()).cast(TS)


def timestamps_at_once(values: Sequence[Any], *, micros: bool = False) -> pa.Array | None:
    """The column converted by Arrow, or None (or an Arrow error) when it cannot vouch for it:
    text not in a form it reads like `datetime.fromisoformat`, mixed text and numbers, values
    out of range. Numbers are micros with `micros`, else as `epoch_us` reads them.
    """
    try:
        texts = pa.array(values, type=pa.string())
    except ARROW_ERRORS:  # numbers, or a mix
        numbers = pa.array(values, type=pa.int64())
        if not micros:  # wraps where abs >= MICROS_FROM, but those take the other branch
            small = pc.less(pc.abs_checked(numbers), MICROS_FROM)  # raises for -2**63
            numbers = pc.if_else(small, pc.multiply(numbers, 1000), numbers)
        low, high = pc.min_max(numbers).values()
        if low.is_valid and (low.as_py() < MIN_US or high.as_py() > MAX_US):
            return None
        return numbers.cast(TS)
    return text_timestamps(texts)


def text_timestamps(texts: pa.Array) -> pa.Array | None:
    """A string column as `timestamp[us, UTC]` when Arrow reads every text like `epoch_us`."""
    if texts.null_count == len(texts):
        return texts.cast(TS)
    # Texts of one layout all match a pattern or none does: then one match says it for all.
    sample = texts.slice(0, 1) if one_layout(texts) else texts
    if not pc.match_substring_regex(sample, _ISO_AWARE).false_count:
        return texts.cast(TS)
    if not pc.match_substring_regex(sample, _ISO_NAIVE).false_count:  # naive means UTC
        return texts.cast(_NAIVE_TS).view(TS)
    return None


def one_layout(texts: pa.Array) -> bool:
    """Whether every text is as long as the first, with an ASCII digit wherever the first has
    one (and, for `_ISO_TIME`'s year, 1-8 at the start) and the first's byte everywhere else.
    The ISO patterns are made of fixed characters and `\\d` only, so such texts match them
    all or none.
    """
    n = len(texts)
    if texts.null_count or n < 2:
        return False
    at = texts.offset
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int32, count=at + n + 1)[at:]
    width = int(offsets[1] - offsets[0])
    if width == 0 or int(offsets[-1] - offsets[0]) != width * n or np.any(np.diff(offsets) != width):
        return False
    data = np.frombuffer(texts.buffers()[2], dtype=np.uint8, count=int(offsets[-1]))[offsets[0] :]
    rows = data.reshape(n, width)
    first = rows[0]
    digit = (first >= ord("0")) & (first <= ord("9"))
    digits = rows[:, digit]
    years = rows[:, 0]
    return bool(
        ((digits >= ord("0")) & (digits <= ord("9"))).all()
        and (rows[:, ~digit] == first[~digit]).all()
        and ((years >= ord("1")) & (years <= ord("8"))).all()
    )


def kafka_ms(ms: int | None) -> int | None:
    """Kafka timestamp in epoch ms, or None when absent or outside what a datetime can hold."""
    if ms is None or not MIN_MS <= ms <= MAX_MS:
        return None
    return ms


def utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def partition_value(timestamp_ms: int | None, *, ingested_at: datetime) -> str:
    """`kafka_date`: the UTC day of the Kafka timestamp, or of `ingested_at` when there is none."""
    ms = kafka_ms(timestamp_ms)
    if ms is None:
        return utc(ingested_at).date().isoformat()
    return (_EPOCH_DATE + timedelta(days=ms // MS_PER_DAY)).isoformat()
