"""`barman-cloud-plugin restore` on real PostgreSQL (15 and 18 by default, all with FULL=1): the
source archives through our `wal-archive` into S3 (moto); after the restore, starting PostgreSQL
on the directory is the only step, and it stops exactly at each kind of target (time, LSN, xid,
name, immediate) with the rows before the target and none after, tablespace relocated."""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from barman_cloud.config.manifests import parse_manifests
from barman_cloud.config.secrets import resolve
from barman_cloud.format import compression
from barman_cloud.format.backup_id import new_backup_id
from barman_cloud.format.backup_info import format_backup_info
from barman_cloud.format.keys import ServerLayout
from barman_cloud.restore.engine import MARKER
from barman_cloud.storage.factory import open_store
from barman_cloud.storage.location import parse_destination
from tests.barman_cloud.restore import pitr
from tests.barman_cloud.restore.pg_backup import PlainBackup, take_backup
from tests.harness.object_stores import MotoS3
from tests.harness.postgres import PostgresServer, owned_by_postgres_tempdir


@dataclass
class Source:
    version: int
    manifest: Path
    workload: pitr.Workload
    backup_id: str


def manifest_text(moto: MotoS3, prefix: str) -> str:
    return moto.manifest(prefix, name="pitr", wal="compression: gzip")


async def upload(manifest: str, backup_id: str, backup: PlainBackup) -> None:
    manifests = parse_manifests(manifest)
    resolved = await resolve(manifests.object_store(), manifests, environ={})
    store = open_store(resolved.destination, resolved.credentials, resolved.options)
    layout = ServerLayout(parse_destination(resolved.destination).prefix, "pg")
    try:
        for name, body in backup.archives.items():
            await store.put(f"{layout.backup_dir(backup_id)}{name}", body)
        await store.put(layout.backup_info(backup_id), format_backup_info(backup.info))
    finally:
        await store.close()


@pytest.fixture(scope="module")
def source(pg_version: int, moto_s3: MotoS3) -> Iterator[Source]:
    workdir = owned_by_postgres_tempdir("bcp-pitr-source-")
    manifest = workdir / "store.yaml"
    text = manifest_text(moto_s3, f"pitr-{uuid.uuid4().hex[:8]}")
    manifest.write_text(text)
    manifest.chmod(0o644)
    tablespace = owned_by_postgres_tempdir("bcp-pitr-tbs-")
    server = PostgresServer(
        pg_version, {"archive_command": f"{pitr.CLI} wal-archive -f {manifest} --server-name pg %p"}
    )
    try:
        pitr.prepare(server, tablespace)
        backup_id = new_backup_id()
        backup = take_backup(server, backup_id, compression.LZ4)
        asyncio.run(upload(text, backup_id, backup))
        workload = pitr.run_after_backup(server)
        pitr.switch_and_wait_archived(server)
        yield Source(pg_version, manifest, workload, backup_id)
    finally:
        server.destroy()
        pitr.remove(tablespace)
        pitr.remove(workdir)


@pytest.fixture
def restore_root() -> Iterator[Path]:
    root = owned_by_postgres_tempdir("bcp-pitr-restore-")
    yield root
    subprocess.run(["rm", "-rf", str(root)], check=False)


def restore(source: Source, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return pitr.cli(
        "restore", "-f", str(source.manifest), "--server-name", "pg", *args, "--jobs", "2",
        "--tablespace", f"tbs:{root / 'tbs'}",
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["immediate", "time", "lsn", "xid", "name"])
def test_postgres_stops_at_the_target(source: Source, restore_root: Path, kind: str) -> None:
    target = source.workload.targets[kind]
    result = restore(source, restore_root, "latest", str(restore_root / "data"), *target.args)
    assert result.returncode == 0, result.stderr
    assert f"restored backup {source.backup_id}" in result.stdout
    # The source's archive_command came back with the backup: promoted at its target, the restored
    # server would archive its new timeline into the source's archive.
    assert "archive_command set to 'false'" in result.stdout
    auto_conf = (restore_root / "data/postgresql.auto.conf").read_text().splitlines()
    assert [line for line in auto_conf if line.startswith("archive_command")] == ["archive_command = 'false'"]
    log = pitr.recover_and_check(
        source.version, restore_root / "data", target, source.workload.tablespace_rows
    )
    assert "restored log file" in log  # WAL came through our wal-restore
    assert ("recovery stopping after reaching consistency" in log) == (kind == "immediate")
    assert os.readlink(
        restore_root / "data/pg_tblspc" / os.listdir(restore_root / "data/pg_tblspc")[0]
    ) == str(restore_root / "tbs")


def test_a_restore_over_a_failed_attempt_recovers(source: Source, restore_root: Path) -> None:
    data = restore_root / "data"
    # What an interrupted attempt of ours leaves: the marker and partial content.
    (data / "base").mkdir(parents=True)
    (data / MARKER).write_text("{}")
    (data / "base" / "half-written").write_bytes(b"\0" * 1000)
    target = source.workload.targets["name"]
    result = restore(source, restore_root, source.backup_id, str(data), *target.args)
    assert result.returncode == 0, result.stderr
    assert "interrupted attempt" in result.stdout
    assert not (data / "base" / "half-written").exists()
    pitr.recover_and_check(source.version, data, target, source.workload.tablespace_rows)


def test_refusals_are_clear(source: Source, restore_root: Path) -> None:
    (restore_root / "busy").mkdir()
    (restore_root / "busy" / "PG_VERSION").write_text("17\n")
    busy = restore(source, restore_root, "latest", str(restore_root / "busy"))
    assert busy.returncode == 1 and "is not empty and was not left by an interrupted restore" in busy.stderr
    too_early = restore(
        source, restore_root, "latest", str(restore_root / "x"), "--target-time", "2001-01-01 00:00:00+00"
    )
    assert too_early.returncode == 1 and "no target backup found" in too_early.stderr
    bad = restore(source, restore_root, "latest", str(restore_root / "y"), "--target-lsn", "nonsense")
    assert bad.returncode == 3 and "not an LSN" in bad.stderr
    assert not (restore_root / "x").exists() and not (restore_root / "y").exists()
