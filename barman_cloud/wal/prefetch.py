"""Restore ahead of PostgreSQL: a spool of the next segments, kept full as they are consumed.

PostgreSQL's restore_command asks for one segment at a time and waits for each. On every request
the prefetcher hands over the spooled copy if it has one (a rename), then tops the spool up to
``depth`` segments ahead on the same timeline, in the background, ``parallel`` downloads at a time.
With a ``budget`` the depth follows the segment size (learnt from the first segment restored):
as many segments as fit in the budget, so 1 MiB segments are fetched 16 times deeper than 16 MiB
ones. The spool directory is keyed by the source (destination and server name, E-25), files appear
in it only complete (temporary name, fsync, rename), and a segment that is not in the archive yet
marks the end of the WAL stream (the sidecar turns that into CloudNativePG's "switch to streaming"
answer): the spool is not topped up past it, so the segments after it are not asked for again
and again while PostgreSQL replays what is spooled.

A request costs one hop to a thread (take the spooled file, sweep older ones); what the spool
holds is known in memory, so topping it up costs no filesystem calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
from pathlib import Path

from barman_cloud.errors import BarmanCloudError, NotFound
from barman_cloud.format.wal import (
    DEFAULT_SEGMENT_SIZE,
    MAX_SEGMENT_SIZE,
    MIN_SEGMENT_SIZE,
    WalKind,
    WalName,
    next_segment,
)
from barman_cloud.wal.restore import RestoredWal, WalRestorer

log = logging.getLogger(__name__)


def spool_key(destination: str, server: str, endpoint: str | None = None) -> str:
    """The spool folder of one archive: its archive markers and prefetched segments. The endpoint
    is part of the archive's identity (another S3-compatible server behind the same
    destinationPath is another archive: markers of the old one prove nothing there)."""
    identity = f"{destination}\x00{server}" + (f"\x00{endpoint}" if endpoint else "")
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


MAX_DEPTH = 256
"""Segments ahead at most, whatever the budget."""
DEFAULT_BUDGET = 256 * 1024 * 1024
"""The sidecar's spool budget: 16 segments of 16 MiB, 256 of 1 MiB (pgBackRest's default queue is
128 MiB, and its documentation advises more for recoveries)."""


def _move(source: Path, target: Path) -> None:
    try:
        os.replace(source, target)
    except OSError:
        # Another filesystem (the spool is not always on PGDATA's volume): copy, fsync, then drop.
        temporary = target.with_name(f".{target.name}.spool.tmp")
        shutil.copyfile(source, temporary)
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, target)
        source.unlink()


class Prefetcher:
    """Serves restore requests through a spool of segments fetched ahead.

    ``depth``: segments kept ahead (and downloads at a time, unless ``parallel`` says otherwise);
    ``budget``: bytes of spool to fill, which deepens ``depth`` for small segments (0: no budget).
    """

    def __init__(
        self,
        restorer: WalRestorer,
        spool_root: Path,
        source_key: str,
        depth: int,
        *,
        budget: int = 0,
        parallel: int | None = None,
    ) -> None:
        self.restorer = restorer
        self.spool = spool_root / source_key
        self.min_depth = max(0, depth)
        self.budget = max(0, budget)
        self.segment_size = DEFAULT_SEGMENT_SIZE
        self._slots = asyncio.Semaphore(max(1, parallel if parallel is not None else depth))
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._spooled: set[str] | None = None
        """Names complete in the spool (None until the directory was read once)."""
        self.end_of_stream: str | None = None
        """The first segment found missing while prefetching (None while the archive keeps up)."""

    @property
    def depth(self) -> int:
        if not self.min_depth:
            return 0
        return max(self.min_depth, min(MAX_DEPTH, self.budget // self.segment_size))

    async def restore(self, name: str, destination: Path, *, prefetch: bool = True) -> RestoredWal:
        wal = WalName.parse(name)
        pending = self._tasks.get(wal.name)
        if pending is not None:
            with contextlib.suppress(Exception):  # a failed prefetch: fetched directly below
                await asyncio.shield(pending)
        sweep = wal.kind is WalKind.SEGMENT and prefetch and bool(self.min_depth)
        spooled = self.spool / wal.name
        if self._spooled is None:
            self._spooled = await asyncio.to_thread(self._read_spool)
        take = wal.name in self._spooled
        self._spooled.discard(wal.name)
        # Older segments of this timeline: PostgreSQL has moved past them.
        old = [n for n in self._spooled if n < wal.name and n[:8] == wal.name[:8]] if sweep else []
        self._spooled.difference_update(old)
        size = await asyncio.to_thread(self._take, spooled, destination, take, old)
        result: RestoredWal
        if size is not None:
            result = RestoredWal(wal.name, f"spool:{spooled}", size)
        else:
            result = await self.restorer.restore(wal.name, destination)
        if sweep:
            # The real segment size (initdb --wal-segsize): a restored segment is exactly that long.
            if MIN_SEGMENT_SIZE <= result.size <= MAX_SEGMENT_SIZE and result.size & (result.size - 1) == 0:
                self.segment_size = result.size
            end = self.end_of_stream
            if end is not None and (wal.name[:8] != end[:8] or not self._before_end(wal.name)):
                # PostgreSQL got past the end seen before, or follows another timeline now.
                self.end_of_stream = None
            self._top_up(wal.name)
        return result

    def _read_spool(self) -> set[str]:
        """Once, in a thread: the complete files a previous life of the process left in the spool."""
        self.spool.mkdir(parents=True, exist_ok=True)
        return {entry.name for entry in os.scandir(self.spool) if not entry.name.startswith(".")}

    def _before_end(self, name: str) -> bool:
        """``name`` comes before the end of the stream seen so far (on the same timeline)."""
        end = self.end_of_stream
        return end is None or name[:8] != end[:8] or name < end

    @staticmethod
    def _take(spooled: Path, destination: Path, take: bool, old: list[str]) -> int | None:
        """In a thread: move the spooled copy to ``destination`` (its size; None when the spool
        does not have it) and drop the ``old`` ones. Temporary files (prefetches in flight) are
        never touched: the restorer removes its own."""
        size: int | None = None
        if take:
            try:
                size = spooled.stat().st_size
                _move(spooled, destination)
            except FileNotFoundError:
                size = None
        for name in old:
            with contextlib.suppress(FileNotFoundError):
                (spooled.parent / name).unlink()
        return size

    def _top_up(self, name: str) -> None:
        following = name
        for _ in range(self.depth):
            following = next_segment(following, self.segment_size)
            if not self._before_end(following):
                break
            if following not in self._tasks and following not in (self._spooled or ()):
                self._tasks[following] = asyncio.create_task(
                    self._fetch(following), name=f"prefetch {following}"
                )

    async def _fetch(self, name: str) -> None:
        try:
            async with self._slots:
                if not self._before_end(name):
                    return  # an earlier one is missing: this one is not there either
                await self.restorer.restore(name, self.spool / name)
            if self._spooled is not None:
                self._spooled.add(name)
        except NotFound:
            end = self.end_of_stream
            if end is None or name[:8] != end[:8] or name < end:
                self.end_of_stream = name
            log.debug("prefetch reached the end of the archive", extra={"wal": name})
        except (BarmanCloudError, OSError) as error:
            # A full or unwritable spool included: PostgreSQL's request downloads it directly.
            log.warning(
                "prefetch failed; PostgreSQL's request will fetch it",
                extra={"wal": name, "error": str(error)},
            )
        finally:
            self._tasks.pop(name, None)

    async def drain(self) -> None:
        """Wait for the prefetches in flight (a short-lived command must not exit before them)."""
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def close(self) -> None:
        """Cancel prefetches in flight (their temporary files are removed by the restorer)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
