"""Structured logging: one JSON object per line on stderr.

Fields come only from the message and from explicit ``extra={...}`` keys, never from an
environment or a whole configuration object; values under names that look like credentials are
replaced by ``"***"`` before they are written. Secret values read from Secrets are registered
(:func:`register_secret`) and scrubbed from every line, whoever logged it: at ``trace`` the
libraries' own debug output (botocore logs its signed requests, session token included) is let
through, with those values replaced; at ``debug`` and above the libraries log INFO and above only.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import quote

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

# Loggers of the libraries under us: their DEBUG output is request dumps (headers, signatures).
LIBRARY_LOGGERS = ("aiobotocore", "botocore", "boto3", "s3transfer", "urllib3", "aiohttp", "azure",
                   "google", "gcloud", "kubernetes_asyncio", "grpclib", "hpack", "h2", "asyncio")  # fmt: skip
# Loggers that print credentials obtained at run time (STS / workload-identity answers, signed
# requests with their session token): not Secret values we could scrub, so never below INFO.
CREDENTIAL_LOGGERS = ("botocore.credentials", "botocore.parsers", "botocore.endpoint", "botocore.auth",
                      "aiobotocore.credentials", "aiobotocore.endpoint", "azure.identity",
                      "azure.core.pipeline.policies.http_logging_policy")  # fmt: skip
MIN_SECRET_LENGTH = 4

_secrets_lock = threading.Lock()
_secret_forms: tuple[str, ...] = ()


def _forms(value: str) -> set[str]:
    """The ways a value shows up in a message or a JSON line: as is, escaped by repr or JSON,
    percent-encoded (signed URLs, canonical requests)."""
    return {
        value,
        repr(value)[1:-1],
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        quote(value, safe=""),
        quote(value),
    }


def register_secret(value: str | bytes | None) -> None:
    """Never write ``value`` in a log line from now on (values shorter than 4 characters are
    ignored: scrubbing them would garble every line)."""
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            return
    if value is None:
        return
    global _secret_forms
    candidates = {v for v in (value, value.strip()) if len(v) >= MIN_SECRET_LENGTH}
    if not candidates:
        return
    with _secrets_lock:
        forms = set(_secret_forms)
        for candidate in candidates:
            forms |= {form for form in _forms(candidate) if len(form) >= MIN_SECRET_LENGTH}
        # Longest first: a secret containing another is replaced whole.
        _secret_forms = tuple(sorted(forms, key=len, reverse=True))


def scrub(text: str) -> str:
    """``text`` with every registered secret value replaced by ``***``."""
    for form in _secret_forms:
        if form in text:
            text = text.replace(form, REDACTED)
    return text


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
        if not _secret_forms:
            return json.dumps(entry, default=str, ensure_ascii=False)
        # Values first (a secret in a message is then one token), the whole line as a last resort.
        entry = {key: scrub(value) if isinstance(value, str) else value for key, value in entry.items()}
        return scrub(json.dumps(entry, default=str, ensure_ascii=False))


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
    library_level = logging.NOTSET if parse_level(level) <= TRACE else max(parse_level(level), logging.INFO)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(library_level)
    for name in CREDENTIAL_LOGGERS:
        logging.getLogger(name).setLevel(max(library_level, logging.INFO))
