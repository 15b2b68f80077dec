"""Prepare a data directory for point-in-time recovery, the way the upstream restore Job does:
choose the backup for the target, check that the archive holds its first WAL, restore it, and
write the recovery configuration so that starting PostgreSQL is the only step left.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from barman_cloud.catalog.listing import Backup, Catalog, load_catalog, read_backup
from barman_cloud.errors import NotFound
from barman_cloud.format.backup_id import is_backup_id
from barman_cloud.format.keys import ServerLayout
from barman_cloud.format.wal import WalName
from barman_cloud.restore.engine import RestoreResult, restore_backup
from barman_cloud.restore.recovery_config import RecoveryConfig
from barman_cloud.restore.targets import RecoveryTarget, choose_backup
from barman_cloud.storage import ReadableStore
from barman_cloud.wal.restore import WalRestorer

log = logging.getLogger(__name__)


async def check_first_wal(store: ReadableStore, layout: ServerLayout, backup: Backup) -> str:
    """The key of the backup's ``begin_wal`` in the archive; NotFound when it is not there."""
    begin_wal = backup.info.begin_wal
    if not begin_wal:
        raise NotFound(
            f"backup {backup.backup_id} records no begin_wal", hint="its backup.info is incomplete"
        )
    try:
        key, _, _ = await WalRestorer(store, layout).locate(WalName.parse(begin_wal))
    except NotFound:
        raise NotFound(
            f"the first WAL of backup {backup.backup_id} ({begin_wal}) is not in {layout.wals}",
            hint="PostgreSQL could not recover from this backup: check the WAL archive "
            "(archive_command, retention, lifecycle rules) or choose another backup",
        ) from None
    return key


async def choose(
    store: ReadableStore, layout: ServerLayout, target: RecoveryTarget, backup: str | None
) -> Backup:
    """The backup to restore (one read for a backup ID, else the whole catalog)."""
    if backup is not None and is_backup_id(backup):
        try:
            chosen = await read_backup(store, layout, backup)
        except NotFound:
            raise NotFound(
                f"backup {backup} of server {layout.server} does not exist in {layout.base}",
                hint="list the backups with `barman-cloud-plugin backup-list`",
            ) from None
        return choose_backup(Catalog(layout, {chosen.backup_id: chosen}), target, backup)
    return choose_backup(await load_catalog(store, layout), target, backup)


async def prepare_recovery(
    store: ReadableStore,
    layout: ServerLayout,
    destination: Path,
    *,
    restore_command: str,
    target: RecoveryTarget | None = None,
    backup: str | None = None,
    jobs: int = 4,
    tablespace_map: Mapping[str, Path] | None = None,
    check_wal: bool = True,
    archive_command: str | None = None,
) -> RestoreResult:
    """Choose, check, restore and configure; ``backup`` None or ``latest`` lets the target choose."""
    target = target or RecoveryTarget()
    chosen = await choose(store, layout, target, backup)
    log.info(
        "backup chosen for recovery",
        extra={"backup_id": chosen.backup_id, "end_time": str(chosen.info.end_time),
               "timeline": chosen.info.timeline},
    )  # fmt: skip
    if check_wal:
        await check_first_wal(store, layout, chosen)
    config = RecoveryConfig(
        restore_command,
        target,
        comment=f"barman-cloud-plugin restore of {chosen.backup_id}",
        archive_command=archive_command,
    )
    return await restore_backup(
        store,
        layout,
        chosen.backup_id,
        destination,
        jobs=jobs,
        tablespace_map=tablespace_map,
        recovery=config,
    )
