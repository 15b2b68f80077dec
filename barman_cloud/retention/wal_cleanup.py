"""Which WAL files are no longer needed once a backup is deleted: barman's algorithm (format 6.5),
without its quirk of protecting the deleted backup's timeline.

After deleting backup D (neighbours looked up by ID among the backups still in the catalog, D
included; "usable" = DONE or WAITING_FOR_WALS):

1. *Should WAL go at all?* Walk back over the usable backups older than D. None: yes. One kept
   ``standalone``: when deleting by ID (``skip_if_standalone``), no; under a retention policy, its
   ``[begin_wal, end_wal]`` becomes a protected range and the walk goes on. Any other (not kept,
   or kept ``full``): no, point-in-time recovery from it must stay possible.
2. ``R`` = the next usable backup after D, or D itself if there is none.
3. Protected timelines = timelines of every other backup still in the catalog (any status,
   FAILED included), minus ``R``'s timeline.
4. A WAL object goes if it is not a history file, not on a protected timeline, not inside a
   protected range (``.backup`` files compared by their first 24 characters), and its name sorts
   before ``R.begin_wal``.

**Difference from barman 3.19.1 (deliberate).** Barman means to leave D out of step 3 but compares
a freshly loaded object by identity, so D never matches and D's own timeline stays protected:
deleting the only backup of timeline 1 whose successor is on timeline 2 leaves all timeline 1 WAL
in the bucket forever (reproduced on 3.17 and 3.19.1). We leave D out, so that WAL is deleted. It
is safe: WAL on D's timeline is only needed to recover from a backup on that timeline, and any
remaining one (even FAILED) still protects it, as do the protected ranges of standalone backups
and the "older usable backup" rule of step 1.

Also different, in the safe direction: barman's S3 shortcut that deletes *every* object under an
old ``wals/<TLI><LOG>/`` prefix (E-22) is not used, so objects that are not WAL are never deleted;
and when one WAL exists under two suffixes, every copy is deleted (barman keeps only the last
listed one in its map, the other is never deleted, E-7). History files are never deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from barman_cloud.catalog.keep import STANDALONE
from barman_cloud.catalog.listing import USABLE, Backup
from barman_cloud.format.wal import WalKind, WalName

log = logging.getLogger(__name__)

Range = tuple[str, str]


def _neighbour(backups: Sequence[Backup], backup_id: str, step: int) -> Backup | None:
    ids = [b.backup_id for b in backups]
    index = ids.index(backup_id) + step
    while 0 <= index < len(backups):
        if backups[index].status in USABLE:
            return backups[index]
        index += step
    return None


def should_remove_wals(
    deleted: Backup, backups: Sequence[Backup], keeps: Mapping[str, str], *, skip_if_standalone: bool
) -> tuple[bool, list[Range]]:
    """Step 1: whether WAL may be removed, and the ranges standalone backups still need."""
    ranges: list[Range] = []
    previous = _neighbour(backups, deleted.backup_id, -1)
    while previous is not None:
        if keeps.get(previous.backup_id) != STANDALONE:
            return False, []
        if skip_if_standalone:
            return False, []
        if previous.info.begin_wal and previous.info.end_wal:
            ranges.append((previous.info.begin_wal, previous.info.end_wal))
        previous = _neighbour(backups, previous.backup_id, -1)
    return True, ranges


def plan_wal_cleanup(
    deleted: Backup,
    backups: Sequence[Backup],
    keeps: Mapping[str, str],
    wals: Mapping[str, WalName],
    *,
    skip_if_standalone: bool,
) -> list[str]:
    """The WAL names (keys of ``wals``) to delete after ``deleted``; ``backups`` includes it."""
    ordered = sorted(backups, key=lambda b: b.backup_id)
    remove, ranges = should_remove_wals(deleted, ordered, keeps, skip_if_standalone=skip_if_standalone)
    if not remove:
        return []
    until = _neighbour(ordered, deleted.backup_id, +1) or deleted
    if not until.info.begin_wal:
        log.warning(
            "no WAL cleanup: the backup that bounds it records no begin_wal",
            extra={"backup_id": until.backup_id},
        )
        return []
    begin = until.info.begin_wal.upper()
    protected = {b.info.timeline for b in ordered if b.backup_id != deleted.backup_id} - {until.info.timeline}
    doomed = []
    for name, wal in wals.items():
        if wal.kind is WalKind.HISTORY or wal.timeline in protected:
            continue
        compared = wal.name[:24] if wal.kind is WalKind.BACKUP else wal.name
        if any(low.upper() <= compared <= high.upper() for low, high in ranges):
            continue
        if wal.name < begin:
            doomed.append(name)
    return sorted(doomed)
