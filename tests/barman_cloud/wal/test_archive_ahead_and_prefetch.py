"""Archiving ahead of PostgreSQL's archive_command and restoring ahead of its restore_command.

The store is the real filesystem backend wrapped by a counter (a pass-through, not a mock) so the
tests can see how many uploads ran at once and how many requests a restore cost.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from pathlib import Path

from barman_cloud.format import compression
from barman_cloud.format.keys import ServerLayout
from barman_cloud.format.wal import WalName
from barman_cloud.storage import CommonPrefix, ObjectInfo, Store
from barman_cloud.wal.archive import ArchiveSettings, WalArchiver
from barman_cloud.wal.archive_ahead import ArchiveAhead
from barman_cloud.wal.prefetch import Prefetcher, spool_key
from barman_cloud.wal.restore import WalRestorer
from tests.barman_cloud.wal.conftest import make_pg_wal, segment_bytes

NAMES = [f"0000000100000000000000{n:02X}" for n in range(0xFC, 0x100)] + [
    f"0000000100000001000000{n:02X}" for n in range(0, 4)
]


class Counting:
    """Pass-through Store that counts calls and uploads in flight."""

    def __init__(self, inner: Store, put_delay: float = 0.0) -> None:
        self.inner = inner
        self.location = inner.location
        self.features = inner.features
        self.put_delay = put_delay
        self.in_flight = 0
        self.peak = 0
        self.puts: list[str] = []
        self.gets = 0
        self.lists = 0

    async def put(
        self,
        key: str,
        data: bytes | AsyncIterable[bytes],
        *,
        size_hint: int | None = None,
        metadata: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.put_delay)
            self.puts.append(key)
            return await self.inner.put(key, data, size_hint=size_hint, metadata=metadata, tags=tags)
        finally:
            self.in_flight -= 1

    async def get(self, key: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        self.gets += 1
        async for chunk in self.inner.get(key, start=start, end=end):
            yield chunk

    async def head(self, key: str) -> ObjectInfo:
        return await self.inner.head(key)

    async def list(
        self, prefix: str, *, delimiter: str | None = None
    ) -> AsyncIterator[ObjectInfo | CommonPrefix]:
        self.lists += 1
        async for entry in self.inner.list(prefix, delimiter=delimiter):
            yield entry

    async def delete_many(self, keys: Iterable[str]) -> None:
        await self.inner.delete_many(keys)

    async def close(self) -> None:
        await self.inner.close()


async def test_segments_after_the_requested_one_are_pushed_ahead(
    fs_store: Store, layout: ServerLayout, tmp_path: Path
) -> None:
    store = Counting(fs_store, put_delay=0.05)
    pg_wal = make_pg_wal(tmp_path, NAMES)
    ahead = ArchiveAhead(WalArchiver(store, layout), pg_wal, tmp_path / "spool/archived", max_parallel=3)
    assert (await ahead.archive(pg_wal / NAMES[0])) is not None
    await ahead.close()
    # PostgreSQL's next calls: the pushed segments answer from their markers, with no upload.
    uploads_before = len(store.puts)
    answered_from_marker = 0
    for name in NAMES[1:]:
        (pg_wal / "archive_status" / f"{NAMES[0]}.ready").unlink(missing_ok=True)
        result = await ahead.archive(pg_wal / name)
        answered_from_marker += result is None
        (pg_wal / "archive_status" / f"{name}.ready").rename(pg_wal / "archive_status" / f"{name}.done")
    await ahead.close()
    assert answered_from_marker >= 2
    assert store.peak <= 3
    assert sorted(store.puts) == sorted(layout.wal(WalName.parse(n), None) for n in NAMES)  # each once
    assert len(store.puts) - uploads_before <= len(NAMES) - 1 - answered_from_marker + 3
    assert ahead.pushed_ahead >= 2
    assert list((tmp_path / "spool/archived").iterdir()) == []  # every marker consumed


async def test_a_marker_is_trusted_only_for_the_same_file(
    fs_store: Store, layout: ServerLayout, tmp_path: Path
) -> None:
    pg_wal = make_pg_wal(tmp_path, NAMES[:2])
    markers = tmp_path / "markers"
    markers.mkdir()
    (markers / NAMES[1]).write_text(json.dumps({"size": 1, "mtime_ns": 2, "inode": 3}))  # a stale marker
    ahead = ArchiveAhead(WalArchiver(fs_store, layout), pg_wal, markers, max_parallel=1)
    assert (await ahead.archive(pg_wal / NAMES[1])) is not None  # uploaded, not skipped
    assert not (markers / NAMES[1]).exists()


async def test_failed_ahead_upload_is_retried_by_postgres_own_request(
    fs_store: Store, layout: ServerLayout, tmp_path: Path
) -> None:
    pg_wal = make_pg_wal(tmp_path, NAMES[:3])
    (pg_wal / NAMES[1]).unlink()  # .ready without its file: the ahead upload of it fails
    ahead = ArchiveAhead(WalArchiver(fs_store, layout), pg_wal, tmp_path / "markers", max_parallel=3)
    await ahead.archive(pg_wal / NAMES[0])
    await ahead.close()
    assert not (tmp_path / "markers" / NAMES[1]).exists()
    (pg_wal / NAMES[1]).write_bytes(segment_bytes(NAMES[1]))
    assert (await ahead.archive(pg_wal / NAMES[1])) is not None


async def test_prefetch_keeps_the_spool_full_and_reports_the_end_of_the_stream(
    fs_store: Store, layout: ServerLayout, tmp_path: Path
) -> None:
    pg_wal = make_pg_wal(tmp_path, NAMES)
    archiver = WalArchiver(fs_store, layout, ArchiveSettings(codec=compression.LZ4))
    for name in NAMES:
        await archiver.archive(pg_wal / name)
    store = Counting(fs_store)
    prefetcher = Prefetcher(
        WalRestorer(store, layout), tmp_path / "spool", spool_key("file://b", "pg"), depth=3
    )
    destination = tmp_path / "pgdata/pg_wal"
    destination.mkdir(parents=True)
    served_from_spool = 0
    for name in NAMES:
        result = await prefetcher.restore(name, destination / "RECOVERYXLOG")
        served_from_spool += result.key.startswith("spool:")
        assert (destination / "RECOVERYXLOG").read_bytes() == segment_bytes(name), name
        await asyncio.sleep(0.05)  # PostgreSQL replaying the segment while the spool refills
    await prefetcher.close()
    assert served_from_spool == len(NAMES) - 1  # everything but the first came from the spool
    assert prefetcher.end_of_stream == "000000010000000100000004"
    assert sorted(p.name for p in destination.iterdir()) == ["RECOVERYXLOG"]  # no stray temporary files


async def test_a_restore_costs_one_listing_then_one_get_per_segment(
    fs_store: Store, layout: ServerLayout, tmp_path: Path
) -> None:
    pg_wal = make_pg_wal(tmp_path, NAMES[:3])
    archiver = WalArchiver(fs_store, layout, ArchiveSettings(codec=compression.LZ4))
    for name in NAMES[:3]:
        await archiver.archive(pg_wal / name)
    store = Counting(fs_store)
    restorer = WalRestorer(store, layout)
    destination = tmp_path / "restored"
    destination.mkdir()
    # The first segment: one listing finds its suffix (and would have found a .partial), one GET.
    await restorer.restore(NAMES[0], destination / "first")
    assert (store.lists, store.gets) == (1, 1)
    # The next ones: the suffix found last time, a GET and no listing.
    for name in NAMES[1:3]:
        await restorer.restore(name, destination / name)
        assert (destination / name).read_bytes() == segment_bytes(name)
    assert (store.lists, store.gets) == (1, 3)


async def test_prefetch_does_not_ask_again_for_segments_past_the_end(
    fs_store: Store, layout: ServerLayout, tmp_path: Path
) -> None:
    pg_wal = make_pg_wal(tmp_path, NAMES[:4])
    archiver = WalArchiver(fs_store, layout)
    for name in NAMES[:4]:
        await archiver.archive(pg_wal / name)
    store = Counting(fs_store)
    prefetcher = Prefetcher(
        WalRestorer(store, layout), tmp_path / "spool", spool_key("file://b", "pg"), depth=6
    )
    destination = tmp_path / "RECOVERYXLOG"
    await prefetcher.restore(NAMES[0], destination)
    await prefetcher.drain()
    assert prefetcher.end_of_stream == NAMES[4]
    requests = store.gets + store.lists
    # PostgreSQL replays what is spooled: nothing past the end is asked for again meanwhile.
    for name in NAMES[1:4]:
        result = await prefetcher.restore(name, destination)
        assert result.key.startswith("spool:")
        assert destination.read_bytes() == segment_bytes(name)
        await prefetcher.drain()
    assert store.gets + store.lists == requests
    # Once the archive has it, PostgreSQL's own request fetches the segment that was missing.
    (pg_wal / NAMES[4]).write_bytes(segment_bytes(NAMES[4]))
    await archiver.archive(pg_wal / NAMES[4])
    await prefetcher.restore(NAMES[4], destination)
    assert destination.read_bytes() == segment_bytes(NAMES[4])
    await prefetcher.close()


async def test_the_end_of_the_stream_follows_a_new_timeline(
    fs_store: Store, layout: ServerLayout, tmp_path: Path
) -> None:
    """After a promotion PostgreSQL asks for the new timeline's segments: the end seen on the old
    timeline must give way, and the new timeline's end be found (the handoff to streaming)."""
    timeline_2 = [f"00000002{name[8:]}" for name in NAMES[2:4]]
    pg_wal = make_pg_wal(tmp_path, [*NAMES[:2], *timeline_2])
    archiver = WalArchiver(fs_store, layout)
    for name in [*NAMES[:2], *timeline_2]:
        await archiver.archive(pg_wal / name)
    prefetcher = Prefetcher(
        WalRestorer(fs_store, layout), tmp_path / "spool", spool_key("file://b", "pg"), depth=3
    )
    destination = tmp_path / "RECOVERYXLOG"
    await prefetcher.restore(NAMES[0], destination)
    await prefetcher.drain()
    assert prefetcher.end_of_stream == NAMES[2]  # timeline 1 stops after two segments
    for name in timeline_2:
        await prefetcher.restore(name, destination)
        assert destination.read_bytes() == segment_bytes(name)
        await prefetcher.drain()
    assert prefetcher.end_of_stream == f"00000002{NAMES[4][8:]}"
    await prefetcher.close()


async def test_prefetch_depth_follows_the_segment_size_within_the_budget(
    fs_store: Store, layout: ServerLayout, tmp_path: Path
) -> None:
    mib = 1024 * 1024
    names = [f"0000000100000000000000{n:02X}" for n in range(1, 13)]
    pg_wal = tmp_path / "pg_wal"
    pg_wal.mkdir()
    archiver = WalArchiver(fs_store, layout)
    for name in names:
        (pg_wal / name).write_bytes(segment_bytes(name, mib))
        await archiver.archive(pg_wal / name)
    store = Counting(fs_store)
    prefetcher = Prefetcher(
        WalRestorer(store, layout), tmp_path / "spool", spool_key("file://b", "pg"), depth=2, budget=8 * mib
    )
    assert prefetcher.depth == 2  # 16 MiB assumed until a segment says otherwise
    await prefetcher.restore(names[0], tmp_path / "RECOVERYXLOG")
    await prefetcher.drain()
    assert prefetcher.depth == 8  # 1 MiB segments: 8 of them fit in the budget
    spooled = sorted(p.name for p in (tmp_path / "spool" / spool_key("file://b", "pg")).iterdir())
    assert spooled == names[1:9]
    await prefetcher.close()
