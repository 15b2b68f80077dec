"""Checksums and ``verify`` against barman-cloud 3.19.

- Our backup's checksum manifest (``base/<ID>/bcp_checksums.json``) and our objects' checksum
  metadata do not disturb barman-cloud: -backup-list and -backup-show read the backup without a
  warning, -backup-delete deletes it (leaving the manifest alone in the folder, which neither
  barman nor we then take for a backup, and which our next retention run removes), and our own
  delete removes the manifest too. (That
  barman-cloud-restore and -wal-restore restore our checksummed objects is
  test_backup_with_barman_cloud.py::test_barman_lists_and_restores_our_backup.)
- A backup and WAL written by barman-cloud verify clean with ``verify --to-latest``; a truncated
  barman archive (no checksum of ours) is found by reading the tar through.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from barman_cloud.backup.backup import BackupSettings, take_backup
from barman_cloud.catalog.archives import list_archives
from barman_cloud.catalog.listing import read_backup
from barman_cloud.format import compression
from barman_cloud.storage import ObjectInfo, read_all
from barman_cloud.verify.manifest import MANIFEST_NAME, manifest_key
from tests.barman_cloud.verify.conftest import cli, wait_archived
from tests.compat.conftest import SharedBucket
from tests.compat.test_backup_with_barman_cloud import our_archive_command
from tests.compat.test_restore_and_retention_with_barman_cloud import barman_archive_command, barman_backup
from tests.harness.postgres import PostgresServer, owned_by_postgres_tempdir


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = owned_by_postgres_tempdir("bcp-compat-integrity-")
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=True)


async def folder(bucket: SharedBucket, backup_id: str) -> list[str]:
    prefix = bucket.layout.backup_dir(backup_id)
    return sorted(
        [e.key[len(prefix) :] async for e in bucket.store.list(prefix) if isinstance(e, ObjectInfo)]
    )


@pytest.mark.parametrize("shared_bucket", ["s3", "azure"], indirect=True)
async def test_barman_reads_and_deletes_our_backup_with_its_manifest(
    shared_bucket: SharedBucket, postgres_factory: Callable[..., PostgresServer], workdir: Path
) -> None:
    bucket = shared_bucket
    server = postgres_factory(15, archive_command=our_archive_command(bucket, workdir))
    server.query("CREATE TABLE t AS SELECT generate_series(1, 1000) AS n")
    settings = BackupSettings(compression=compression.GZIP, immediate_checkpoint=True)
    ours = await take_backup(bucket.store, bucket.layout, server.conninfo, settings)
    wait_archived(server)
    server.stop()
    backup_id = ours.backup_id
    assert await folder(bucket, backup_id) == sorted(["backup.info", "data.tar.gz", MANIFEST_NAME])
    info_head = await bucket.store.head(bucket.layout.backup_info(backup_id))
    assert info_head.sha256 is not None  # backup.info carries its checksum too

    listing = bucket.barman("backup-list", "--format", "json", bucket.destination, bucket.server)
    assert [b["backup_id"] for b in json.loads(listing.stdout)["backups_list"]] == [backup_id]
    assert "Unable to open" not in listing.stderr and "Skipping" not in listing.stderr
    shown = bucket.barman("backup-show", bucket.destination, bucket.server, backup_id)
    assert backup_id in shown.stdout and "DONE" in shown.stdout

    bucket.barman("backup-delete", bucket.destination, bucket.server, "--backup-id", backup_id)  # exit 0
    # barman deletes the archives and backup.info it knows of; the manifest stays, alone.
    assert await folder(bucket, backup_id) == [MANIFEST_NAME]
    listing = bucket.barman("backup-list", "--format", "json", bucket.destination, bucket.server)
    assert json.loads(listing.stdout)["backups_list"] == []
    assert "Unable to open" not in listing.stderr  # a folder without backup.info is no backup to barman
    manifest = workdir / "store.yaml"
    source = ["-f", str(manifest), "--server-name", bucket.server]
    mine = cli("backup-list", *source, "--format", "json")
    assert mine.returncode == 0 and "unable to read" not in mine.stderr, mine.stderr
    assert json.loads(mine.stdout)["backups_list"] == []
    assert cli("verify", *source, "--all").returncode == 0  # nothing to verify, nothing wrong

    # A retention run removes the manifest barman left (a dry run only says so).
    policy = ["--retention-policy", "REDUNDANCY 1"]
    dry = cli("backup-delete", *source, *policy, "--dry-run")
    assert dry.returncode == 0 and f"would delete {manifest_key(bucket.layout, backup_id)}" in dry.stdout
    assert await folder(bucket, backup_id) == [MANIFEST_NAME]
    swept = cli("backup-delete", *source, *policy)
    assert swept.returncode == 0 and f"deleted {manifest_key(bucket.layout, backup_id)}" in swept.stdout
    assert await folder(bucket, backup_id) == []


@pytest.mark.parametrize("shared_bucket", ["s3"], indirect=True)
async def test_our_delete_removes_the_manifest(
    shared_bucket: SharedBucket, postgres_factory: Callable[..., PostgresServer], workdir: Path
) -> None:
    bucket = shared_bucket
    server = postgres_factory(15, archive_command=our_archive_command(bucket, workdir))
    settings = BackupSettings(immediate_checkpoint=True)
    ours = await take_backup(bucket.store, bucket.layout, server.conninfo, settings)
    server.stop()
    assert MANIFEST_NAME in await folder(bucket, ours.backup_id)
    source = ["-f", str(workdir / "store.yaml"), "--server-name", bucket.server]
    deleted = cli("backup-delete", *source, ours.backup_id)
    assert deleted.returncode == 0, deleted.stderr
    assert manifest_key(bucket.layout, ours.backup_id) in deleted.stdout
    assert await folder(bucket, ours.backup_id) == []


@pytest.mark.parametrize("shared_bucket", ["s3"], indirect=True)
async def test_barman_backup_and_wal_verify_clean(
    shared_bucket: SharedBucket, postgres_factory: Callable[..., PostgresServer], workdir: Path
) -> None:
    bucket = shared_bucket
    env = {**bucket.barman_env, "TMPDIR": str(workdir)}
    server = postgres_factory(
        15, archive_command=barman_archive_command(bucket.barman_args, env, bucket.destination)
    )
    server.query("CREATE TABLE t AS SELECT generate_series(1, 20000) AS n")
    backup_id = barman_backup(bucket.barman_args, env, bucket.destination, server, "gzip")
    for _ in range(3):
        server.query("INSERT INTO t SELECT generate_series(1, 1000)")
        server.query("SELECT pg_switch_wal()")
    wait_archived(server)
    server.stop()
    manifest = workdir / "store.yaml"
    manifest.write_text(bucket.manifest)
    source = ["-f", str(manifest), "--server-name", bucket.server]

    clean = cli("verify", *source, "latest", "--to-latest", "--format", "json")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    report = json.loads(clean.stdout)
    (backup,) = report["backups"]
    assert backup["backup_id"] == backup_id and backup["archives"] == 1
    assert backup["checksummed_archives"] == 0  # barman's objects carry no checksum of ours
    assert backup["wal_segments"] >= 1 and report["wal_after_backups"][0]["segments"] >= 3

    # barman's data archive cut short (a rewrite through our store: its new checksum is right,
    # so only reading the compressed tar through finds it).
    info = (await read_backup(bucket.store, bucket.layout, backup_id)).info
    (archive,) = (await list_archives(bucket.store, bucket.layout, backup_id, info)).objects
    data = await read_all(bucket.store, archive.key)
    await bucket.store.put(archive.key, data[: len(data) // 2])
    damaged = cli("verify", *source, backup_id)
    assert damaged.returncode == 1
    assert f"[undecodable] {archive.key}" in damaged.stdout or f"[truncated] {archive.key}" in damaged.stdout
