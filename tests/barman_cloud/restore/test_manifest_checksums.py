"""Archives uploaded in parts carry no checksum of their own: the backup's manifest
(``bcp_checksums.json``) has their SHA-256, and the restore checks every archive against it, so a
damaged archive fails the restore (a retry cleans it) instead of extracting silently."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from barman_cloud.errors import Corrupt
from barman_cloud.format import compression
from barman_cloud.format.keys import ServerLayout
from barman_cloud.restore import restore_backup
from barman_cloud.restore.engine import MARKER
from barman_cloud.storage import ObjectInfo, read_all
from barman_cloud.storage.factory import open_store
from barman_cloud.storage.options import StoreOptions
from barman_cloud.storage.s3 import S3Store
from barman_cloud.verify.manifest import ArchiveChecksum, write_manifest
from tests.barman_cloud.restore.test_restore_and_retry import BACKUP, put_cluster
from tests.harness.object_stores import MotoS3
from tests.storage.backends.s3 import credentials


@pytest.fixture
async def s3(moto_s3: MotoS3) -> AsyncIterator[tuple[S3Store, ServerLayout]]:
    prefix = f"manifest-{uuid.uuid4().hex[:8]}"
    store = open_store(
        f"s3://{moto_s3.bucket}/{prefix}", credentials(moto_s3), StoreOptions(endpoint_url=moto_s3.endpoint)
    )
    assert isinstance(store, S3Store)
    yield store, ServerLayout(prefix, "pg")
    await store.close()


async def _record_and_damage(store: S3Store, layout: ServerLayout, *, truncate: bool) -> str:
    """Record every archive in the manifest, then replace the data archive's bytes through a plain
    PutObject with no metadata: what a multipart archive looks like, damaged afterwards."""
    folder = layout.backup_dir(BACKUP)
    entries = []
    async for info in store.list(folder):
        assert isinstance(info, ObjectInfo)
        name = info.key.rsplit("/", 1)[-1]
        if ".tar" in name:
            body = await read_all(store, info.key)
            entries.append(ArchiveChecksum(name, len(body), hashlib.sha256(body).hexdigest()))
    await write_manifest(store, layout, BACKUP, entries)
    key = f"{folder}data.tar.gz"
    data = bytearray(await read_all(store, key))
    if truncate:
        del data[-1]
    else:
        data[len(data) // 2] ^= 0x10
    client = await store._get_client()
    await client.put_object(Bucket=store.bucket, Key=key, Body=bytes(data))
    return key


async def test_a_damaged_archive_fails_the_restore_and_a_repaired_one_restores(
    s3: tuple[S3Store, ServerLayout], tmp_path: Path
) -> None:
    store, layout = s3
    files = await put_cluster(store, layout, BACKUP, compression.GZIP)
    good = await read_all(store, f"{layout.backup_dir(BACKUP)}data.tar.gz")
    key = await _record_and_damage(store, layout, truncate=False)
    destination = tmp_path / "pgdata"
    tablespaces = {"fast": tmp_path / "fast"}

    with pytest.raises(Corrupt, match=key):
        await restore_backup(
            store, layout, BACKUP, destination, jobs=2, ranged_min_size=None, tablespace_map=tablespaces
        )
    assert (destination / MARKER).exists()  # an interrupted restore, which the next attempt cleans

    client = await store._get_client()
    await client.put_object(Bucket=store.bucket, Key=key, Body=good)
    result = await restore_backup(
        store, layout, BACKUP, destination, jobs=2, ranged_min_size=None, tablespace_map=tablespaces
    )
    assert result.cleaned_previous_attempt
    for name, content in files.items():
        assert (destination / name).read_bytes() == content, name


@pytest.mark.parametrize("damage", ["truncated", "part missing"])
async def test_what_the_listing_shows_is_checked_before_anything_is_written(
    s3: tuple[S3Store, ServerLayout], tmp_path: Path, damage: str
) -> None:
    """A truncated archive, or an extra part of data.tar gone (each part is a whole tar: without
    the manifest the restore would succeed without that part's files)."""
    store, layout = s3
    await put_cluster(store, layout, BACKUP, compression.GZIP)
    await _record_and_damage(store, layout, truncate=damage == "truncated")
    if damage == "part missing":
        await store.delete_many([f"{layout.backup_dir(BACKUP)}data_0001.tar.gz"])
    name = "data.tar.gz" if damage == "truncated" else "data_0001.tar.gz"
    with pytest.raises(Corrupt, match=rf"manifest records {name} of \d+ bytes"):
        await restore_backup(
            store, layout, BACKUP, tmp_path / "pgdata", tablespace_map={"fast": tmp_path / "fast"}
        )
    assert not (tmp_path / "pgdata").exists() and not (tmp_path / "fast").exists()
