"""One WAL file archived and restored: every compression, duplicates, partials, atomic restore."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from barman_cloud.errors import Conflict, FailedPrecondition, InvalidInput, NotFound
from barman_cloud.format import compression
from barman_cloud.format.keys import ServerLayout
from barman_cloud.format.wal import WalName
from barman_cloud.storage import Store, exists, read_all
from barman_cloud.wal.archive import ArchiveSettings, WalArchiver
from barman_cloud.wal.check import check_wal_archive
from barman_cloud.wal.restore import WalRestorer
from tests.barman_cloud.wal.conftest import make_pg_wal, segment_bytes
from tests.harness.postgres import PostgresServer

SEG = "000000010000000000000002"


@pytest.mark.parametrize("codec", [None, *compression.WAL_CODECS], ids=lambda c: c.name if c else "none")
async def test_real_postgres_wal_round_trips_with_every_compression(
    codec: compression.Codec | None,
    postgres: PostgresServer,
    fs_store: Store,
    layout: ServerLayout,
    tmp_path: Path,
) -> None:
    # Write something so that the switch completes a segment holding real records.
    postgres.query("CREATE TABLE IF NOT EXISTS wal_source (n int)")
    postgres.query("INSERT INTO wal_source SELECT generate_series(1, 1000)")
    name = postgres.query("SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0]
    postgres.query("SELECT pg_switch_wal()")
    source = tmp_path / name
    source.write_bytes(await asyncio.to_thread((postgres.pg_wal / name).read_bytes))
    archived = await WalArchiver(fs_store, layout, ArchiveSettings(codec=codec)).archive(source)
    assert archived.key == layout.wal(WalName.parse(name), codec)
    raw = await read_all(fs_store, archived.key)
    if codec is not None:
        assert raw.startswith(codec.magic)
    restored = await WalRestorer(fs_store, layout).restore(name, tmp_path / "RECOVERYXLOG")
    assert restored.key == archived.key
    assert (tmp_path / "RECOVERYXLOG").read_bytes() == source.read_bytes()


async def test_identical_duplicate_is_success_and_different_content_is_refused(
    fs_store: Store, layout: ServerLayout, tmp_path: Path
) -> None:
    pg_wal = make_pg_wal(tmp_path, [SEG])
    archiver = WalArchiver(fs_store, layout, ArchiveSettings(codec=compression.GZIP))
    first = await archiver.archive(pg_wal / SEG)
    again = await WalArchiver(fs_store, layout, ArchiveSettings(codec=compression.LZ4)).archive(pg_wal / SEG)
    assert again.already_there and again.key == first.key  # no second suffix variant is written
    before = await read_all(fs_store, first.key)
    (pg_wal / SEG).write_bytes(b"x" * 1024)
    with pytest.raises(Conflict, match=r"already exists with different content.*nothing was overwritten"):
        await archiver.archive(pg_wal / SEG)
    assert await read_all(fs_store, first.key) == before


async def test_a_corrupt_archived_copy_is_replaced_by_the_local_file(
    fs_store: Store, layout: ServerLayout, tmp_path: Path
) -> None:
    """PostgreSQL still has the segment and retries its archive_command: refusing because the
    stored copy cannot be read would block archiving (and fill pg_wal) for good."""
    pg_wal = make_pg_wal(tmp_path, [SEG])
    first = await WalArchiver(fs_store, layout, ArchiveSettings(codec=compression.GZIP)).archive(pg_wal / SEG)
    await fs_store.put(first.key, b"\x1f\x8b\x08\x00 not a gzip stream any more")  # damaged
    again = await WalArchiver(fs_store, layout, ArchiveSettings(codec=compression.LZ4)).archive(pg_wal / SEG)
    assert not again.already_there and again.key == layout.wal(WalName.parse(SEG), compression.LZ4)
    assert not await exists(fs_store, first.key)  # the damaged copy is gone once a good one is stored
    restored = await WalRestorer(fs_store, layout).restore(SEG, tmp_path / "RECOVERYXLOG")
    assert (tmp_path / "RECOVERYXLOG").read_bytes() == (pg_wal / SEG).read_bytes()
    assert restored.key == again.key


async def test_history_files_and_bad_names(fs_store: Store, layout: ServerLayout, tmp_path: Path) -> None:
    history = tmp_path / "00000002.history"
    history.write_text("1\t0/3000000\tno recovery target specified\n")
    archived = await WalArchiver(fs_store, layout).archive(history)
    assert archived.key == "archive/pg/wals/00000002.history"
    await WalRestorer(fs_store, layout).restore("00000002.history", tmp_path / "restored")
    assert (tmp_path / "restored").read_text() == history.read_text()
    bad = tmp_path / "RECOVERYXLOG"
    bad.write_bytes(b"x")
    with pytest.raises(InvalidInput, match="is not a WAL file name"):
        await WalArchiver(fs_store, layout).archive(bad)
    with pytest.raises(NotFound):
        await WalArchiver(fs_store, layout).archive(tmp_path / "000000010000000000000009")


async def test_full_segment_beats_partial_and_backup_files_are_never_served(
    fs_store: Store, layout: ServerLayout, tmp_path: Path
) -> None:
    wal = WalName.parse(SEG)
    base = layout.wal_dir(wal)
    await fs_store.put(f"{base}{SEG}.partial.zst", compression.ZSTD.compress(b"partial"))
    await fs_store.put(f"{base}{SEG}.00000028.backup.bz2", compression.BZIP2.compress(b"backup label"))
    restorer = WalRestorer(fs_store, layout)
    served = await restorer.restore(SEG, tmp_path / "a")
    assert served.from_partial and (tmp_path / "a").read_bytes() == b"partial"
    await fs_store.put(f"{base}{SEG}.gz", compression.GZIP.compress(b"complete"))
    served = await restorer.restore(SEG, tmp_path / "b")
    assert not served.from_partial and (tmp_path / "b").read_bytes() == b"complete"
    with pytest.raises(NotFound, match="000000010000000000000003 is not in the archive"):
        await restorer.restore("000000010000000000000003", tmp_path / "c")
    assert not (tmp_path / "c").exists()


async def test_failed_restore_leaves_no_file(fs_store: Store, layout: ServerLayout, tmp_path: Path) -> None:
    wal = WalName.parse(SEG)
    packed = compression.GZIP.compress(segment_bytes(SEG))
    await fs_store.put(layout.wal(wal, compression.GZIP), packed[: len(packed) // 2])
    with pytest.raises(InvalidInput, match="truncated gzip"):
        await WalRestorer(fs_store, layout).restore(SEG, tmp_path / "RECOVERYXLOG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bucket"]


async def test_restore_after_a_suffix_change_falls_back_to_listing(
    fs_store: Store, layout: ServerLayout, tmp_path: Path
) -> None:
    names = ["000000010000000000000002", "000000010000000000000003"]
    pg_wal = make_pg_wal(tmp_path, names)
    await WalArchiver(fs_store, layout, ArchiveSettings(codec=compression.GZIP)).archive(pg_wal / names[0])
    await WalArchiver(fs_store, layout, ArchiveSettings(codec=compression.ZSTD)).archive(pg_wal / names[1])
    restorer = WalRestorer(fs_store, layout)
    for name in names:
        await restorer.restore(name, tmp_path / name)
        assert (tmp_path / name).read_bytes() == segment_bytes(name)


async def test_empty_archive_check_is_timeline_aware(
    fs_store: Store, layout: ServerLayout, tmp_path: Path
) -> None:
    await check_wal_archive(fs_store, layout)
    await fs_store.put(f"{layout.wals}README", b"not a WAL")
    await check_wal_archive(fs_store, layout)  # non-WAL objects do not count
    pg_wal = make_pg_wal(tmp_path, ["000000020000000000000005"])
    await WalArchiver(fs_store, layout).archive(pg_wal / "000000020000000000000005")
    with pytest.raises(FailedPrecondition, match="is not empty"):
        await check_wal_archive(fs_store, layout)
    await check_wal_archive(fs_store, layout, timeline=3)
    with pytest.raises(FailedPrecondition, match="on timeline 2 or later"):
        await check_wal_archive(fs_store, layout, timeline=2)
    assert await exists(fs_store, f"{layout.wals}README")
