"""The catalog: every readable backup from one listing plus one read each, unreadable ones reported
(never fatal), STARTED/FAILED as barman 3.19 treats them, IDs, shortcuts and names resolved as
format 1.3 says."""

from __future__ import annotations

import pytest

from barman_cloud.catalog.listing import load_catalog
from barman_cloud.catalog.resolve import resolve_backup_id
from barman_cloud.errors import InvalidInput, NotFound
from barman_cloud.format.backup_info import format_backup_info
from barman_cloud.format.keys import ServerLayout
from barman_cloud.storage import Store
from tests.barman_cloud.catalog.conftest import CountingStore
from tests.barman_cloud.catalog.synthetic import info, put_backup


async def test_readable_unreadable_and_missing_backup_info(fs_store: Store, layout: ServerLayout) -> None:
    await put_backup(fs_store, layout, "20260101T000000", info("20260101T000000"))
    await put_backup(fs_store, layout, "20260102T000000", info("20260102T000000", status="FAILED"))
    await put_backup(fs_store, layout, "20260103T000000", info("20260103T000000", status="STARTED"))
    # An unknown key (barman >= 3.15 would abort every command on it): read, kept aside.
    future = format_backup_info(info("20260104T000000")) + b"future_field=42\n"
    await fs_store.put(layout.backup_info("20260104T000000"), future)
    # Unreadable files are reported, not fatal.
    await fs_store.put(layout.backup_info("20260105T000000"), b"status=DONE\nthis line has no equal sign\n")
    await fs_store.put(layout.backup_info("20260106T000000"), b"status=DONE\ntimeline=one\n")
    await fs_store.put(layout.backup_info("20260107T000000"), b"\xff\xfe\x00garbage")
    # A directory without backup.info is not a backup (a pre-3.19 backup still running).
    await fs_store.put(f"{layout.backup_dir('20260108T000000')}data.tar", b"tar")
    # barman lists any directory with a backup.info, whatever its name.
    await put_backup(fs_store, layout, "imported", info("20260109T000000"))

    catalog = await load_catalog(fs_store, layout)

    assert catalog.ids == [
        "20260101T000000",
        "20260102T000000",
        "20260103T000000",
        "20260104T000000",
        "imported",
    ]
    assert [b.status for b in catalog] == ["DONE", "FAILED", "STARTED", "DONE", "DONE"]
    assert catalog.get("20260104T000000").info.unknown == {"future_field": "42"}
    assert sorted(u.backup_id for u in catalog.unreadable) == [
        "20260105T000000",
        "20260106T000000",
        "20260107T000000",
    ]
    reasons = {u.backup_id: u.reason for u in catalog.unreadable}
    assert "not key=value" in reasons["20260105T000000"]
    assert "timeline" in reasons["20260106T000000"]
    assert "UTF-8" in reasons["20260107T000000"]
    with pytest.raises(NotFound, match="20260108T000000"):
        catalog.get("20260108T000000")


async def test_one_listing_and_one_read_per_backup(fs_store: Store, layout: ServerLayout) -> None:
    ids = [f"202601{day:02d}T000000" for day in range(1, 21)]
    for backup_id in ids:
        await put_backup(fs_store, layout, backup_id, info(backup_id))
    counting = CountingStore(fs_store)
    catalog = await load_catalog(counting, layout)
    assert catalog.ids == ids
    assert counting.calls == {"list": 1, "get": len(ids)}


async def test_shortcuts_skip_started_and_last_failed(fs_store: Store, layout: ServerLayout) -> None:
    await put_backup(fs_store, layout, "20260101T000000", info("20260101T000000", status="STARTED"))
    await put_backup(fs_store, layout, "20260102T000000", info("20260102T000000", status="FAILED"))
    await put_backup(fs_store, layout, "20260103T000000", info("20260103T000000", name="nightly"))
    await put_backup(fs_store, layout, "20260104T000000", info("20260104T000000", status="FAILED"))
    await put_backup(fs_store, layout, "20260105T000000", info("20260105T000000", status="STARTED"))
    catalog = await load_catalog(fs_store, layout)

    # 3.19: latest/first skip only STARTED backups; a FAILED one stays eligible.
    assert resolve_backup_id(catalog, "latest") == "20260104T000000"
    assert resolve_backup_id(catalog, "last") == "20260104T000000"
    assert resolve_backup_id(catalog, "first") == "20260102T000000"
    assert resolve_backup_id(catalog, "oldest") == "20260102T000000"
    assert resolve_backup_id(catalog, "last-failed") == "20260104T000000"
    assert resolve_backup_id(catalog, "nightly") == "20260103T000000"
    # An ID is used verbatim, even when no such backup exists.
    assert resolve_backup_id(catalog, "20991231T235959") == "20991231T235959"
    # latest-full is not a cloud shortcut: a name that nothing has.
    with pytest.raises(NotFound, match="Unknown backup 'latest-full'"):
        resolve_backup_id(catalog, "latest-full")
    with pytest.raises(NotFound, match="Unknown backup 'weekly'"):
        resolve_backup_id(catalog, "weekly")


async def test_duplicate_names_need_the_id(fs_store: Store, layout: ServerLayout) -> None:
    await put_backup(fs_store, layout, "20260101T000000", info("20260101T000000", name="twin"))
    await put_backup(fs_store, layout, "20260102T000000", info("20260102T000000", name="twin"))
    catalog = await load_catalog(fs_store, layout)
    with pytest.raises(InvalidInput, match="Multiple backups found matching name 'twin'"):
        resolve_backup_id(catalog, "twin")


async def test_shortcuts_on_an_empty_or_all_started_catalog(fs_store: Store, layout: ServerLayout) -> None:
    catalog = await load_catalog(fs_store, layout)
    assert catalog.ids == [] and catalog.unreadable == []
    with pytest.raises(NotFound):
        resolve_backup_id(catalog, "latest")
    await put_backup(fs_store, layout, "20260101T000000", info("20260101T000000", status="STARTED"))
    catalog = await load_catalog(fs_store, layout)
    for shortcut in ("latest", "first", "last-failed"):
        with pytest.raises(NotFound):
            resolve_backup_id(catalog, shortcut)
