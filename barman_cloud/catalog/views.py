"""What ``barman-cloud-backup-list`` and ``-show`` print (format 2.6), so that CloudNativePG and
scripts parsing their output can read ours.

JSON: every backup.info field as barman's ``BackupInfo.to_json`` gives it (``backup_label`` as its
``repr`` text, ``tablespaces`` as lists, ``children_backup_ids`` comma-joined, ``begin_time`` /
``end_time`` in ``ctime()`` form plus ``*_iso`` in ISO 8601, ``backup_name`` and
``snapshots_info`` omitted when null), in barman's key order, plus ``backup_id``. Keys we read but
barman does not know are not shown.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from barman_cloud.catalog.listing import DONE, Backup
from barman_cloud.format.backup_info import FIELD_NAMES

_HIDDEN_WHEN_NULL = ("backup_name", "snapshots_info")
_REPR = ("backup_label",)


def _value(name: str, value: Any) -> Any:
    if name in _REPR:
        return repr(value) if value else None
    if name == "children_backup_ids":
        return ",".join(value) if value else None
    if name == "tablespaces":
        return [list(t) for t in value] if value is not None else None
    if name == "included_files":
        return list(value) if value is not None else None
    if name in ("copy_stats", "snapshots_info"):
        return dict(value) if value is not None else None
    return value


def backup_json(backup: Backup) -> dict[str, Any]:
    """One backup as barman's ``BackupInfo.to_json()``."""
    data: dict[str, Any] = {}
    for name in FIELD_NAMES:
        value = getattr(backup.info, name)
        if value is None and name in _HIDDEN_WHEN_NULL:
            continue
        data[name] = _value(name, value)
    data["backup_id"] = backup.backup_id
    for name in ("begin_time", "end_time"):
        moment = getattr(backup.info, name)
        if moment is not None:
            data[name] = moment.ctime()
            data[f"{name}_iso"] = moment.isoformat()
    return data


def list_json(backups: Iterable[Backup]) -> str:
    """``barman-cloud-backup-list --format json``."""
    return json.dumps({"backups_list": [backup_json(b) for b in sorted(backups, key=lambda b: b.backup_id)]})


def show_json(backup: Backup) -> str:
    """``barman-cloud-backup-show --format json``: keyed by server_name (``cloud``, E-2)."""
    return json.dumps({backup.info.server_name: backup_json(backup)})


_COLUMNS = "{:<20}{:<25}{:<30}{:<17}{:<20}"


def list_console(backups: Iterable[Backup], keeps: dict[str, str]) -> str:
    """barman 3.19's console table: non-DONE backups show their status as archival status."""
    lines = [_COLUMNS.format("Backup ID", "End Time", "Begin Wal", "Archival Status", "Name")]
    for backup in sorted(backups, key=lambda b: b.backup_id):
        info = backup.info
        end = info.end_time.strftime("%Y-%m-%d %H:%M:%S") if info.end_time else ""
        if info.status == DONE:
            keep = keeps.get(backup.backup_id)
            status = f"KEEP:{keep.upper()}" if keep else ""
        else:
            status = info.status
        lines.append(
            _COLUMNS.format(backup.backup_id, end, info.begin_wal or "", status, info.backup_name or "")
        )
    return "\n".join(lines)


def show_console(backup: Backup, keep: str | None) -> str:
    """A readable summary of one backup (not byte-compatible with barman's renderer)."""
    info = backup.info
    rows: list[tuple[str, Any]] = [
        ("Backup", backup.backup_id),
        ("Name", info.backup_name),
        ("Status", info.status),
        ("Keep", keep or "nokeep"),
        ("PostgreSQL version", info.version),
        ("System ID", info.systemid),
        ("PGDATA", info.pgdata),
        ("Timeline", info.timeline),
        ("Begin time", info.begin_time),
        ("End time", info.end_time),
        ("Begin WAL", info.begin_wal),
        ("End WAL", info.end_wal),
        ("Begin LSN", info.begin_xlog),
        ("End LSN", info.end_xlog),
        ("WAL segment size", info.xlog_segment_size),
        ("Cluster size", info.cluster_size),
        ("Error", info.error),
    ]
    for name, oid, location in info.tablespaces or ():
        rows.append((f"Tablespace {name}", f"oid {oid}, {location}"))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}} : {'' if value is None else value}" for label, value in rows)
