"""Each real service the suite depends on is there and does real work.

If one of these fails, the service is missing or broken (the error names the command that
installs it); every other test that uses the service would fail for the same reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiobotocore.session
from azure.storage.blob.aio import BlobServiceClient
from gcloud.aio.storage import Storage

from tests.harness.object_stores import Azurite, FakeGCS, MotoS3
from tests.harness.postgres import PostgresServer, as_postgres, owned_by_postgres_tempdir
from tests.harness.tools import barman_cloud_bin

PAYLOAD = b"barman-cloud-plugin " * 1000


def test_postgres_stores_and_returns_a_row(postgres: PostgresServer, pg_version: int) -> None:
    version = postgres.query("SHOW server_version_num")[0][0]
    assert int(version) // 10000 == pg_version
    postgres.query(f"CREATE TABLE smoke_{pg_version} (id int PRIMARY KEY, note text)")
    postgres.query(f"INSERT INTO smoke_{pg_version} VALUES (1, 'stored')")
    assert postgres.query(f"SELECT note FROM smoke_{pg_version} WHERE id = 1") == [("stored",)]
    settings = dict(
        postgres.query("SELECT name, setting FROM pg_settings WHERE name IN ('wal_level', 'archive_mode')")
    )
    assert settings == {"wal_level": "replica", "archive_mode": "on"}


async def test_moto_s3_stores_and_returns_an_object(moto_s3: MotoS3) -> None:
    session = aiobotocore.session.get_session()
    async with session.create_client(
        "s3",
        endpoint_url=moto_s3.endpoint,
        aws_access_key_id=moto_s3.access_key,
        aws_secret_access_key=moto_s3.secret_key,
        region_name=moto_s3.region,
    ) as s3:
        await s3.put_object(Bucket=moto_s3.bucket, Key="smoke/object", Body=PAYLOAD)
        listing = await s3.list_objects_v2(Bucket=moto_s3.bucket, Prefix="smoke/")
        assert [entry["Key"] for entry in listing["Contents"]] == ["smoke/object"]
        response = await s3.get_object(Bucket=moto_s3.bucket, Key="smoke/object")
        async with response["Body"] as body:
            assert await body.read() == PAYLOAD


async def test_azurite_stores_and_returns_a_blob(azurite: Azurite) -> None:
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        container = service.get_container_client("smoke")
        if not await container.exists():
            await container.create_container()
        await container.upload_blob("smoke/blob", PAYLOAD, overwrite=True)
        names = [blob.name async for blob in container.list_blobs(name_starts_with="smoke/")]
        assert names == ["smoke/blob"]
        stream = await container.download_blob("smoke/blob")
        assert await stream.readall() == PAYLOAD


async def test_fake_gcs_stores_and_returns_an_object(fake_gcs: FakeGCS) -> None:
    async with Storage(api_root=fake_gcs.endpoint) as storage:
        await storage.upload(fake_gcs.bucket, "smoke/object", PAYLOAD)
        listing = await storage.list_objects(fake_gcs.bucket, params={"prefix": "smoke/"})
        assert [item["name"] for item in listing["items"]] == ["smoke/object"]
        assert await storage.download(fake_gcs.bucket, "smoke/object") == PAYLOAD


def _wait_archived(server: PostgresServer, wal_name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        archived, failed, last_failed = server.query(
            "SELECT archived_count, failed_count, last_failed_wal FROM pg_stat_archiver"
        )[0]
        done = server.query("SELECT last_archived_wal >= %s FROM pg_stat_archiver", [wal_name])[0][0]
        if done:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{wal_name} not archived: {archived} archived, {failed} failed ({last_failed})"
            )
        time.sleep(0.2)


def test_barman_cloud_archives_and_restores_a_postgres_wal(
    postgres_factory: Callable[..., PostgresServer], moto_s3: MotoS3
) -> None:
    """barman-cloud-wal-archive as PostgreSQL's own archive_command, then barman-cloud-wal-restore."""
    archive = barman_cloud_bin("barman-cloud-wal-archive")
    restore = barman_cloud_bin("barman-cloud-wal-restore")
    destination = f"s3://{moto_s3.bucket}/barman-smoke"
    env = " ".join(f"{k}={v}" for k, v in moto_s3.env().items())
    server = postgres_factory(15)
    server.set(archive_command=f"{env} {archive} --endpoint-url {moto_s3.endpoint} {destination} pg %p")
    server.query("CREATE TABLE t AS SELECT generate_series(1, 1000) AS n")
    wal_name = server.query("SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0]
    server.query("SELECT pg_switch_wal()")
    _wait_archived(server, wal_name)

    key = f"barman-smoke/pg/wals/{wal_name[:16]}/{wal_name}"
    listed = asyncio.run(_list_keys(moto_s3, f"barman-smoke/pg/wals/{wal_name[:16]}/"))
    assert key in listed

    target = owned_by_postgres_tempdir("bcp-barman-restore-")
    try:
        restored = target / wal_name
        subprocess.run(
            as_postgres(["env", *(f"{k}={v}" for k, v in moto_s3.env().items()), str(restore),
                         "--endpoint-url", moto_s3.endpoint, destination, "pg", wal_name, str(restored)]),
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        original = server.pg_wal / wal_name
        assert restored.stat().st_size == 16 * 1024 * 1024
        assert _sha256(restored) == _sha256(original)
    finally:
        subprocess.run(["rm", "-rf", str(target)], check=True)


async def _list_keys(moto_s3: MotoS3, prefix: str) -> list[str]:
    session = aiobotocore.session.get_session()
    async with session.create_client(
        "s3",
        endpoint_url=moto_s3.endpoint,
        aws_access_key_id=moto_s3.access_key,
        aws_secret_access_key=moto_s3.secret_key,
        region_name=moto_s3.region,
    ) as s3:
        listing = await s3.list_objects_v2(Bucket=moto_s3.bucket, Prefix=prefix)
        return [entry["Key"] for entry in listing.get("Contents", [])]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_temporary_directories_are_reachable_by_postgres() -> None:
    # The trap of docs/testing.md: PostgreSQL's user must reach what it runs and writes.
    path = owned_by_postgres_tempdir("bcp-reach-")
    try:
        subprocess.run(as_postgres(["touch", str(path / "ok")]), check=True)
        assert (path / "ok").exists()
    finally:
        subprocess.run(["rm", "-rf", str(path)], check=True)
        assert not os.path.exists(path)
    assert tempfile.gettempdir()
