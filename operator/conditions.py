"""``status.conditions`` as Kubernetes API conventions describe them.

Each condition has ``type``, ``status`` (``"True"``, ``"False"`` or ``"Unknown"``), a CamelCase
``reason``, a human ``message``, ``observedGeneration`` (the ``metadata.generation`` the
controller looked at) and ``lastTransitionTime``, which changes only when ``status`` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

Status = Literal["True", "False", "Unknown"]

READY = "Ready"
CREDENTIALS_VALID = "CredentialsValid"
REACHABLE = "Reachable"
RETENTION_APPLIED = "RetentionApplied"
BACKUPS_ON_SCHEDULE = "BackupsOnSchedule"
ORDER = (READY, CREDENTIALS_VALID, REACHABLE, RETENTION_APPLIED, BACKUPS_ON_SCHEDULE)
"""The ObjectStore's conditions, in the order they are written."""


def timestamp(moment: datetime | None = None) -> str:
    """RFC 3339 in UTC with second precision, as Kubernetes writes times."""
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Condition:
    type: str
    status: Status
    reason: str
    message: str

    @property
    def is_true(self) -> bool:
        return self.status == "True"


def true(kind: str, reason: str, message: str) -> Condition:
    return Condition(kind, "True", reason, message)


def false(kind: str, reason: str, message: str) -> Condition:
    return Condition(kind, "False", reason, message)


def unknown(kind: str, reason: str, message: str) -> Condition:
    return Condition(kind, "Unknown", reason, message)


def current(status: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The conditions in a status, by type (malformed entries ignored)."""
    found: dict[str, dict[str, Any]] = {}
    for entry in (status or {}).get("conditions") or []:
        if isinstance(entry, Mapping) and isinstance(entry.get("type"), str):
            found[entry["type"]] = dict(entry)
    return found


def merge(
    existing: Sequence[Mapping[str, Any]] | None,
    updates: Iterable[Condition],
    generation: int | None,
    *,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """The whole conditions list with ``updates`` applied.

    Conditions of other types are kept as they are; ``lastTransitionTime`` is kept when the
    status did not change. Ours come first, in :data:`ORDER`.
    """
    by_type = current({"conditions": list(existing or [])})
    for condition in updates:
        before = by_type.get(condition.type)
        transition = timestamp(now)
        if before is not None and before.get("status") == condition.status:
            transition = before.get("lastTransitionTime") or transition
        entry: dict[str, Any] = {
            "type": condition.type,
            "status": condition.status,
            "reason": condition.reason,
            "message": condition.message,
            "lastTransitionTime": transition,
        }
        if generation is not None:
            entry["observedGeneration"] = generation
        by_type[condition.type] = entry
    ours = [by_type.pop(kind) for kind in ORDER if kind in by_type]
    return ours + [by_type[kind] for kind in sorted(by_type)]


def same(a: Mapping[str, Any] | None, b: Condition) -> bool:
    """Whether a stored condition already says what ``b`` says (ignoring times and generation)."""
    return a is not None and (a.get("status"), a.get("reason"), a.get("message")) == (
        b.status,
        b.reason,
        b.message,
    )
