"""Restore ahead of PostgreSQL: a spool of the next segments, kept full as they are consumed.

PostgreSQL's restore_command asks for one segment at a time and waits for each. On every request
the prefetcher hands over the spooled copy if it has one (a rename), then tops the spool up to
``depth`` segments ahead on the same timeline, in the background. The spool directory is keyed by
the source (destination and server name, E-25), files appear in it only complete (temporary name,
rename), and a segment that is not in the archive yet marks the end of the WAL stream (the sidecar
turns that into CloudNativePG's "switch to streaming" answer).
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


def spool_key(destination: str, server: str) -> str:
    return hashlib.sha256(f"{destination}\x00{server}".encode()).hexdigest()[:16]


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
    """Serves restore requests through a spool of ``depth`` segments fetched ahead."""

    def __init__(self, restorer: WalRestorer, spool_root: Path, source_key: str, depth: int) -> None:
        self.restorer = restorer
        self.spool = spool_root / source_key
        self.depth = max(0, depth)
        self.segment_size = DEFAULT_SEGMENT_SIZE
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.end_of_stream: str | None = None
        """The first segment found missing while prefetching (None while the archive keeps up)."""

    async def restore(self, name: str, destination: Path, *, prefetch: bool = True) -> RestoredWal:
        wal = WalName.parse(name)
        await asyncio.to_thread(self.spool.mkdir, parents=True, exist_ok=True)
        spooled = self.spool / wal.name
        pending = self._tasks.get(wal.name)
        if pending is not None:
            with contextlib.suppress(BarmanCloudError):
                await asyncio.shield(pending)
        result: RestoredWal
        if await asyncio.to_thread(spooled.exists):
            size = (await asyncio.to_thread(spooled.stat)).st_size
            await asyncio.to_thread(_move, spooled, destination)
            result = RestoredWal(wal.name, f"spool:{spooled}", size)
        else:
            result = await self.restorer.restore(wal.name, destination)
        if wal.kind is WalKind.SEGMENT and prefetch and self.depth:
            # The real segment size (initdb --wal-segsize): a restored segment is exactly that long.
            if MIN_SEGMENT_SIZE <= result.size <= MAX_SEGMENT_SIZE and result.size & (result.size - 1) == 0:
                self.segment_size = result.size
            self.end_of_stream = None
            await self._forget_older_than(wal)
            self._top_up(wal.name)
        return result

    def _top_up(self, name: str) -> None:
        following = name
        for _ in range(self.depth):
            following = next_segment(following, self.segment_size)
            if following == self.end_of_stream:
                break
            if following not in self._tasks and not (self.spool / following).exists():
                self._tasks[following] = asyncio.create_task(
                    self._fetch(following), name=f"prefetch {following}"
                )

    async def _fetch(self, name: str) -> None:
        try:
            await self.restorer.restore(name, self.spool / name)
        except NotFound:
            if self.end_of_stream is None or name < self.end_of_stream:
                self.end_of_stream = name
            log.debug("prefetch reached the end of the archive", extra={"wal": name})
        except BarmanCloudError as error:
            log.warning(
                "prefetch failed; PostgreSQL's request will fetch it",
                extra={"wal": name, "error": str(error)},
            )
        finally:
            self._tasks.pop(name, None)

    async def _forget_older_than(self, wal: WalName) -> None:
        """Drop spooled segments PostgreSQL has moved past (another timeline's, or older ones)."""

        def sweep() -> None:
            for entry in self.spool.iterdir():
                # Temporary files belong to prefetches in flight; the restorer removes them itself.
                if (
                    not entry.name.startswith(".")
                    and entry.name < wal.name
                    and entry.name[:8] == wal.name[:8]
                ):
                    with contextlib.suppress(FileNotFoundError):
                        entry.unlink()

        await asyncio.to_thread(sweep)

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
