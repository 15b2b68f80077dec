"""Helpers of the backup and restore fault tests: a PostgreSQL that archives straight to the
bucket, restoring a backup and counting its rows, and what multipart uploads were left behind."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from barman_cloud.catalog.listing import load_catalog
from barman_cloud.restore.engine import restore_backup
from tests.e2e.conftest import store_manifest
from tests.faults.conftest import Target
from tests.harness.object_stores import AZURITE_ACCOUNT
from tests.harness.postgres import PostgresServer, as_postgres

CLI = str(Path(sys.executable).with_name("barman-cloud-plugin"))
MiB = 1024 * 1024
ROWS = 20_000
# Parts of 5 MiB (S3's minimum): a fresh cluster's tar makes several, so faults hit parts.
PART = 5 * MiB


def archiving_postgres(
    postgres_factory: Callable[..., PostgresServer], target: Target, workdir: Path
) -> tuple[PostgresServer, Path]:
    """A PostgreSQL whose archive_command is our CLI writing straight to the emulator (no faults
    on the WAL: these tests are about the base backup), with ROWS rows in ``t``."""
    manifest = store_manifest(workdir, target.manifest(via_proxy=False, name="direct"))
    server = postgres_factory(15)
    server.set(archive_command=f"{CLI} wal-archive -f {manifest} --server-name {target.server} %p")
    server.query("CREATE TABLE t (n int, pad text)")
    server.query(f"INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, {ROWS}) g")
    return server, manifest


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.2)


async def done_backups(target: Target) -> list[str]:
    catalog = await load_catalog(target.store(via_proxy=False), target.layout)
    return [backup_id for backup_id, backup in catalog.backups.items() if backup.is_done]


async def statuses(target: Target) -> dict[str, str]:
    catalog = await load_catalog(target.store(via_proxy=False), target.layout)
    return {backup_id: backup.status for backup_id, backup in catalog.backups.items()}


def empty_data_directory(postgres_factory: Callable[..., PostgresServer]) -> PostgresServer:
    """A stopped server whose data directory is empty (mode 0700, the postgres user's)."""
    server = postgres_factory(15)
    server.stop()
    subprocess.run(
        as_postgres(["sh", "-c", f"rm -rf {server.datadir} && mkdir -m 700 {server.datadir}"]), check=True
    )
    return server


def start_recovered(
    server: PostgresServer, manifest: Path, target: Target, restore_command: str | None = None
) -> int:
    """Start ``server`` on a restored data directory and count the rows in ``t`` once recovery
    ends. By default WAL is replayed to the end of the backup through our CLI's restore_command;
    with ``restore_command`` it is replayed to the end of the archive through that command."""
    subprocess.run(["chown", "-R", "postgres:postgres", str(server.datadir)], check=True)
    default = f"{CLI} wal-restore -f {manifest} --server-name {target.server} %f %p"
    lines = [
        f"restore_command = '{restore_command or default}'",
        *([] if restore_command else ["recovery_target = 'immediate'"]),
        "recovery_target_action = 'promote'",
        f"port = {server.port}",
        f"unix_socket_directories = '{server.socket_dir}'",
        "archive_command = ''",
    ]
    script = f"cat >> {server.datadir}/postgresql.auto.conf && touch {server.datadir}/recovery.signal"
    subprocess.run(as_postgres(["sh", "-c", script]), input="\n".join(lines) + "\n", text=True, check=True)
    server.start()
    wait_for(lambda: not server.query("SELECT pg_is_in_recovery()")[0][0], "recovery to finish")
    return int(server.query("SELECT count(*) FROM t")[0][0])


async def restore_and_count(
    target: Target, backup_id: str, postgres_factory: Callable[..., PostgresServer], manifest: Path
) -> int:
    """Restore ``backup_id`` straight from the emulator and count the rows PostgreSQL sees."""
    server = empty_data_directory(postgres_factory)
    await restore_backup(target.store(via_proxy=False), target.layout, backup_id, server.datadir, jobs=2)
    return start_recovered(server, manifest, target)


async def leftover_uploads(target: Target) -> int:
    """Multipart uploads (S3) or uncommitted block blobs (Azure) under the test's prefix.

    fake-gcs-server does not list resumable sessions: GCS counts 0 (not observable here)."""
    if target.name == "s3":
        import aiobotocore.session

        session = aiobotocore.session.get_session()
        async with session.create_client(
            "s3",
            region_name="us-east-1",
            endpoint_url=target.upstream,
            aws_access_key_id="testing-access-key",
            aws_secret_access_key="testing-secret-key",
        ) as client:
            answer = await client.list_multipart_uploads(Bucket="backups", Prefix=target.prefix)
            return len(answer.get("Uploads") or [])
    if target.name == "azure":
        from azure.storage.blob.aio import ContainerClient

        from tests.faults.conftest import _azure_connection_string

        connection = _azure_connection_string(f"{target.upstream}/{AZURITE_ACCOUNT}")
        async with ContainerClient.from_connection_string(connection, "backups") as container:
            committed = {b.name async for b in container.list_blobs(name_starts_with=target.prefix)}
            everything = {
                b.name
                async for b in container.list_blobs(
                    name_starts_with=target.prefix, include=["uncommittedblobs"]
                )
            }
            return len(everything - committed)
    return 0
