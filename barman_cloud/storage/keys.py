"""Checks on object keys that come from outside (listings, requests, manifests)."""

from __future__ import annotations

from barman_cloud.errors import InvalidInput


def check_key(key: str) -> str:
    """Refuse keys no backend can store safely: empty, NUL, absolute, or with ``.``/``..`` segments."""
    if not key or "\x00" in key or key.startswith("/"):
        raise InvalidInput(f"invalid object key {key!r}", hint="keys are relative, non-empty and without NUL")
    if any(segment in (".", "..") for segment in key.split("/")):
        raise InvalidInput(f"invalid object key {key!r}", hint="keys may not contain '.' or '..' segments")
    return key
