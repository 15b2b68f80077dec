"""Delete backups (by ID or by retention policy), then the WAL they no longer need.

As barman-cloud-backup-delete (format 6.4): the whole catalog is read first and any unreadable
backup.info stops everything (E-12: deleting with an incomplete view could remove the only backup
that is still needed); a backup is deleted by removing its recognised archives (data first, then
tablespaces by OID) and **then** its backup.info, so that a failed deletion is found again and
retried; other objects under ``base/<ID>/`` are never deleted, except the checksum manifest of our
archives (:mod:`barman_cloud.verify.manifest`), which goes with them. barman-cloud-backup-delete
removes one of our backups but not its manifest: a policy run deletes such a manifest once it is
alone in a directory without backup.info (no backup writes a manifest before its backup.info, and
a running pre-3.19 barman backup has archives there, so such a manifest belongs to no backup).
Deleting by ID refuses a kept backup (read directly, not from a listing) and honours
``minimum_redundancy`` (counting backups that are not STARTED, as 3.19). A policy deletes exactly
the OBSOLETE backups, oldest first, each followed by the WAL cleanup of :mod:`.wal_cleanup`.
``dry_run`` computes the same plan (the in-memory catalog and WAL list evolve as if the deletions
happened) and deletes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from barman_cloud.catalog.archives import list_archives
from barman_cloud.catalog.keep import read_keep
from barman_cloud.catalog.listing import STARTED, Backup, Catalog, load_catalog
from barman_cloud.catalog.resolve import resolve_backup_id
from barman_cloud.config.object_store import RetentionPolicy
from barman_cloud.errors import BarmanCloudError, FailedPrecondition, InvalidInput
from barman_cloud.format.keys import ServerLayout
from barman_cloud.format.wal import WalName
from barman_cloud.retention.policies import RetentionStatus, evaluate
from barman_cloud.retention.wal_cleanup import plan_wal_cleanup
from barman_cloud.storage import ObjectInfo, Store, exists
from barman_cloud.verify.manifest import manifest_key

log = logging.getLogger(__name__)


@dataclass
class Deletion:
    backup_id: str
    objects: list[str] = field(default_factory=list)
    """Backup objects deleted (or to delete): archives, then backup.info last."""
    wals: list[str] = field(default_factory=list)
    """WAL object keys deleted (or to delete)."""
    wal_error: str | None = None
    """Why the WAL cleanup failed (the backup itself is deleted; a later run retries)."""
    dry_run: bool = False


@dataclass
class RetentionRun:
    policy: RetentionPolicy
    report: dict[str, RetentionStatus]
    deletions: list[Deletion]
    dry_run: bool = False
    orphans: list[str] = field(default_factory=list)
    """Checksum manifests left alone by another tool's deletion, deleted (or to delete)."""


def require_readable(catalog: Catalog) -> None:
    if catalog.unreadable:
        names = ", ".join(f"{u.backup_id} ({u.reason})" for u in catalog.unreadable)
        raise FailedPrecondition(
            f"cannot read the backup.info of {names}: unsafe to delete anything with an incomplete catalog",
            hint="repair or remove those backup.info files (a storage class like Glacier, a corrupted "
            "upload, a manual edit), then retry",
        )


class BackupDeleter:
    """Deletes backups of one catalog, keeping the catalog and the WAL list up to date."""

    def __init__(
        self, store: Store, layout: ServerLayout, catalog: Catalog, *, dry_run: bool = False
    ) -> None:
        if catalog.keeps is None:
            raise ValueError("the catalog must be loaded with its keep annotations")
        self.store = store
        self.layout = layout
        self.catalog = catalog
        self.dry_run = dry_run
        self._wals: dict[str, list[str]] | None = None
        self._parsed: dict[str, WalName] = {}

    async def _wal_objects(self) -> dict[str, list[str]]:
        """WAL name -> every key holding it (one listing of ``wals/``, then kept in memory)."""
        if self._wals is None:
            wals: dict[str, list[str]] = {}
            async for entry in self.store.list(self.layout.wals):
                if isinstance(entry, ObjectInfo) and (parsed := self.layout.parse_wal_key(entry.key)):
                    wals.setdefault(parsed[0].name, []).append(entry.key)
                    self._parsed[parsed[0].name] = parsed[0]
            self._wals = wals
        return self._wals

    async def delete(self, backup_id: str, *, skip_wal_cleanup_if_standalone: bool = True) -> Deletion:
        backup = self.catalog.get(backup_id)
        if backup.info.snapshots_info:
            raise FailedPrecondition(
                f"backup {backup_id} is a snapshot backup",
                hint="delete its disk snapshots with the provider's tools or barman-cloud-backup-delete",
            )
        archives = await list_archives(self.store, self.layout, backup_id, backup.info)
        objects = archives.keys
        manifest = manifest_key(self.layout, backup_id)
        if await exists(self.store, manifest):  # our archives' checksums go with them
            objects.append(manifest)
        deletion = Deletion(backup_id, [*objects, self.layout.backup_info(backup_id)], dry_run=self.dry_run)
        if not self.dry_run:
            await self.store.delete_many(objects)
            await self.store.delete_many([self.layout.backup_info(backup_id)])
        log.info(
            "backup deleted" if not self.dry_run else "backup would be deleted (dry run)",
            extra={"backup_id": backup_id, "objects": len(deletion.objects)},
        )
        await self._clean_wal(backup, deletion, skip_wal_cleanup_if_standalone)
        self.catalog.remove(backup_id)  # after the WAL cleanup, which needs it in the catalog
        return deletion

    async def _clean_wal(self, backup: Backup, deletion: Deletion, skip_if_standalone: bool) -> None:
        try:
            wals = await self._wal_objects()
        except BarmanCloudError as error:
            deletion.wal_error = f"cannot list {self.layout.wals}: {error}"
            log.error(
                "WAL cleanup skipped", extra={"backup_id": backup.backup_id, "reason": deletion.wal_error}
            )
            return
        assert self.catalog.keeps is not None
        names = plan_wal_cleanup(
            backup,
            list(self.catalog),
            self.catalog.keeps,
            {name: self._parsed[name] for name in wals},
            skip_if_standalone=skip_if_standalone,
        )
        keys = sorted(key for name in names for key in wals[name])
        if keys and not self.dry_run:
            try:
                await self.store.delete_many(keys)
            except BarmanCloudError as error:
                deletion.wal_error = str(error)
                log.error(
                    "could not delete WAL; a later deletion retries",
                    extra={"backup_id": backup.backup_id, "reason": str(error)},
                )
                return
        for name in names:
            wals.pop(name, None)
        deletion.wals = keys
        if keys:
            log.info(
                "WAL cleaned",
                extra={"backup_id": backup.backup_id, "objects": len(keys), "dry_run": self.dry_run},
            )


async def delete_backup(
    store: Store,
    layout: ServerLayout,
    identifier: str,
    *,
    minimum_redundancy: int = 0,
    dry_run: bool = False,
) -> Deletion:
    """Delete one backup (an ID, a name or a shortcut) and the WAL only it needed."""
    if minimum_redundancy < 0:
        raise InvalidInput("minimum redundancy cannot be negative")
    catalog = await load_catalog(store, layout, keeps=True)
    require_readable(catalog)
    backup_id = resolve_backup_id(catalog, identifier)
    catalog.get(backup_id)
    if keep := await read_keep(store, layout, backup_id):
        raise FailedPrecondition(
            f"backup {backup_id} of server {layout.server} has a keep annotation ({keep})",
            hint="release it first (backup-keep --release) if you really want to delete this backup",
        )
    if minimum_redundancy > 0:
        completed = [b for b in catalog if b.status != STARTED]
        if minimum_redundancy >= len(completed):
            raise FailedPrecondition(
                f"not deleting backup {backup_id}: minimum redundancy is {minimum_redundancy} and "
                f"there are {len(completed)} backups"
            )
    return await BackupDeleter(store, layout, catalog, dry_run=dry_run).delete(backup_id)


async def apply_retention_policy(
    store: Store,
    layout: ServerLayout,
    policy: RetentionPolicy,
    *,
    minimum_redundancy: int = 0,
    dry_run: bool = False,
    now: datetime | None = None,
) -> RetentionRun:
    """Delete every OBSOLETE backup (oldest first) and the WAL no longer needed."""
    if minimum_redundancy < 0:
        raise InvalidInput("minimum redundancy cannot be negative")
    catalog = await load_catalog(store, layout, keeps=True)
    require_readable(catalog)
    assert catalog.keeps is not None
    report = evaluate(catalog, catalog.keeps, policy, minimum_redundancy=minimum_redundancy, now=now)
    obsolete = sorted(backup_id for backup_id, status in report.items() if status is RetentionStatus.OBSOLETE)
    log.info(
        "retention policy evaluated",
        extra={"policy": str(policy), "backups": len(report), "obsolete": len(obsolete), "dry_run": dry_run},
    )
    deleter = BackupDeleter(store, layout, catalog, dry_run=dry_run)
    deletions = [
        await deleter.delete(backup_id, skip_wal_cleanup_if_standalone=False) for backup_id in obsolete
    ]
    orphans = await sweep_orphan_manifests(store, layout, catalog.without_info, dry_run=dry_run)
    return RetentionRun(policy, report, deletions, dry_run, orphans)


async def sweep_orphan_manifests(
    store: Store, layout: ServerLayout, candidates: list[str], *, dry_run: bool = False
) -> list[str]:
    """Delete the checksum manifests that are alone in a ``base/<ID>/`` without backup.info (what
    barman-cloud-backup-delete leaves of our backups); anything else in such a directory, or a
    failure, leaves it as it is. One listing per candidate directory (usually none)."""
    swept = []
    for backup_id in candidates:
        prefix = layout.backup_dir(backup_id)
        try:
            keys = [entry.key async for entry in store.list(prefix) if isinstance(entry, ObjectInfo)]
            if keys != [manifest_key(layout, backup_id)]:
                continue
            if not dry_run:
                await store.delete_many(keys)
        except BarmanCloudError as error:
            log.warning("orphan checksum manifest left in place", extra={"key": prefix, "error": str(error)})
            continue
        log.info(
            "orphan checksum manifest " + ("would be removed" if dry_run else "removed"),
            extra={"key": keys[0], "dry_run": dry_run},
        )
        swept.extend(keys)
    return swept
