"""Why a message goes to quarantine: the error classes and the exceptions that carry them."""

from __future__ import annotations

from typing import Final

import pyarrow as pa

INVALID_UTF8: Final = "invalid_utf8"
INVALID_JSON: Final = "invalid_json"
NOT_AN_OBJECT: Final = "not_an_object"
ENVELOPE: Final = "envelope"
MISSING_KEY: Final = "missing_key"
SCHEMA: Final = "schema"
MISSING_VERSION: Final = "missing_version"
ERROR_CLASSES: tuple[str, ...] = (
    INVALID_UTF8,
    INVALID_JSON,
    NOT_AN_OBJECT,
    ENVELOPE,
    MISSING_KEY,
    SCHEMA,
    MISSING_VERSION,
)

MAX_ERROR_MESSAGE = 500
# Arrow refuses a value the checks let through (e.g. a lone surrogate in a string).
ARROW_ERRORS = (pa.ArrowException, UnicodeEncodeError, OverflowError, TypeError, ValueError)

JSON_TYPE_NAMES = {
    type(None): "null",
    bool: "bool",
    int: "int",
    float: "float",
    str: "string",
    list: "list",
    dict: "object",
}


class RejectedMessage(ValueError):
    """A message that goes to quarantine; `error_class` is one of `ERROR_CLASSES`."""

    def __init__(self, error_class: str, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class


class BadValue(ValueError):
    """A field value of the right JSON type that still cannot be converted (e.g. not ISO-8601)."""


def reject(error_class: str, message: str) -> RejectedMessage:
    """The exception for a quarantined message, its text cut to `MAX_ERROR_MESSAGE`."""
    if len(message) > MAX_ERROR_MESSAGE:
        message = message[: MAX_ERROR_MESSAGE - 3] + "..."
    return RejectedMessage(error_class, message)
