"""Online backups of a real PostgreSQL into a real store: what lands in the bucket, in which order,
and what backup.info says, as barman-cloud-backup 3.19 would write it."""

from __future__ import annotations

import os
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from barman_cloud.backup.backup import BackupSettings, take_backup
from barman_cloud.errors import Conflict
from barman_cloud.format import compression
from barman_cloud.format.backup_info import parse_backup_info
from barman_cloud.format.compression import Codec
from barman_cloud.format.keys import ServerLayout
from barman_cloud.format.wal import parse_lsn, wal_file_for_lsn
from barman_cloud.storage import Store
from tests.barman_cloud.backup.helpers import (
    RecordingStore,
    archive_members,
    backup_info,
    backup_sessions,
    object_keys,
    write_script,
)
from tests.harness.postgres import PostgresServer, owned_by_postgres_tempdir

CODECS = [None, *compression.BACKUP_CODECS]
# The shared server has no archive_command: nothing would ever be archived.
NO_ARCHIVE = BackupSettings(wait_for_archive=False, immediate_checkpoint=True)


def settings(**changes: Any) -> BackupSettings:
    return replace(NO_ARCHIVE, **changes)


def _id(codec: Codec | None) -> str:
    return codec.name if codec else "none"


def names(members: list[tuple[tarfile.TarInfo, bytes]]) -> list[str]:
    return [member.name for member, _content in members]


async def test_archive_content_order_and_backup_info(
    postgres: PostgresServer, fs_store: Store, layout: ServerLayout
) -> None:
    store = RecordingStore(fs_store)
    result = await take_backup(store, layout, postgres.conninfo, NO_ARCHIVE)
    backup_id = result.backup_id
    data_key = layout.archive(backup_id, "data", 0, None)
    info_key = layout.backup_info(backup_id)
    manifest_key = f"{layout.backup_dir(backup_id)}bcp_checksums.json"
    # backup.info first (STARTED, barman 3.19) and last (DONE), the archive in between, then the
    # archives' checksum manifest just before the final backup.info.
    assert store.written == [info_key, data_key, manifest_key, info_key]
    assert result.archives == (data_key,)
    assert await object_keys(fs_store, layout.backup_dir(backup_id)) == [info_key, manifest_key, data_key]
    started = parse_backup_info(store.bodies[info_key][0])
    assert started.status == "STARTED" and started.begin_wal and started.begin_time and started.timeline
    assert started.end_time is None and started.backup_label is None and started.copy_stats is None

    info = await backup_info(fs_store, info_key)
    assert info == result.info
    assert (info.status, info.server_name, info.error, info.mode, info.compression) == (
        "DONE", "cloud", None, None, None,
    )  # fmt: skip
    settings = dict(postgres.query("SELECT name, setting FROM pg_settings"))
    assert info.version == int(settings["server_version_num"])
    assert info.pgdata == str(postgres.datadir) == settings["data_directory"]
    assert info.systemid == str(postgres.query("SELECT system_identifier FROM pg_control_system()")[0][0])
    assert info.xlog_segment_size == int(settings["wal_segment_size"])
    assert (info.config_file, info.hba_file, info.ident_file) == (
        settings["config_file"], settings["hba_file"], settings["ident_file"],
    )  # fmt: skip
    assert info.data_checksums == postgres.query("SHOW data_checksums")[0][0]
    assert info.summarize_wal == (
        None if postgres.version < 17 else postgres.query("SHOW summarize_wal")[0][0]
    )
    assert info.cluster_size and info.cluster_size > 10_000_000
    assert info.tablespaces is None and info.timeline == 1
    assert info.begin_time and info.end_time and info.begin_time <= info.end_time
    begin, end = parse_lsn(info.begin_xlog or ""), parse_lsn(info.end_xlog or "")
    assert begin < end
    assert info.begin_wal == wal_file_for_lsn(1, begin, info.segment_size)
    assert info.begin_offset == begin % info.segment_size
    assert info.end_wal == wal_file_for_lsn(1, end, info.segment_size)
    assert info.end_offset == end % info.segment_size
    assert info.backup_label and f"LABEL: Barman backup cloud {backup_id}\n" in info.backup_label
    assert f"START WAL LOCATION: {info.begin_xlog} (file {info.begin_wal})" in info.backup_label
    stats = dict(info.copy_stats or {})
    assert list(stats) == ["total_time", "number_of_workers", "analysis_time", "analysis_time_per_item",
                           "copy_time_per_item", "serialized_copy_time_per_item", "copy_time",
                           "serialized_copy_time"]  # fmt: skip
    assert stats["number_of_workers"] == 2 and stats["analysis_time_per_item"] == {"data": 0}

    members = await archive_members(fs_store, data_key)
    order = names(members)
    assert order[0] == "." and order[-2:] == ["global/pg_control", "backup_label"]
    assert order.count("global/pg_control") == 1 and "./PG_VERSION" in order
    assert all(not name.startswith("./") for name in order if name.count("/") > 1)
    # Excluded directories stay, empty; nothing from pg_wal; no runtime files.
    assert {"pg_wal", "pg_tblspc", "pg_replslot", "pg_stat_tmp", "pg_subtrans", "pg_notify"} <= set(order)
    assert not [n for n in order if n.startswith(("pg_wal/", "pg_replslot/", "pg_stat_tmp/", "pg_tblspc/"))]
    assert "./postmaster.pid" not in order and "./postmaster.opts" not in order
    by_name = {member.name: (member, content) for member, content in members}
    assert by_name["./PG_VERSION"][1] == (postgres.datadir / "PG_VERSION").read_bytes()
    assert by_name["pg_wal"][0].isdir() and by_name["global"][0].isdir()
    owner = os.stat(postgres.datadir)
    label, label_content = by_name["backup_label"]
    assert label_content.decode() == info.backup_label
    assert (label.uid, label.gid, label.mode, label.mtime) == (owner.st_uid, owner.st_gid, 0o644, 0)
    control = by_name["global/pg_control"][0]
    assert (control.uid, control.gid, control.size) == (owner.st_uid, owner.st_gid, 8192)
    assert backup_sessions(postgres.conninfo) == 0


@pytest.mark.parametrize("archive_codec", CODECS, ids=_id)
async def test_every_compression_is_one_stream_per_object(
    postgres: PostgresServer, fs_store: Store, layout: ServerLayout, archive_codec: Codec | None
) -> None:
    result = await take_backup(fs_store, layout, postgres.conninfo, settings(compression=archive_codec))
    key = layout.archive(result.backup_id, "data", 0, archive_codec)
    assert result.archives == (key,)
    assert key.endswith(".tar" + (archive_codec.suffix if archive_codec else ""))
    members = await archive_members(fs_store, key)  # fails on a second gzip member, bzip2 stream...
    order = names(members)
    assert order[0] == "." and order[-2:] == ["global/pg_control", "backup_label"]
    assert result.uploaded_bytes == (await fs_store.head(key)).size
    assert (await backup_info(fs_store, layout.backup_info(result.backup_id))).status == "DONE"


async def test_a_tablespace_gets_its_own_archive(
    postgres_factory: Callable[..., PostgresServer], pg_version: int, fs_store: Store, layout: ServerLayout
) -> None:
    server = postgres_factory(pg_version)
    location = owned_by_postgres_tempdir("bcp-tbs-")
    try:
        server.query(f"CREATE TABLESPACE spare LOCATION '{location}'")
        server.query("CREATE TABLE in_spare TABLESPACE spare AS SELECT generate_series(1, 5000) AS n")
        oid = int(server.query("SELECT oid FROM pg_tablespace WHERE spcname = 'spare'")[0][0])
        relation = server.query("SELECT pg_relation_filepath('in_spare')")[0][0]
        result = await take_backup(fs_store, layout, server.conninfo, NO_ARCHIVE)
    finally:
        server.stop()
        subprocess.run(["rm", "-rf", str(location)], check=True)
    tablespace_key = layout.archive(result.backup_id, str(oid), 0, None)
    data_key = layout.archive(result.backup_id, "data", 0, None)
    assert result.archives == (tablespace_key, data_key)
    assert result.info.tablespaces == (("spare", oid, str(location)),)
    stats = dict(result.info.copy_stats or {})
    assert list(stats["copy_time_per_item"]) == [str(oid), "data"]

    tablespace = names(await archive_members(fs_store, tablespace_key))
    catalog_dir = tablespace[0]
    assert catalog_dir.startswith(f"PG_{pg_version}_") and "/" not in catalog_dir
    assert all(name.startswith(catalog_dir) for name in tablespace)
    # pg_relation_filepath: pg_tblspc/<oid>/PG_<major>_<catalog>/<db>/<relfilenode>
    assert relation.split("/", 2)[2] in tablespace
    data = names(await archive_members(fs_store, data_key))
    assert "pg_tblspc" in data and not [name for name in data if name.startswith("pg_tblspc/")]


async def test_archives_are_split_into_parts_past_the_maximum_size(
    postgres: PostgresServer, fs_store: Store, layout: ServerLayout
) -> None:
    small = settings(compression=compression.GZIP, max_archive_size=256 * 1024, chunk_size=32 * 1024)
    result = await take_backup(fs_store, layout, postgres.conninfo, small)
    keys = [
        layout.archive(result.backup_id, "data", n, compression.GZIP) for n in range(len(result.archives))
    ]
    assert list(result.archives) == keys and len(keys) >= 3
    assert keys[1].endswith("/data_0001.tar.gz")
    parts = [names(await archive_members(fs_store, key)) for key in keys]  # each one a whole archive
    everything = [name for part in parts for name in part]
    assert len(everything) == len(set(everything))
    assert everything[0] == "." and everything[-2:] == ["global/pg_control", "backup_label"]
    # Every part but the last is past the limit (compressed) when it is closed.
    sizes = [(await fs_store.head(key)).size for key in keys]
    assert all(size > 64 * 1024 for size in sizes[:-1]), sizes


async def test_refuses_a_backup_id_already_in_the_bucket(
    postgres: PostgresServer, fs_store: Store, layout: ServerLayout
) -> None:
    backup_id = "20240506T070809"
    await fs_store.put(layout.archive(backup_id, "data", 0, None), b"someone else's")
    store = RecordingStore(fs_store)
    with pytest.raises(Conflict, match="already exists"):
        await take_backup(store, layout, postgres.conninfo, settings(backup_id=backup_id))
    assert store.written == []
    assert backup_sessions(postgres.conninfo) == 0


async def test_backup_name_is_only_in_the_final_backup_info(
    postgres: PostgresServer, fs_store: Store, layout: ServerLayout
) -> None:
    store = RecordingStore(fs_store)
    result = await take_backup(store, layout, postgres.conninfo, settings(backup_name="nightly"))
    started, done = store.bodies[layout.backup_info(result.backup_id)]
    assert b"backup_name=" not in started
    assert b"backup_name=nightly\n" in done and result.info.backup_name == "nightly"


@pytest.mark.parametrize("superuser", [True, False], ids=["watching-the-archiver", "postgres-waits"])
async def test_done_only_once_the_backup_wal_is_archived(
    postgres_factory: Callable[..., PostgresServer],
    pg_version: int,
    fs_store: Store,
    layout: ServerLayout,
    superuser: bool,
) -> None:
    archive = owned_by_postgres_tempdir("bcp-archive-")
    script = write_script(archive / "archive.sh", f'/bin/sh -c \'sleep 0.3; cp "$1" {archive}/"$2"\' sh "$@"')
    server = postgres_factory(pg_version, archive_command=f"{script} %p %f")
    conninfo = server.conninfo
    if not superuser:  # no pg_monitor: cannot list pg_wal, PostgreSQL's own wait is used
        server.query("CREATE ROLE operator LOGIN IN ROLE pg_read_all_settings")
        for function in ("pg_switch_wal()", "pg_create_restore_point(text)", "pg_control_system()",
                         "pg_control_checkpoint()", "pg_control_recovery()"):  # fmt: skip
            server.query(f"GRANT EXECUTE ON FUNCTION {function} TO operator")
        start, stop = ("pg_backup_start(text, boolean)", "pg_backup_stop(boolean)")
        if pg_version < 15:
            start, stop = ("pg_start_backup(text, boolean, boolean)", "pg_stop_backup(boolean, boolean)")
        server.query(f"GRANT EXECUTE ON FUNCTION {start}, {stop} TO operator")
        conninfo = conninfo.replace("user=postgres", "user=operator")
    try:
        result = await take_backup(fs_store, layout, conninfo, BackupSettings(immediate_checkpoint=True))
        archived = set(os.listdir(archive))
    finally:
        subprocess.run(["rm", "-rf", str(archive)], check=True)
    info = result.info
    assert info.status == "DONE" and info.end_xlog and info.begin_xlog
    end, begin = parse_lsn(info.end_xlog), parse_lsn(info.begin_xlog)
    last = wal_file_for_lsn(1, end - 1, info.segment_size)
    history = f"{info.begin_wal}.{begin % info.segment_size:08X}.backup"
    assert {last, history} <= archived
    assert backup_sessions(server.conninfo) == 0


def test_settings_refuse_bad_values() -> None:
    from barman_cloud.errors import InvalidInput

    with pytest.raises(InvalidInput, match="reserved"):
        BackupSettings(backup_name="latest")
    with pytest.raises(InvalidInput, match="looks like a backup ID"):
        BackupSettings(backup_name="20240506T070809")
    with pytest.raises(InvalidInput, match="not a backup ID"):
        BackupSettings(backup_id="yesterday")
    with pytest.raises(InvalidInput, match="not a base-backup compression"):
        BackupSettings(compression=compression.ZSTD)
    with pytest.raises(InvalidInput, match="jobs"):
        BackupSettings(jobs=0)


def test_barman_sizes() -> None:
    from barman_cloud.backup.backup import parse_size

    assert parse_size("100GB") == 100 * 1024**3
    assert parse_size("1GiB") == 1000**3  # barman's inverted bases, kept
    assert parse_size("512MB") == 512 * 1024**2
    assert parse_size("12345") == 12345
    assert parse_size("2048B") == 2048
