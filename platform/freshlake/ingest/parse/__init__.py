"""Kafka messages -> raw rows and quarantine rows (invariant 3: nothing is lost on bad input).

Runs on every message, so the per-message path is one `json.loads`, dict lookups and checkers
compiled once per spec; whole chunks take faster paths when they can (see `splitter`). Pure: no
Kafka client, no Dagster.

Keys. The row key (`key` column) is built from the record's declared key fields
(`spec.key_fields`; for Debezium inside `after`, or `before` for a delete), each a string or an
integer: one field gives its value as text (`17` -> "17", a string as is); several give the
compact JSON array of the values in declared order (`["EU",17]`, non-ASCII kept as is). A
tombstone's key comes from its Kafka key, built the same way: a JSON struct holding the key
fields (possibly schema/payload-wrapped, as Debezium sends it), or for one key field the plain
UTF-8 text (or a JSON string); for several fields also a JSON array of the values.

Kafka key vs record key. Producers may key messages by another field (partition locality): a
message whose Kafka key is present but names another key than its record is ingested under the
record's key and counted (`Splitter.kafka_key_mismatches`), never quarantined. Ordering never
relies on the partition a key lands in (the fold orders by `spec.order_fields`). A message with
no Kafka key at all is still quarantined (`missing_key`).

Types. `string`, `int` (exact: 3.0 and true are not ints), `float` (ints accepted), `bool`,
`decimal` (stored as exact text: JSON numbers, decimal strings, Debezium Decimal bytes and
VariableScaleDecimal structs), `list` / `object` (kept as compact sorted JSON text), and
`timestamp`: ISO-8601 text (naive = UTC) or an epoch number. How a number's unit is decided
(see `timestamps`): a Debezium envelope with `schemas.enable=true` is read with its schema:
`io.debezium.time.Timestamp` (ms), `MicroTimestamp` (us), `NanoTimestamp` (ns), `Date` (days),
`ZonedTimestamp` (ISO text), the Kafka Connect `Timestamp` / `Date` alike, and
`org.apache.kafka.connect.data.Decimal` bytes with the schema's `scale`. Without a schema, the
magnitude decides: below 10**14 milliseconds, else microseconds (a PostgreSQL `timestamp`
column's int64 micros, e.g. 1796181528076854, reads right); base64 decimals then cannot be read
and are quarantined with the setting to change. A field the message carries but the spec does
not declare stays in the raw `value` and never quarantines the message; a declared field whose
type changes is quarantined with the field, the expected and the sent type.

Error classes (`RejectedMessage.error_class`, stored in `<stream>/quarantine.error_class`):

- `invalid_utf8`: the value (or a tombstone's key) is not UTF-8.
- `invalid_json`: the value is not JSON.
- `not_an_object`: the value is JSON but not an object.
- `envelope`: a Debezium stream's value is not a change event we can apply (see `cdc.debezium`).
- `missing_key`: no Kafka key, no key field in the record, or a tombstone whose key yields no id.
- `schema`: a required field is missing/null, a field has the wrong type or an unparseable
  timestamp or decimal, or a value the raw table cannot store (an int beyond int64, a lone
  surrogate).
- `missing_version`: the message cannot be ordered: a field of `spec.order_fields` is missing
  or null, or (Debezium ordered by the source position) a change event has no source position
  (`lsn`, `file`/`pos`, `commit_lsn`/`change_lsn`, `source.ts_ms`) and no `ts_ms`.

Tombstones (value None) are deletes, not errors, as long as their Kafka key names a record; a
Debezium delete (`op` d) needs no order field in `before` (it may hold only the primary key).

Modules: `errors` (the classes), `fields` and `compiled` (type checks, compiled once per spec),
`timestamps`, `decode` and `checks` (the message path), `arrow_json` and `orjson_chunk` (the two
chunk-at-once JSON paths), `rows` (coordinates and table building), `splitter` (which path a
chunk takes). Import from this package only.
"""

from __future__ import annotations

from freshlake.ingest.parse.errors import (
    ENVELOPE,
    ERROR_CLASSES,
    INVALID_JSON,
    INVALID_UTF8,
    MAX_ERROR_MESSAGE,
    MISSING_KEY,
    MISSING_VERSION,
    NOT_AN_OBJECT,
    SCHEMA,
    RejectedMessage,
)
from freshlake.ingest.parse.splitter import Splitter, parse_record, split_messages
from freshlake.ingest.parse.timestamps import partition_value

__all__ = [
    "ENVELOPE",
    "ERROR_CLASSES",
    "INVALID_JSON",
    "INVALID_UTF8",
    "MAX_ERROR_MESSAGE",
    "MISSING_KEY",
    "MISSING_VERSION",
    "NOT_AN_OBJECT",
    "SCHEMA",
    "RejectedMessage",
    "Splitter",
    "parse_record",
    "partition_value",
    "split_messages",
]
