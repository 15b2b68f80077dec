"""Synthetic backups and WAL in a real store: backup.info written by our barman-compatible writer,
archive objects and WAL objects with placeholder bodies. Barman reads such a catalog exactly as it
reads its own (the compatibility tests run barman-cloud-backup-list/-delete on them)."""

from __future__ import annotations

from datetime import datetime, timedelta

from barman_cloud.format import compression
from barman_cloud.format.backup_id import backup_id_time
from barman_cloud.format.backup_info import BackupInfo, format_backup_info
from barman_cloud.format.keys import ServerLayout
from barman_cloud.format.wal import WalName, format_lsn, segment_name
from barman_cloud.storage import Store

SEGMENT = 16 * 1024 * 1024


def info(
    backup_id: str,
    *,
    status: str = "DONE",
    segment: int = 2,
    timeline: int = 1,
    name: str | None = None,
    end: datetime | None = None,
    span: int = 1,
    tablespaces: tuple[tuple[str, int, str], ...] | None = None,
    **changes: object,
) -> BackupInfo:
    """A backup.info as barman-cloud-backup writes it; times from the ID (local time)."""
    begin_time = backup_id_time(backup_id).astimezone()
    end_time = end if end is not None else begin_time + timedelta(minutes=1)
    values: dict[str, object] = {
        "status": status,
        "backup_name": name,
        "timeline": timeline,
        "version": 150004,
        "pgdata": "/var/lib/postgresql/data",
        "systemid": "7312345678901234567",
        "begin_time": begin_time,
        "begin_wal": segment_name(timeline, segment, SEGMENT),
        "begin_xlog": format_lsn(segment * SEGMENT + 0x28),
        "begin_offset": 40,
        "tablespaces": tablespaces,
        "data_checksums": "off",
        "cluster_size": 1000,
        "config_file": "/var/lib/postgresql/data/postgresql.conf",
        "hba_file": "/var/lib/postgresql/data/pg_hba.conf",
        "ident_file": "/var/lib/postgresql/data/pg_ident.conf",
    }
    if status != "STARTED":
        values.update(
            end_time=end_time,
            end_wal=segment_name(timeline, segment + span - 1, SEGMENT),
            end_xlog=format_lsn((segment + span - 1) * SEGMENT + 0x138),
            end_offset=312,
            backup_label=f"START WAL LOCATION: {format_lsn(segment * SEGMENT + 0x28)}\n"
            f"LABEL: Barman backup cloud {backup_id}\n",
            copy_stats={"total_time": 1.5, "number_of_workers": 2},
        )
    values.update(changes)
    return BackupInfo(**values)  # type: ignore[arg-type]


async def put_backup(
    store: Store,
    layout: ServerLayout,
    backup_id: str,
    backup: BackupInfo,
    archives: dict[str, bytes] | None = None,
) -> list[str]:
    """backup.info plus archive objects (default: one ``data.tar``); returns the archive keys."""
    keys = []
    for name, body in (archives if archives is not None else {"data.tar": b"tar"}).items():
        key = f"{layout.backup_dir(backup_id)}{name}"
        await store.put(key, body)
        keys.append(key)
    await store.put(layout.backup_info(backup_id), format_backup_info(backup))
    return keys


async def put_wal(
    store: Store, layout: ServerLayout, name: str, codec: compression.Codec | None = None, body: bytes = b"w"
) -> str:
    key = layout.wal(WalName.parse(name), codec)
    await store.put(key, body)
    return key


def wal(segment: int, timeline: int = 1) -> str:
    return segment_name(timeline, segment, SEGMENT)
