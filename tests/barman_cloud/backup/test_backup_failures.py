"""A backup that fails or is cancelled half-way, against moto's S3 server and a real PostgreSQL:
backup.info says FAILED with barman's error text (never DONE), no multipart upload is left
behind, and the server is out of backup mode (its session is gone, a new backup completes)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

from barman_cloud.backup.backup import BackupSettings, take_backup
from barman_cloud.errors import BarmanCloudError
from barman_cloud.format.keys import ServerLayout
from barman_cloud.storage import Store
from barman_cloud.storage.factory import open_store
from tests.barman_cloud.backup.helpers import backup_info, backup_sessions, object_keys
from tests.harness.object_stores import MotoS3
from tests.harness.postgres import PostgresServer

# Uncompressed, one part at a time: the data archive takes a while to upload.
SLOW = BackupSettings(jobs=1, immediate_checkpoint=True, wait_for_archive=False)


def pending_uploads(s3: Any, bucket: str, prefix: str) -> list[dict[str, Any]]:
    uploads = s3.list_multipart_uploads(Bucket=bucket, Prefix=prefix).get("Uploads", [])
    return list(uploads)


async def wait_for_upload(s3: Any, bucket: str, prefix: str) -> dict[str, Any]:
    """The data archive's multipart upload, as soon as the store has started it."""
    for _ in range(3000):
        uploads = await asyncio.to_thread(pending_uploads, s3, bucket, prefix)
        if uploads:
            return uploads[0]
        await asyncio.sleep(0.01)
    raise AssertionError("the backup never started its multipart upload")


async def the_only_backup(store: Store, layout: ServerLayout) -> str:
    keys = await object_keys(store, layout.base)
    ids = {key[len(layout.base) :].split("/")[0] for key in keys}
    assert len(ids) == 1, keys
    return ids.pop()


async def assert_failed_and_clean(
    store: Store, layout: ServerLayout, s3: Any, moto_s3: MotoS3, server: PostgresServer, error: str
) -> None:
    backup_id = await the_only_backup(store, layout)
    info = await backup_info(store, layout.backup_info(backup_id))
    assert info.status == "FAILED"
    assert (
        info.error is not None and info.error.startswith("failure uploading data (") and error in info.error
    )
    assert info.begin_wal and info.end_wal is None and info.copy_stats is None
    # backup.info only: the aborted archive is not visible, nothing is pending.
    assert await object_keys(store, layout.backup_dir(backup_id)) == [layout.backup_info(backup_id)]
    assert pending_uploads(s3, moto_s3.bucket, store.location.prefix) == []
    assert backup_sessions(server.conninfo) == 0
    # The server is not stuck in backup mode: the next backup goes through.
    await asyncio.sleep(1.1)  # a new second, a new backup ID
    result = await take_backup(store, layout, server.conninfo, replace(SLOW, jobs=2))
    assert result.info.status == "DONE"


async def test_store_refusing_the_upload_fails_the_backup(
    big_server: PostgresServer, s3_store: Store, s3: Any, moto_s3: MotoS3
) -> None:
    layout = ServerLayout(s3_store.location.prefix, "pg")
    backup = asyncio.create_task(take_backup(s3_store, layout, big_server.conninfo, SLOW))
    upload = await wait_for_upload(s3, moto_s3.bucket, layout.base)
    assert upload["Key"].endswith("/data.tar")
    # Someone (a lifecycle rule, an operator) aborts the upload: the next part is refused.
    await asyncio.to_thread(s3.abort_multipart_upload, Bucket=moto_s3.bucket, Key=upload["Key"],
                            UploadId=upload["UploadId"])  # fmt: skip
    with pytest.raises(BarmanCloudError):
        await backup
    await assert_failed_and_clean(s3_store, layout, s3, moto_s3, big_server, "")


async def test_cancelled_backup(
    big_server: PostgresServer, s3_store: Store, s3: Any, moto_s3: MotoS3
) -> None:
    layout = ServerLayout(s3_store.location.prefix, "pg")
    backup = asyncio.create_task(take_backup(s3_store, layout, big_server.conninfo, SLOW))
    await wait_for_upload(s3, moto_s3.bucket, layout.base)
    backup.cancel()
    with pytest.raises(asyncio.CancelledError):
        await backup
    await assert_failed_and_clean(s3_store, layout, s3, moto_s3, big_server, "(CancelledError)")


async def test_session_killed_during_the_backup(
    big_server: PostgresServer, s3_store: Store, s3: Any, moto_s3: MotoS3
) -> None:
    layout = ServerLayout(s3_store.location.prefix, "pg")
    backup = asyncio.create_task(take_backup(s3_store, layout, big_server.conninfo, SLOW))
    await wait_for_upload(s3, moto_s3.bucket, layout.base)
    big_server.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name = 'barman_cloud_backup'"
    )
    with pytest.raises((BarmanCloudError, psycopg.Error)):
        await backup
    await assert_failed_and_clean(s3_store, layout, s3, moto_s3, big_server, "")


async def test_unreachable_postgres_leaves_nothing(s3_store: Store) -> None:
    from barman_cloud.errors import Unavailable

    layout = ServerLayout(s3_store.location.prefix, "pg")
    with pytest.raises(Unavailable, match="cannot connect to PostgreSQL"):
        await take_backup(s3_store, layout, "host=127.0.0.1 port=1 user=postgres connect_timeout=2", SLOW)
    assert await object_keys(s3_store, layout.base) == []


async def test_progress_is_logged_while_the_backup_runs(
    big_server: PostgresServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(f"file://{tmp_path / 'bucket'}")
    try:
        with caplog.at_level(logging.INFO, logger="barman_cloud.backup"):
            await take_backup(
                store, ServerLayout("", "pg"), big_server.conninfo, replace(SLOW, progress_interval=0.01)
            )
    finally:
        await store.close()
    lines = [record for record in caplog.records if "MiB read at" in record.getMessage()]
    assert lines, "no progress line"
    fields = vars(lines[-1])
    assert fields["bytes_done"] > 0 and fields["bytes_total"] > 100_000_000
    assert fields["rate_mib_s"] >= 0 and "eta_seconds" in fields and 0 <= fields["percent"] <= 100
