"""Retention policies evaluated exactly as barman 3.19 does (format 6.1-6.3).

Backups are visited newest first (descending ID). Only DONE backups count; any other status is
reported ``-`` and never deleted by a policy (E-8, E-9). A keep annotation ``standalone`` reports
``KEEP:STANDALONE``, any other ``KEEP:FULL``; kept backups are never deleted but still consume
REDUNDANCY slots (E-29). Backups with a ``parent_backup_id`` (incremental, never the case for
cloud backups) are skipped, as barman skips them.

- ``REDUNDANCY n``: the first ``max(n, minimum_redundancy)`` DONE backups are VALID, later ones
  OBSOLETE.
- ``RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS`` (a month is 31 days, E-28): the point of
  recoverability is now (local clock) minus the window; backups are VALID until and including the
  newest one that ended before it (it is needed to recover to that point); older ones are
  OBSOLETE, or ``OBSOLETE*`` (kept, not deleted) while fewer than ``minimum_redundancy`` valid
  ones were seen.

Guard where barman crashes: a DONE backup with no ``end_time`` is treated as ending inside the
window (kept rather than deleted).

Parsing accepts barman's syntax and the ObjectStore's (``30d``, ``4w``, ``3m``). ``REDUNDANCY 0``
(barman: delete every backup) is refused.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

from barman_cloud.catalog.keep import STANDALONE
from barman_cloud.catalog.listing import DONE, Backup
from barman_cloud.config.object_store import RetentionPolicy, parse_retention_policy
from barman_cloud.errors import InvalidInput


class RetentionStatus(enum.StrEnum):
    VALID = "VALID"
    OBSOLETE = "OBSOLETE"
    POTENTIALLY_OBSOLETE = "OBSOLETE*"
    KEEP_FULL = "KEEP:FULL"
    KEEP_STANDALONE = "KEEP:STANDALONE"
    NONE = "-"


_REDUNDANCY = re.compile(r"^\s*redundancy\s+(\d+)\s*$", re.IGNORECASE)
_WINDOW = re.compile(r"^\s*recovery\s+window\s+of\s+(\d+)\s+(day|month|week)s?\s*$", re.IGNORECASE)


def parse_policy(text: str) -> RetentionPolicy:
    """``REDUNDANCY n``, ``RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS``, or ``30d``/``4w``/``3m``."""
    if match := _REDUNDANCY.match(text):
        value = int(match.group(1))
        if value < 1:
            raise InvalidInput(
                f"retention policy {text!r} would delete every backup", hint="use REDUNDANCY 1 or more"
            )
        return RetentionPolicy("redundancy", value)
    if match := _WINDOW.match(text):
        value = int(match.group(1))
        if value < 1:
            raise InvalidInput(
                f"retention policy {text!r} has an empty window", hint="use a window of 1 or more"
            )
        unit = {"day": "d", "week": "w", "month": "m"}[match.group(2).lower()]
        return parse_retention_policy(f"{value}{unit}")
    try:
        return parse_retention_policy(text)
    except InvalidInput:
        raise InvalidInput(
            f"invalid retention policy {text!r}",
            hint="REDUNDANCY n, RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS, or 30d / 4w / 3m",
        ) from None


def window(policy: RetentionPolicy) -> timedelta:
    if policy.kind != "recovery_window":
        raise InvalidInput(f"{policy} is not a recovery window")
    days = {"d": 1, "w": 7, "m": 31}[policy.unit or "d"]
    return timedelta(days=days * policy.value)


def point_of_recoverability(policy: RetentionPolicy, now: datetime | None = None) -> datetime:
    return (now or datetime.now().astimezone()) - window(policy)


def _keep_status(keep: str | None) -> RetentionStatus | None:
    if not keep:
        return None
    return RetentionStatus.KEEP_STANDALONE if keep == STANDALONE else RetentionStatus.KEEP_FULL


def evaluate(
    backups: Iterable[Backup],
    keeps: Mapping[str, str],
    policy: RetentionPolicy,
    *,
    minimum_redundancy: int = 0,
    now: datetime | None = None,
) -> dict[str, RetentionStatus]:
    """The retention status of every backup (barman's ``report()``), by backup ID."""
    newest_first = sorted(backups, key=lambda b: b.backup_id, reverse=True)
    if policy.kind == "redundancy":
        return _redundancy(newest_first, keeps, max(policy.value, minimum_redundancy))
    return _recovery_window(newest_first, keeps, point_of_recoverability(policy, now), minimum_redundancy)


def _redundancy(
    backups: list[Backup], keeps: Mapping[str, str], redundancy: int
) -> dict[str, RetentionStatus]:
    report: dict[str, RetentionStatus] = {}
    done = 0
    for backup in backups:
        if backup.info.parent_backup_id is not None:
            continue
        if backup.status != DONE:
            report[backup.backup_id] = RetentionStatus.NONE
            continue
        kept = _keep_status(keeps.get(backup.backup_id))
        if kept:
            report[backup.backup_id] = kept
        elif done < redundancy:
            report[backup.backup_id] = RetentionStatus.VALID
        else:
            report[backup.backup_id] = RetentionStatus.OBSOLETE
        done += 1
    return report


def _recovery_window(
    backups: list[Backup], keeps: Mapping[str, str], point: datetime, minimum_redundancy: int
) -> dict[str, RetentionStatus]:
    report: dict[str, RetentionStatus] = {}
    found = False
    valid = 0
    for backup in backups:
        if backup.info.parent_backup_id is not None:
            continue
        if backup.status != DONE:
            report[backup.backup_id] = RetentionStatus.NONE
            continue
        kept = _keep_status(keeps.get(backup.backup_id))
        if not found:
            report[backup.backup_id] = kept or RetentionStatus.VALID
            valid += 1
            end = backup.info.end_time
            if end is not None and end < point:
                found = True
        elif valid < minimum_redundancy:
            report[backup.backup_id] = kept or RetentionStatus.POTENTIALLY_OBSOLETE
            valid += 1
        else:
            report[backup.backup_id] = kept or RetentionStatus.OBSOLETE
    return report
