"""Backup IDs, shortcuts and names, resolved exactly as barman-cloud 3.19 (format 1.3).

In order: (1) text matching the ID regex is used verbatim, even if no such backup exists;
(2) a shortcut: ``last``/``latest`` the greatest ID and ``first``/``oldest`` the smallest ID whose
status is not ``STARTED`` (3.19: a STARTED backup may be a killed one, E-8; FAILED ones stay
eligible), ``last-failed`` the greatest FAILED ID; (3) the readable backup whose ``backup_name``
is the text (several: an error asking for the ID). ``latest-full``/``last-full`` are not cloud
shortcuts: as in barman they fall through to the name lookup and are not found.
"""

from __future__ import annotations

from barman_cloud.catalog.listing import FAILED, STARTED, Catalog
from barman_cloud.errors import InvalidInput, NotFound
from barman_cloud.format.backup_id import is_backup_id

LATEST = ("last", "latest")
OLDEST = ("first", "oldest")
LAST_FAILED = "last-failed"


def shortcut(catalog: Catalog, text: str) -> str | None:
    """The ID a cloud shortcut stands for, None if ``text`` is no shortcut or matches nothing."""
    ids = catalog.ids
    if text in LATEST:
        return next((i for i in reversed(ids) if catalog.backups[i].status != STARTED), None)
    if text in OLDEST:
        return next((i for i in ids if catalog.backups[i].status != STARTED), None)
    if text == LAST_FAILED:
        return next((i for i in reversed(ids) if catalog.backups[i].status == FAILED), None)
    return None


def by_name(catalog: Catalog, name: str) -> str | None:
    matches = [b.backup_id for b in catalog if b.info.backup_name == name]
    if len(matches) > 1:
        raise InvalidInput(
            f"Multiple backups found matching name {name!r}: {' '.join(matches)}",
            hint="use the backup ID instead",
        )
    return matches[0] if matches else None


def resolve_backup_id(catalog: Catalog, text: str) -> str:
    """The backup ID ``text`` designates (an ID is returned as is, without checking it exists)."""
    if is_backup_id(text):
        return text
    found = shortcut(catalog, text) or by_name(catalog, text)
    if found is None:
        raise NotFound(
            f"Unknown backup {text!r} for server {catalog.layout.server!r}",
            hint="give a backup ID (YYYYMMDDTHHMMSS), a backup name, latest, oldest or last-failed",
        )
    return found
