"""Keep annotations (one listing, E-20/E-21), archive recognition (format 1.4) and the recovery
window with WAL presence, on the filesystem store and on S3 (moto)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from barman_cloud.catalog.archives import list_archives
from barman_cloud.catalog.keep import keep_backup, list_keep_annotations, read_keep, release_keep
from barman_cloud.catalog.listing import load_catalog
from barman_cloud.catalog.recovery_window import recovery_window
from barman_cloud.errors import FailedPrecondition
from barman_cloud.format import compression
from barman_cloud.format.backup_id import backup_id_time
from barman_cloud.format.keys import ServerLayout
from barman_cloud.storage import Store
from barman_cloud.storage.factory import open_store
from barman_cloud.storage.location import parse_destination
from barman_cloud.storage.options import StoreOptions
from tests.barman_cloud.catalog.conftest import CountingStore
from tests.barman_cloud.catalog.synthetic import info, put_backup, put_wal, wal
from tests.harness.object_stores import MotoS3
from tests.storage.backends.s3 import credentials


@pytest.fixture
async def s3_with_trailing_slash(moto_s3: MotoS3) -> AsyncIterator[tuple[Store, ServerLayout]]:
    destination = f"s3://{moto_s3.bucket}/keep-{uuid.uuid4().hex[:8]}/"
    store = open_store(destination, credentials(moto_s3), StoreOptions(endpoint_url=moto_s3.endpoint))
    yield store, ServerLayout(parse_destination(destination).prefix, "pg")
    await store.close()


async def test_keep_annotations_in_one_listing(fs_store: Store, layout: ServerLayout) -> None:
    for day in range(1, 5):
        await put_backup(fs_store, layout, f"2026010{day}T000000", info(f"2026010{day}T000000"))
    await keep_backup(fs_store, layout, "20260101T000000", "full")
    await keep_backup(fs_store, layout, "20260102T000000", "standalone")
    # Any annotation body counts (retention treats unknown targets as full), first line only.
    await fs_store.put(f"{layout.backup_dir('20260103T000000')}annotations/keep", b"weird\nsecond line")
    counting = CountingStore(fs_store)
    keeps = await list_keep_annotations(counting, layout)
    assert keeps == {"20260101T000000": "full", "20260102T000000": "standalone", "20260103T000000": "weird"}
    assert counting.calls == {"list": 1, "get": 3}
    assert await read_keep(fs_store, layout, "20260102T000000") == "standalone"
    assert await read_keep(fs_store, layout, "20260104T000000") is None
    await release_keep(fs_store, layout, "20260102T000000")
    assert await read_keep(fs_store, layout, "20260102T000000") is None
    catalog = await load_catalog(fs_store, layout, keeps=True)
    assert catalog.keeps == {"20260101T000000": "full", "20260103T000000": "weird"}


async def test_only_done_backups_can_be_kept(fs_store: Store, layout: ServerLayout) -> None:
    await put_backup(fs_store, layout, "20260101T000000", info("20260101T000000", status="FAILED"))
    with pytest.raises(FailedPrecondition, match="status is FAILED"):
        await keep_backup(fs_store, layout, "20260101T000000", "full")


async def test_double_slash_keep_annotations_are_honoured(
    s3_with_trailing_slash: tuple[Store, ServerLayout],
) -> None:
    store, layout = s3_with_trailing_slash
    assert layout.raw_prefix.endswith("/")
    await put_backup(store, layout, "20260101T000000", info("20260101T000000"))
    await put_backup(store, layout, "20260102T000000", info("20260102T000000"))
    # What barman writes with a trailing slash in the destination URL (E-20).
    quirk = f"{layout.raw_prefix}/pg/base/20260101T000000/annotations/keep"
    await store.put(quirk, b"standalone")
    assert (await load_catalog(store, layout, keeps=True)).keeps == {"20260101T000000": "standalone"}
    assert await read_keep(store, layout, "20260101T000000") == "standalone"
    # We write both places (barman with the same URL reads the double-slash one), release both.
    await keep_backup(store, layout, "20260102T000000", "full")
    assert await read_keep(store, layout, "20260102T000000") == "full"
    assert [k async for k in _keys(store, f"{layout.raw_prefix}/pg/base/20260102T000000/")] == [
        f"{layout.raw_prefix}/pg/base/20260102T000000/annotations/keep"
    ]
    await release_keep(store, layout, "20260101T000000")
    await release_keep(store, layout, "20260102T000000")
    assert (await load_catalog(store, layout, keeps=True)).keeps == {}


async def _keys(store: Store, prefix: str) -> AsyncIterator[str]:
    async for entry in store.list(prefix):
        yield getattr(entry, "key", "")


async def test_archives_are_recognised_like_barman(fs_store: Store, layout: ServerLayout) -> None:
    backup = info("20260101T000000", tablespaces=(("tbs", 16385, "/srv/tbs"), ("big", 16390, "/srv/big")))
    await put_backup(
        fs_store,
        layout,
        "20260101T000000",
        backup,
        {
            "data.tar.gz": b"1",
            "data_0001.tar.gz": b"22",
            "data_0002.tar.gz": b"333",
            "16385.tar.lz4": b"4",
            "16390.tar.snappy": b"5",
            "16390_0001.tar.snappy": b"6",
            "data.tar.xz": b"not a base-backup suffix",
            "data2.tar": b"a spurious prefix match",
            "163850.tar": b"not tablespace 16385",
            "backup_label": b"only for snapshot backups",
            "annotations/keep": b"full",
        },
    )
    archives = await list_archives(fs_store, layout, "20260101T000000", backup)
    directory = layout.backup_dir("20260101T000000")
    assert archives.keys == [
        f"{directory}data.tar.gz",
        f"{directory}data_0001.tar.gz",
        f"{directory}data_0002.tar.gz",
        f"{directory}16385.tar.lz4",
        f"{directory}16390.tar.snappy",
        f"{directory}16390_0001.tar.snappy",
    ]
    assert [o.codec for o in archives.objects][3:5] == [compression.LZ4, compression.SNAPPY]
    assert archives.total_size == 1 + 2 + 3 + 1 + 1 + 1
    assert archives.missing == () and archives.duplicates == {}

    lacking = info("20260102T000000", tablespaces=(("tbs", 16385, "/srv/tbs"),))
    await put_backup(fs_store, layout, "20260102T000000", lacking, {"data.tar": b"x", "data.tar.bz2": b"y"})
    archives = await list_archives(fs_store, layout, "20260102T000000", lacking)
    assert archives.missing == ("16385",)
    assert list(archives.duplicates) == ["data"]


async def test_recovery_window_reflects_the_wal_archive(fs_store: Store, layout: ServerLayout) -> None:
    # Oldest: its WAL was removed (a lifecycle rule); then one whose WAL is complete; the newest
    # FAILED one and a STARTED one do not count as successful.
    await put_backup(fs_store, layout, "20260101T000000", info("20260101T000000", segment=2, span=2))
    await put_backup(fs_store, layout, "20260102T000000", info("20260102T000000", segment=5, span=3))
    await put_backup(fs_store, layout, "20260103T000000", info("20260103T000000", segment=9))
    await put_backup(
        fs_store, layout, "20260104T000000", info("20260104T000000", status="FAILED", segment=12)
    )
    await put_backup(
        fs_store, layout, "20260105T000000", info("20260105T000000", status="STARTED", segment=13)
    )
    await put_wal(fs_store, layout, wal(3))  # segment 2 of the first backup is gone
    await put_wal(fs_store, layout, wal(5), compression.GZIP)
    await put_wal(fs_store, layout, wal(6))
    await put_wal(fs_store, layout, f"{wal(7)}.partial")  # a promoted standby's last segment counts
    await put_wal(fs_store, layout, wal(9))
    counting = CountingStore(fs_store)
    catalog = await load_catalog(counting, layout)
    window = await recovery_window(counting, layout, catalog)
    minute = timedelta(minutes=1)
    assert window.first_recoverability_point == backup_id_time("20260102T000000").astimezone() + minute
    assert window.last_successful_backup_time == backup_id_time("20260103T000000").astimezone() + minute
    assert window.last_failed_backup_time == backup_id_time("20260104T000000").astimezone() + minute
    # One listing of base/, one read per backup, one listing per WAL directory touched.
    assert counting.calls == {"list": 2, "get": 5}
    upstream = await recovery_window(fs_store, layout, catalog, check_wal=False)
    assert upstream.first_recoverability_point == backup_id_time("20260101T000000").astimezone() + minute


async def test_recovery_window_of_an_empty_or_failed_catalog(fs_store: Store, layout: ServerLayout) -> None:
    window = await recovery_window(fs_store, layout, await load_catalog(fs_store, layout))
    assert window.to_json() == {}
    failed = info("20260101T000000", status="FAILED", end_time=None, begin_wal=None, end_wal=None)
    await put_backup(fs_store, layout, "20260101T000000", failed)
    window = await recovery_window(fs_store, layout, await load_catalog(fs_store, layout))
    assert window.first_recoverability_point is None and window.last_successful_backup_time is None
    assert window.last_failed_backup_time == backup_id_time("20260101T000000").astimezone()
