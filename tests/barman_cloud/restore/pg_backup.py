"""A minimal online base backup in barman-cloud's layout, for restore tests that must not depend on
the backup engine (developed separately) nor on barman: PostgreSQL's non-exclusive backup API,
PGDATA and each tablespace as PAX tars (root files as ``./name``, ``global/pg_control`` and then
``backup_label`` last, ``pg_wal`` empty, tablespace links left out), and a DONE backup.info."""

from __future__ import annotations

import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import psycopg

from barman_cloud.format.backup_info import BackupInfo
from barman_cloud.format.compression import Codec
from barman_cloud.format.wal import parse_lsn, wal_file_for_lsn
from tests.harness.postgres import PostgresServer

EMPTIED = {"pg_wal", "pg_replslot", "pg_stat_tmp", "pg_dynshmem", "pg_notify", "pg_serial", "pg_snapshots",
           "pg_subtrans", "log", "pg_log"}  # fmt: skip
SKIPPED = {"postmaster.pid", "postmaster.opts", "pg_internal.init", "global/pg_control"}


@dataclass
class PlainBackup:
    info: BackupInfo
    archives: dict[str, bytes]
    """Object name under ``base/<ID>/`` -> content."""


def _add(tar: tarfile.TarFile, path: Path, arcname: str) -> None:
    info = tar.gettarinfo(str(path), arcname)
    if info.isreg():
        with open(path, "rb") as handle:
            data = handle.read(info.size)
        tar.addfile(info, io.BytesIO(data.ljust(info.size, b"\0")))  # a file that shrank: zero-padded
    elif info.isdir() or info.issym():
        tar.addfile(info)


def _walk(tar: tarfile.TarFile, root: Path, *, data: bool) -> None:
    for directory, dirs, files in os.walk(root):
        here = Path(directory)
        relative = here.relative_to(root).as_posix()
        dirs[:] = sorted(d for d in dirs if not (here / d).is_symlink())
        if relative != "." or data:
            _add(tar, here, relative)
        if relative in EMPTIED:
            dirs[:] = []
            continue
        if not data and relative == ".":
            continue
        for name in sorted(files):
            arcname = f"./{name}" if relative == "." else f"{relative}/{name}"
            if arcname.removeprefix("./") in SKIPPED or name in SKIPPED or name.startswith("pgsql_tmp"):
                continue
            try:
                _add(tar, here / name, arcname)
            except FileNotFoundError:
                continue


def _tar(
    codec: Codec | None, fill: list[tuple[Path, bool]], extra: list[tuple[str, bytes]] | None = None
) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for root, data in fill:
            _walk(tar, root, data=data)
            if data:
                _add(tar, root / "global/pg_control", "global/pg_control")
        for name, content in extra or []:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    return codec.compress(raw.getvalue()) if codec else raw.getvalue()


def take_backup(server: PostgresServer, backup_id: str, codec: Codec | None) -> PlainBackup:
    suffix = f".tar{codec.suffix if codec else ''}"
    with psycopg.connect(server.conninfo, autocommit=True) as conn:
        version = int(conn.execute("SHOW server_version_num").fetchone()[0])  # type: ignore[index]
        setting = "SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'"
        segment = int(conn.execute(setting).fetchone()[0])  # type: ignore[index]
        system = "SELECT system_identifier::text FROM pg_control_system()"
        systemid = conn.execute(system).fetchone()[0]  # type: ignore[index]
        tablespaces = conn.execute(
            "SELECT spcname, oid, pg_tablespace_location(oid) FROM pg_tablespace "
            "WHERE pg_tablespace_location(oid) <> '' ORDER BY oid"
        ).fetchall()
        label = f"Barman backup cloud {backup_id}"
        begin = conn.execute("SELECT pg_backup_start(%s, true)::text, now()", [label]).fetchone()
        assert begin is not None
        timeline = int(conn.execute("SELECT timeline_id FROM pg_control_checkpoint()").fetchone()[0])  # type: ignore[index]
        archives = {}
        for _, oid, location in tablespaces:
            archives[f"{oid}{suffix}"] = _tar(codec, [(Path(location), False)])
        datadir = Path(conn.execute("SHOW data_directory").fetchone()[0])  # type: ignore[index]
        stop = conn.execute("SELECT lsn::text, labelfile, now() FROM pg_backup_stop(true)").fetchone()
        assert stop is not None
        end_lsn, backup_label, end_time = stop
        archives[f"data{suffix}"] = _tar(codec, [(datadir, True)], [("backup_label", backup_label.encode())])
    begin_lsn = parse_lsn(begin[0])
    info = BackupInfo(
        status="DONE",
        backup_label=backup_label,
        begin_time=begin[1],
        begin_xlog=begin[0],
        begin_wal=wal_file_for_lsn(timeline, begin_lsn, segment),
        begin_offset=begin_lsn % segment,
        end_time=end_time,
        end_xlog=end_lsn,
        end_wal=wal_file_for_lsn(timeline, parse_lsn(end_lsn), segment),
        end_offset=parse_lsn(end_lsn) % segment,
        timeline=timeline,
        version=version,
        pgdata=str(datadir),
        systemid=systemid,
        xlog_segment_size=segment,
        tablespaces=tuple((name, oid, location) for name, oid, location in tablespaces) or None,
    )
    return PlainBackup(info, archives)
