"""Errors a person can act on: each message says what went wrong and what to do."""

from __future__ import annotations


class FreshlakeError(Exception):
    """Base class for freshlake errors."""


class FreshlakeConfigError(FreshlakeError):
    """A setting is wrong or a required service is unreachable; the message says the fix."""


class BrokerStartError(FreshlakeError):
    """The embedded broker did not come up (busy port, missing binary, early exit)."""
