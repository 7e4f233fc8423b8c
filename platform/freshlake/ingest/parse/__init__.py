"""Kafka messages -> raw rows and quarantine rows (invariant 3: nothing is lost on bad input).

Runs on every message, so the per-message path is one `json.loads`, dict lookups and checkers
compiled once per spec; whole chunks take faster paths when they can (see `splitter`). Pure: no
Kafka client, no Dagster.

Error classes (`RejectedMessage.error_class`, stored in `<stream>/quarantine.error_class`):

- `invalid_utf8`: the value (or a tombstone's key) is not UTF-8.
- `invalid_json`: the value is not JSON.
- `not_an_object`: the value is JSON but not an object.
- `envelope`: a Debezium stream's value is not a change event we can apply (see `cdc.debezium`).
- `missing_key`: no Kafka key, no key field in the record, or a tombstone whose key yields no id.
- `schema`: a required field is missing/null, a field has the wrong type or an unparseable
  timestamp, or a value the raw table cannot store (an int beyond int64, a lone surrogate).

Tombstones (value None) are deletes, not errors, as long as their Kafka key names a record.

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
    "NOT_AN_OBJECT",
    "SCHEMA",
    "RejectedMessage",
    "Splitter",
    "parse_record",
    "partition_value",
    "split_messages",
]
