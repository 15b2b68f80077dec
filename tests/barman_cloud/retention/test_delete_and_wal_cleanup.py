"""Deleting backups (by ID or by policy) and the WAL they alone needed, on a real store with a
synthetic catalog: backup.info last, unknown objects untouched, history files kept, standalone
keep ranges protected, dry runs deleting nothing, and the documented difference from barman."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from barman_cloud.catalog.keep import keep_backup
from barman_cloud.catalog.listing import load_catalog
from barman_cloud.errors import FailedPrecondition, NotFound
from barman_cloud.format import compression
from barman_cloud.format.keys import ServerLayout
from barman_cloud.retention.delete import apply_retention_policy, delete_backup
from barman_cloud.retention.policies import parse_policy
from barman_cloud.storage import ObjectInfo, Store
from barman_cloud.storage.factory import open_store
from tests.barman_cloud.catalog.synthetic import info, put_backup, put_wal, wal

LAYOUT = ServerLayout("archive", "pg")
B1, B2, B3 = "20260101T000000", "20260102T000000", "20260103T000000"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = open_store(f"file://{tmp_path / 'bucket'}")
    yield opened
    await opened.close()


async def keys(store: Store, prefix: str) -> set[str]:
    return {e.key[len(prefix) :] async for e in store.list(prefix) if isinstance(e, ObjectInfo)}


async def wal_names(store: Store) -> set[str]:
    return {key.rsplit("/", 1)[-1] for key in await keys(store, LAYOUT.wals)}


async def three_backups(store: Store, timeline_of_first: int = 1) -> None:
    await put_backup(store, LAYOUT, B1, info(B1, segment=2, span=2, timeline=timeline_of_first))
    await put_backup(store, LAYOUT, B2, info(B2, segment=5), {"data.tar.gz": b"1", "data_0001.tar.gz": b"2"})
    await put_backup(store, LAYOUT, B3, info(B3, segment=8))
    await store.put(f"{LAYOUT.backup_dir(B2)}notes.txt", b"not a barman object")
    for segment in range(1, 11):
        await put_wal(store, LAYOUT, wal(segment))
    await put_wal(store, LAYOUT, wal(3), compression.GZIP)  # the same segment twice (E-7)
    await put_wal(store, LAYOUT, f"{wal(4)}.partial")
    await put_wal(store, LAYOUT, f"{wal(5)}.00000028.backup")
    await put_wal(store, LAYOUT, "00000002.history")
    await put_wal(store, LAYOUT, wal(1, timeline=2))
    await store.put(f"{LAYOUT.wals}0000000100000000/README", b"not WAL")


async def test_delete_by_id_then_the_oldest(store: Store) -> None:
    await three_backups(store)
    # B1 is older and not kept: point-in-time recovery from it needs all WAL, none goes.
    deletion = await delete_backup(store, LAYOUT, B2)
    assert deletion.objects == [
        f"{LAYOUT.backup_dir(B2)}data.tar.gz",
        f"{LAYOUT.backup_dir(B2)}data_0001.tar.gz",
        LAYOUT.backup_info(B2),
    ]
    assert deletion.wals == []
    assert await keys(store, LAYOUT.backup_dir(B2)) == {"notes.txt"}  # never deleted
    assert [b.backup_id for b in await load_catalog(store, LAYOUT)] == [B1, B3]

    # The oldest: WAL before B3's begin_wal goes (all variants), history files and other
    # objects stay, as does WAL of timeline 2 (it sorts after).
    deletion = await delete_backup(store, LAYOUT, "oldest")
    assert deletion.backup_id == B1
    assert [k.rsplit("/", 1)[-1] for k in deletion.wals] == [
        wal(1), wal(2), wal(3), f"{wal(3)}.gz", wal(4), f"{wal(4)}.partial", wal(5),
        f"{wal(5)}.00000028.backup", wal(6), wal(7),
    ]  # fmt: skip
    assert await wal_names(store) == {wal(8), wal(9), wal(10), "00000002.history", wal(1, 2), "README"}


async def test_retention_protects_standalone_ranges(store: Store) -> None:
    await three_backups(store)
    await keep_backup(store, LAYOUT, B1, "standalone")
    run = await apply_retention_policy(store, LAYOUT, parse_policy("REDUNDANCY 1"))
    assert {k: str(v) for k, v in run.report.items()} == {B1: "KEEP:STANDALONE", B2: "OBSOLETE", B3: "VALID"}
    assert [d.backup_id for d in run.deletions] == [B2]
    # WAL before B3 goes, except B1's range (segments 2-3) which its standalone keep needs.
    assert await wal_names(store) == {
        wal(2), wal(3), f"{wal(3)}.gz", wal(8), wal(9), wal(10), "00000002.history", wal(1, 2), "README",
    }  # fmt: skip


async def test_deleting_by_id_next_to_a_standalone_backup_keeps_wal(store: Store) -> None:
    await three_backups(store)
    await keep_backup(store, LAYOUT, B1, "standalone")
    before = await wal_names(store)
    deletion = await delete_backup(store, LAYOUT, B2)
    assert deletion.wals == [] and await wal_names(store) == before


async def test_dry_run_plans_exactly_what_a_run_deletes(store: Store, tmp_path: Path) -> None:
    await three_backups(store)
    everything = await keys(store, "")
    planned = await apply_retention_policy(store, LAYOUT, parse_policy("REDUNDANCY 1"), dry_run=True)
    assert await keys(store, "") == everything
    assert [d.dry_run for d in planned.deletions] == [True, True]
    done = await apply_retention_policy(store, LAYOUT, parse_policy("REDUNDANCY 1"))
    assert [(d.backup_id, d.objects, d.wals) for d in planned.deletions] == [
        (d.backup_id, d.objects, d.wals) for d in done.deletions
    ]
    assert [d.backup_id for d in done.deletions] == [B1, B2]
    assert everything - await keys(store, "") == {
        key for d in done.deletions for key in [*d.objects, *d.wals]
    }


async def test_timeline_of_the_deleted_backup_is_not_protected(store: Store) -> None:
    """Barman 3.19.1 keeps every timeline 1 WAL here forever (the deleted backup's own timeline
    stays protected, a quirk); we delete it, as the backups left can never use it."""
    await put_backup(store, LAYOUT, B1, info(B1, segment=2, timeline=1))
    await put_backup(store, LAYOUT, B2, info(B2, segment=16, timeline=2))
    for segment in range(1, 17):
        await put_wal(store, LAYOUT, wal(segment))
    for segment in range(16, 19):
        await put_wal(store, LAYOUT, wal(segment, timeline=2))
    await put_wal(store, LAYOUT, "00000002.history")
    deletion = await delete_backup(store, LAYOUT, B1)
    assert len(deletion.wals) == 16
    assert await wal_names(store) == {wal(16, 2), wal(17, 2), wal(18, 2), "00000002.history"}


async def test_any_remaining_backup_protects_its_timeline(store: Store) -> None:
    await put_backup(store, LAYOUT, "20251231T000000", info("20251231T000000", status="FAILED", segment=1))
    await put_backup(store, LAYOUT, B1, info(B1, segment=2, timeline=1))
    await put_backup(store, LAYOUT, B2, info(B2, segment=16, timeline=2))
    for segment in range(1, 5):
        await put_wal(store, LAYOUT, wal(segment))
    deletion = await delete_backup(store, LAYOUT, B1)
    assert deletion.wals == []  # the FAILED backup still protects timeline 1 (as barman)


async def test_refusals(store: Store) -> None:
    await three_backups(store)
    await keep_backup(store, LAYOUT, B3, "full")
    with pytest.raises(FailedPrecondition, match="keep annotation"):
        await delete_backup(store, LAYOUT, B3)
    with pytest.raises(FailedPrecondition, match="minimum redundancy is 3"):
        await delete_backup(store, LAYOUT, B1, minimum_redundancy=3)
    with pytest.raises(NotFound):
        await delete_backup(store, LAYOUT, "20200101T000000")
    await store.put(LAYOUT.backup_info("20260104T000000"), b"garbage without equal sign")
    everything = await keys(store, "")
    for attempt in (
        delete_backup(store, LAYOUT, B1),
        apply_retention_policy(store, LAYOUT, parse_policy("REDUNDANCY 1")),
    ):
        with pytest.raises(FailedPrecondition, match=r"20260104T000000.*incomplete catalog"):
            await attempt
    assert await keys(store, "") == everything


async def test_a_policy_run_removes_only_a_manifest_left_alone(store: Store) -> None:
    """What barman-cloud-backup-delete leaves of our backup (the manifest, alone in a directory
    without backup.info) goes at the next policy run; a directory with anything else in it (a
    pre-3.19 barman backup still running has archives and no backup.info yet) is left alone, and
    a dry run only reports."""
    from barman_cloud.verify.manifest import manifest_key

    await three_backups(store)
    alone, running, mixed = "20251201T000000", "20251202T000000", "20251203T000000"
    await store.put(manifest_key(LAYOUT, alone), b"{}")
    await store.put(f"{LAYOUT.backup_dir(running)}data.tar.gz", b"in progress")
    await store.put(manifest_key(LAYOUT, mixed), b"{}")
    await store.put(f"{LAYOUT.backup_dir(mixed)}data.tar.gz", b"someone's")
    policy = parse_policy("REDUNDANCY 3")

    dry = await apply_retention_policy(store, LAYOUT, policy, dry_run=True)
    assert dry.orphans == [manifest_key(LAYOUT, alone)]
    assert await keys(store, LAYOUT.backup_dir(alone)) == {"bcp_checksums.json"}

    run = await apply_retention_policy(store, LAYOUT, policy)
    assert run.orphans == [manifest_key(LAYOUT, alone)] and run.deletions == []
    assert await keys(store, LAYOUT.backup_dir(alone)) == set()
    assert await keys(store, LAYOUT.backup_dir(running)) == {"data.tar.gz"}
    assert await keys(store, LAYOUT.backup_dir(mixed)) == {"bcp_checksums.json", "data.tar.gz"}
    assert [b.backup_id for b in await load_catalog(store, LAYOUT)] == [B1, B2, B3]
