"""Our base backups, read by barman-cloud 3.19: ``barman-cloud-backup-list`` lists them with the right
fields, ``barman-cloud-restore`` restores them (with ``barman-cloud-wal-restore`` as PostgreSQL's
restore_command) and PostgreSQL starts on the result with every row, on S3 (every compression),
Azure and GCS; a tablespace; and our archives against barman-cloud-backup's own, member by member."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from barman_cloud.backup.backup import BackupSettings, take_backup
from barman_cloud.format import compression
from barman_cloud.format.backup_info import BackupInfo, parse_backup_info
from barman_cloud.format.compression import Codec
from barman_cloud.storage import read_all
from tests.barman_cloud.backup.helpers import RestoredServer, archive_members, write_script
from tests.compat.conftest import SharedBucket
from tests.harness.postgres import PostgresServer, owned_by_postgres_tempdir
from tests.harness.tools import barman_cloud_bin

CLI = str(Path(sys.executable).with_name("barman-cloud-plugin"))
BARMAN_FLAGS = {None: [], "gzip": ["--gzip"], "bzip2": ["--bzip2"], "snappy": ["--snappy"], "lz4": ["--lz4"]}
GZIP, BZIP2, SNAPPY, LZ4 = compression.GZIP, compression.BZIP2, compression.SNAPPY, compression.LZ4
slow = pytest.mark.slow

# Every compression on S3; one on Azure and one on GCS by default, the rest with FULL=1.
MATRIX = [
    ("s3", None), ("s3", GZIP), ("s3", BZIP2), ("s3", SNAPPY), ("s3", LZ4),
    ("azure", LZ4), ("gcs", GZIP),
    pytest.param("azure", None, marks=slow), pytest.param("azure", GZIP, marks=slow),
    pytest.param("azure", BZIP2, marks=slow), pytest.param("azure", SNAPPY, marks=slow),
    pytest.param("gcs", None, marks=slow), pytest.param("gcs", BZIP2, marks=slow),
    pytest.param("gcs", SNAPPY, marks=slow), pytest.param("gcs", LZ4, marks=slow),
]  # fmt: skip


def _id(value: object) -> str:
    if isinstance(value, Codec):
        return value.name
    return "none" if value is None else str(value)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """Files the postgres user reads or writes (manifests, scripts, data directories)."""
    path = owned_by_postgres_tempdir("bcp-compat-backup-")
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=True)


def our_archive_command(bucket: SharedBucket, workdir: Path) -> str:
    manifest = workdir / "store.yaml"
    manifest.write_text(bucket.manifest)
    manifest.chmod(0o644)
    return f"{CLI} wal-archive -f {manifest} --server-name {bucket.server} %p"


def barman_command(bucket: SharedBucket, workdir: Path, command: str, *flags: str) -> str:
    """A script running barman-cloud-<command> with the bucket's options (archive/restore_command)."""
    script = workdir / f"barman-{command}.sh"
    program = barman_cloud_bin(f"barman-cloud-{command}")
    arguments = " ".join([*bucket.barman_args, *flags, bucket.destination, bucket.server])
    env = {**bucket.barman_env, "TMPDIR": str(workdir)}
    return str(write_script(script, f'{program} {arguments} "$@"', env))


def wait_archived(server: PostgresServer, timeout: float = 120) -> None:
    """Switch WAL and wait until PostgreSQL has archived the segment holding everything so far."""
    segment = server.query("SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0]
    server.query("SELECT pg_switch_wal()")
    deadline = time.monotonic() + timeout
    while True:
        last, failed = server.query("SELECT last_archived_wal, failed_count FROM pg_stat_archiver")[0]
        if last is not None and last >= segment:
            return
        assert time.monotonic() < deadline, f"{segment} not archived (failed {failed} times)"
        time.sleep(0.1)


def listed(bucket: SharedBucket) -> dict[str, dict[str, Any]]:
    result = bucket.barman("backup-list", "--format", "json", bucket.destination, bucket.server)
    return {item["backup_id"]: item for item in json.loads(result.stdout)["backups_list"]}


def assert_listed_as(item: dict[str, Any], backup_id: str, info: BackupInfo) -> None:
    """What CloudNativePG and the upstream plugin read from barman-cloud-backup-list/show."""
    assert (item["backup_id"], item["status"], item["server_name"]) == (backup_id, "DONE", "cloud")
    for name in ("begin_wal", "end_wal", "begin_xlog", "end_xlog", "systemid", "timeline", "begin_offset",
                 "end_offset", "version", "pgdata", "xlog_segment_size", "error", "backup_name"):  # fmt: skip
        assert item[name] == getattr(info, name), name
    assert item["backup_label"] == repr(info.backup_label)
    assert info.begin_time and item["begin_time_iso"] == info.begin_time.isoformat()
    assert info.end_time and item["end_time_iso"] == info.end_time.isoformat()


@pytest.mark.parametrize(("shared_bucket", "codec"), MATRIX, indirect=["shared_bucket"], ids=_id)
async def test_barman_lists_and_restores_our_backup(
    shared_bucket: SharedBucket,
    codec: Codec | None,
    postgres_factory: Callable[..., PostgresServer],
    workdir: Path,
) -> None:
    server = postgres_factory(15, archive_command=our_archive_command(shared_bucket, workdir))
    server.query("CREATE TABLE t AS SELECT generate_series(1, 1000) AS n")
    settings = BackupSettings(compression=codec, immediate_checkpoint=True, backup_name="compat")
    result = await take_backup(shared_bucket.store, shared_bucket.layout, server.conninfo, settings)
    server.query("INSERT INTO t SELECT generate_series(1001, 2000)")  # replayed from the WAL archive
    wait_archived(server)
    server.stop()

    assert_listed_as(listed(shared_bucket)[result.backup_id], result.backup_id, result.info)
    restored = workdir / "restored"
    shared_bucket.barman(
        "restore", shared_bucket.destination, shared_bucket.server, result.backup_id, str(restored)
    )
    assert (restored / "backup_label").read_text() == result.info.backup_label
    replica = RestoredServer(15, restored, f"{barman_command(shared_bucket, workdir, 'wal-restore')} %f %p")
    try:
        replica.wait_promoted()
        assert replica.query("SELECT count(*), sum(n) FROM t") == [(2000, 2001000)]
    finally:
        replica.stop()


@pytest.mark.parametrize("shared_bucket", ["s3"], indirect=True)
async def test_tablespace_relocated_by_barman_with_barmans_wal_archive(
    shared_bucket: SharedBucket,
    postgres_factory: Callable[..., PostgresServer],
    pg_version: int,
    workdir: Path,
) -> None:
    archive_command = barman_command(shared_bucket, workdir, "wal-archive", "--gzip")
    server = postgres_factory(pg_version, archive_command=f"{archive_command} %p")
    location = workdir / "tablespace"
    location.mkdir()
    subprocess.run(["chown", "postgres:postgres", str(location)], check=True)
    server.query(f"CREATE TABLESPACE spare LOCATION '{location}'")
    server.query("CREATE TABLE t TABLESPACE spare AS SELECT generate_series(1, 3000) AS n")
    oid = server.query("SELECT oid FROM pg_tablespace WHERE spcname = 'spare'")[0][0]
    settings = BackupSettings(compression=LZ4, immediate_checkpoint=True)
    result = await take_backup(shared_bucket.store, shared_bucket.layout, server.conninfo, settings)
    assert result.info.tablespaces == (("spare", oid, str(location)),)
    assert [key.rsplit("/", 1)[1] for key in result.archives] == [f"{oid}.tar.lz4", "data.tar.lz4"]
    server.query("INSERT INTO t SELECT generate_series(3001, 4000)")
    wait_archived(server)
    server.stop()

    restored, relocated = workdir / "restored", workdir / "relocated"
    shared_bucket.barman("restore", "--tablespace", f"spare:{relocated}", shared_bucket.destination,
                         shared_bucket.server, result.backup_id, str(restored))  # fmt: skip
    assert (restored / "pg_tblspc" / str(oid)).resolve() == relocated
    replica = RestoredServer(
        pg_version, restored, f"{barman_command(shared_bucket, workdir, 'wal-restore')} %f %p"
    )
    try:
        replica.wait_promoted()
        assert replica.query("SELECT count(*) FROM t") == [(4000,)]
        assert replica.query(f"SELECT pg_tablespace_location({oid})") == [(str(relocated),)]
    finally:
        replica.stop()


SERVER_FACTS = (
    "server_name", "version", "pgdata", "systemid", "config_file", "hba_file", "ident_file", "included_files",
    "xlog_segment_size", "data_checksums", "summarize_wal", "tablespaces", "mode", "compression", "timeline",
    "status", "error", "size", "deduplicated_size", "encryption",
)  # fmt: skip


@pytest.mark.parametrize("shared_bucket", ["s3"], indirect=True)
async def test_same_archive_and_backup_info_as_barman_cloud_backup(
    shared_bucket: SharedBucket, postgres_factory: Callable[..., PostgresServer], workdir: Path
) -> None:
    """barman-cloud-backup and we back up the same quiet server, one after the other: same
    members in the same order with the same headers, and the same backup.info keys and server facts."""
    server = postgres_factory(15, archive_command=our_archive_command(shared_bucket, workdir))
    server.query("CREATE TABLE t AS SELECT generate_series(1, 1000) AS n")
    server.query("CHECKPOINT")
    port = str(server.port)
    # Its worker processes talk over a unix socket in TMPDIR: a short path.
    result = subprocess.run(
        [str(barman_cloud_bin("barman-cloud-backup")), *shared_bucket.barman_args, "--immediate-checkpoint",
         "-h", "127.0.0.1", "-p", port, "-U", "postgres", shared_bucket.destination, shared_bucket.server],
        env={"PATH": "/usr/bin:/bin", **shared_bucket.barman_env, "TMPDIR": str(workdir)},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (theirs_id,) = listed(shared_bucket)
    await asyncio.sleep(1.1)  # backup IDs have a one-second resolution
    ours = await take_backup(shared_bucket.store, shared_bucket.layout, server.conninfo,
                             BackupSettings(immediate_checkpoint=True))  # fmt: skip
    layout, store = shared_bucket.layout, shared_bucket.store
    theirs_info = parse_backup_info(await read_all(store, layout.backup_info(theirs_id)))
    theirs_text = (await read_all(store, layout.backup_info(theirs_id))).decode()
    ours_text = (await read_all(store, layout.backup_info(ours.backup_id))).decode()
    assert [line.split("=")[0] for line in ours_text.splitlines()] == [
        line.split("=")[0] for line in theirs_text.splitlines()
    ]
    for name in SERVER_FACTS:
        assert getattr(ours.info, name) == getattr(theirs_info, name), name
    assert set(dict(ours.info.copy_stats or {})) == set(dict(theirs_info.copy_stats or {}))

    theirs_members = await archive_members(store, layout.archive(theirs_id, "data", 0, None))
    ours_members = await archive_members(store, layout.archive(ours.backup_id, "data", 0, None))
    theirs_names = [member.name for member, _ in theirs_members]
    ours_names = [member.name for member, _ in ours_members]
    # Only what PostgreSQL itself changed between the two backups may differ (new SLRU pages...).
    assert len(set(theirs_names) ^ set(ours_names)) <= 5, set(theirs_names) ^ set(ours_names)
    common = set(theirs_names) & set(ours_names)
    assert [n for n in ours_names if n in common] == [n for n in theirs_names if n in common]
    assert ours_names[0] == theirs_names[0] == "."
    assert ours_names[-2:] == theirs_names[-2:] == ["global/pg_control", "backup_label"]
    theirs_by_name = {member.name: (member, content) for member, content in theirs_members}
    for member, content in ours_members:
        if member.name not in common or member.name == "backup_label":
            continue
        other, other_content = theirs_by_name[member.name]
        fields = ("type", "mode", "uid", "gid", "uname", "gname", "linkname")
        assert [getattr(member, f) for f in fields] == [getattr(other, f) for f in fields], member.name
        if member.name in ("./PG_VERSION", "./postgresql.conf", "./pg_hba.conf", "base"):
            assert (member.mtime, member.size, content) == (other.mtime, other.size, other_content)
    # backup_label: barman stores uid 0 (it sets the gid twice, E-13); we store the owner's uid.
    their_label = theirs_by_name["backup_label"][0]
    our_label = next(member for member, _ in ours_members if member.name == "backup_label")
    assert (our_label.mode, our_label.mtime, our_label.gid) == (
        their_label.mode,
        their_label.mtime,
        their_label.gid,
    )
    assert their_label.uid == 0 and our_label.uid == os.stat(server.datadir).st_uid
