"""Recovery targets and the choice of the backup to restore, as the upstream plugin chooses it.

Upstream (CloudNativePG's ``FindBackupInfo``): an explicit backup is used as given; otherwise,
among completed backups (newest first), a target time picks the newest that ended at or before it,
a target LSN the newest whose end LSN is below it, any other target (or none) the newest; a numeric
target timeline restricts the candidates to that timeline (``latest``/``current``/none: any).

Deliberate differences:

- "completed" is status DONE with begin and end times; upstream looks at the times only, so a
  FAILED backup that failed after ``pg_backup_stop`` could be chosen and fail the restore;
- backups are ordered by ID (barman's order everywhere) rather than by time;
- ``latest``/``last`` (and barman's ``auto``) mean the automatic choice above, never a FAILED
  backup (barman 3.19's ``latest`` skips only STARTED ones);
- an explicit backup must be DONE, and with a time or LSN target must end before it (otherwise
  PostgreSQL would stop with "requested recovery stop point is before consistent recovery point").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from barman_cloud.catalog.listing import Backup, Catalog
from barman_cloud.catalog.resolve import resolve_backup_id
from barman_cloud.errors import FailedPrecondition, InvalidInput, NotFound
from barman_cloud.format.backup_info import unrestorable_reason
from barman_cloud.format.wal import parse_lsn

AUTOMATIC = frozenset({"latest", "last", "auto"})
ACTIONS = ("pause", "promote", "shutdown")
_TIMELINE = re.compile(r"^(latest|current|[1-9][0-9]*)$")
_XID = re.compile(r"^[0-9]+$")


def parse_target_time(text: str, *, naive_is_utc: bool = False) -> datetime:
    """An ISO 8601 or PostgreSQL-style timestamp. A naive time is local time for the tools
    (barman's rule) and UTC for a Cluster's ``targetTime`` (upstream's rule since #699: the
    sidecar's local zone is whatever the Pod happens to set)."""
    value = text.strip()
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(
            f"invalid target time {text!r}",
            hint="use ISO 8601 with a zone, e.g. 2026-01-31 12:00:00+00:00",
        ) from None
    if moment.tzinfo:
        return moment
    return moment.replace(tzinfo=UTC) if naive_is_utc else moment.astimezone()


@dataclass(frozen=True)
class RecoveryTarget:
    """Where PostgreSQL's recovery stops; at most one of time, LSN, xid, name, immediate."""

    time: datetime | None = None
    lsn: str | None = None
    xid: str | None = None
    name: str | None = None
    immediate: bool = False
    timeline: str | None = None
    """``latest``, ``current`` or a timeline number (``recovery_target_timeline``)."""
    action: str | None = None
    """``pause``, ``promote`` or ``shutdown`` (``recovery_target_action``)."""

    def __post_init__(self) -> None:
        chosen = [k for k, v in self.kinds().items() if v]
        if len(chosen) > 1:
            raise InvalidInput(
                f"more than one recovery target given ({', '.join(chosen)})",
                hint="PostgreSQL accepts one of time, LSN, xid, name or immediate",
            )
        if self.lsn is not None:
            parse_lsn(self.lsn)
        if self.xid is not None and not _XID.fullmatch(self.xid):
            raise InvalidInput(f"invalid target xid {self.xid!r}", hint="a transaction ID, e.g. 1234")
        if self.name is not None and not self.name:
            raise InvalidInput("empty target name")
        if self.timeline is not None and not _TIMELINE.fullmatch(self.timeline):
            raise InvalidInput(
                f"invalid target timeline {self.timeline!r}", hint="latest, current or a number"
            )
        if self.action is not None and self.action not in ACTIONS:
            raise InvalidInput(f"invalid target action {self.action!r}", hint=f"one of {', '.join(ACTIONS)}")

    def kinds(self) -> dict[str, bool]:
        return {
            "time": self.time is not None,
            "lsn": self.lsn is not None,
            "xid": self.xid is not None,
            "name": self.name is not None,
            "immediate": self.immediate,
        }

    @property
    def has_stop_point(self) -> bool:
        return any(self.kinds().values())

    @property
    def timeline_number(self) -> int | None:
        return int(self.timeline) if self.timeline and self.timeline.isdigit() else None


def _on_timeline(backup: Backup, timeline: int | None) -> bool:
    return timeline is None or backup.info.timeline == timeline


def _ends_before(backup: Backup, target: RecoveryTarget) -> bool:
    info = backup.info
    if target.time is not None:
        return info.end_time is not None and info.end_time <= target.time
    if target.lsn is not None:
        if not info.end_xlog:
            return False
        try:
            return parse_lsn(info.end_xlog) < parse_lsn(target.lsn)
        except InvalidInput:
            return False
    return True


def choose_backup(catalog: Catalog, target: RecoveryTarget, backup: str | None = None) -> Backup:
    """The backup to restore for ``target``; ``backup`` is an ID, a name, a shortcut or None."""
    if backup is not None and backup not in AUTOMATIC:
        chosen = catalog.get(resolve_backup_id(catalog, backup))
        if not chosen.is_completed:
            reason, hint = unrestorable_reason(chosen.info) or (f"its status is {chosen.status}", None)
            raise FailedPrecondition(f"backup {chosen.backup_id} cannot be restored: {reason}", hint=hint)
        if not _ends_before(chosen, target):
            raise InvalidInput(
                f"backup {chosen.backup_id} ended after the recovery target "
                f"(end time {chosen.info.end_time}, end LSN {chosen.info.end_xlog})",
                hint="choose an older backup, or let the target choose it (latest)",
            )
        return chosen
    timeline = target.timeline_number
    for candidate in reversed(list(catalog)):
        if candidate.is_completed and _on_timeline(candidate, timeline) and _ends_before(candidate, target):
            return candidate
    scope = f" on timeline {timeline}" if timeline else ""
    raise NotFound(
        f"no target backup found{scope} for server {catalog.layout.server!r}",
        hint="no completed backup ends before the recovery target; check backup-list and the target",
    )
