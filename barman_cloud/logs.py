"""Structured logging: one JSON object per line on stderr.

Fields come only from the message and from explicit ``extra={...}`` keys, never from an
environment or a whole configuration object; values under names that look like credentials are
replaced by ``"***"`` before they are written.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

LEVELS = {
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE,
}

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
_SECRET_NAME = re.compile(
    r"(password|passwd|secret|token|credential|connection_?string|sas|private_?key|access_?key|account_?key)",
    re.I,
)
REDACTED = "***"


def redact(name: str, value: Any) -> Any:
    """Return ``value``, or a placeholder when ``name`` looks like it holds a credential."""
    if _SECRET_NAME.search(name):
        return REDACTED
    if isinstance(value, dict):
        return {str(k): redact(str(k), v) for k, v in value.items()}
    return value


class JSONFormatter(logging.Formatter):
    """Formats a record as one JSON line: ``ts``, ``level``, ``logger``, ``msg`` and extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD_ATTRIBUTES and not name.startswith("_"):
                entry[name] = redact(name, value)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def parse_level(name: str) -> int:
    """Map an upstream ``--log-level`` name (error, warning, info, debug, trace) to a level."""
    try:
        return LEVELS[name.lower()]
    except KeyError:
        choices = ", ".join(LEVELS)
        raise ValueError(f"unknown log level {name!r}: use one of {choices}") from None


def configure(level: str = "info", stream: TextIO | None = None) -> None:
    """Send every log record at ``level`` or above to ``stream`` (stderr) as JSON lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(parse_level(level))
