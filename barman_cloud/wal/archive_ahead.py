"""Archive ahead of PostgreSQL's serial archive_command.

PostgreSQL calls archive_command for one segment at a time and waits for it. When it asks for
segment N, segments N+1... are usually already complete (``pg_wal/archive_status/*.ready``). The
queue uploads them right away, in order, at most ``max_parallel`` at once, while only the requested
one is awaited; each upload that the store confirmed leaves a marker. When PostgreSQL then asks for
N+1, the marker answers at once.

Markers are files in the spool (an emptyDir that survives a sidecar restart), keyed by the
destination, and record the WAL file's identity (size, mtime, inode) when it was uploaded: a
marker is trusted only for that very file. Memory stays bounded: at most ``max_parallel`` segments
are read at a time, whatever the backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from pathlib import Path

from barman_cloud.errors import BarmanCloudError
from barman_cloud.format.wal import is_wal_name
from barman_cloud.wal.archive import ArchivedWal, WalArchiver

log = logging.getLogger(__name__)


def _identity(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


class ArchiveAhead:
    """Archives the requested segment and the ``.ready`` ones after it."""

    def __init__(self, archiver: WalArchiver, pg_wal: Path, markers: Path, max_parallel: int = 1) -> None:
        self.archiver = archiver
        self.pg_wal = pg_wal
        self.markers = markers
        self.max_parallel = max(1, max_parallel)
        self._slots = asyncio.Semaphore(self.max_parallel)
        self._tasks: dict[str, asyncio.Task[ArchivedWal]] = {}
        self.pushed_ahead = 0
        """Segments uploaded before PostgreSQL asked for them."""

    def queue_depth(self) -> int:
        return len(self._tasks)

    async def archive(self, path: Path) -> ArchivedWal | None:
        """Archive ``path`` (a file in pg_wal); return None when a marker proves it was already done."""
        name = path.name
        await asyncio.to_thread(self.markers.mkdir, parents=True, exist_ok=True)
        if await self._consume_marker(path):
            self._look_ahead(name)
            return None
        task = self._tasks.get(name) or self._start(path)
        self._look_ahead(name)
        result = await asyncio.shield(task)
        # PostgreSQL itself will mark this one done; the marker is only for segments pushed ahead.
        await asyncio.to_thread(self._drop_marker, name)
        return result

    def _start(self, path: Path) -> asyncio.Task[ArchivedWal]:
        task = asyncio.create_task(self._upload(path), name=f"archive {path.name}")
        self._tasks[path.name] = task
        task.add_done_callback(lambda _: self._tasks.pop(path.name, None))
        return task

    async def _upload(self, path: Path) -> ArchivedWal:
        async with self._slots:
            identity = await asyncio.to_thread(_identity, path)
            result = await self.archiver.archive(path)
            await asyncio.to_thread(self._write_marker, path.name, identity)
            return result

    def _look_ahead(self, requested: str) -> None:
        """Start uploads of the ``.ready`` segments after ``requested``, up to max_parallel queued."""
        if self.max_parallel < 2:
            return
        status = self.pg_wal / "archive_status"
        try:
            ready = sorted(
                entry.name[: -len(".ready")]
                for entry in os.scandir(status)
                if entry.name.endswith(".ready") and is_wal_name(entry.name[: -len(".ready")])
            )
        except FileNotFoundError:
            return
        for name in ready:
            if len(self._tasks) >= self.max_parallel:
                break
            if name <= requested or name in self._tasks or (self.markers / name).exists():
                continue
            task = self._start(self.pg_wal / name)
            task.add_done_callback(self._after_ahead)

    def _after_ahead(self, task: asyncio.Task[ArchivedWal]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            self.pushed_ahead += 1
            # Keep the pipeline full while PostgreSQL works through what we already pushed.
            self._look_ahead(task.result().name)
        else:
            expected = isinstance(error, BarmanCloudError | OSError)
            log.log(
                logging.WARNING if expected else logging.ERROR,
                "archiving ahead failed; PostgreSQL's own request will retry it",
                extra={"task": task.get_name(), "error": str(error) or type(error).__name__},
            )

    async def _consume_marker(self, path: Path) -> bool:
        marker = self.markers / path.name
        try:
            recorded = json.loads(await asyncio.to_thread(marker.read_text))
            current = await asyncio.to_thread(_identity, path)
        except (FileNotFoundError, ValueError):
            return False
        if recorded != current:
            log.warning(
                "archive marker does not match the WAL file; archiving again", extra={"wal": path.name}
            )
            await asyncio.to_thread(self._drop_marker, path.name)
            return False
        await asyncio.to_thread(self._drop_marker, path.name)
        return True

    def _write_marker(self, name: str, identity: dict[str, int]) -> None:
        temporary = self.markers / f".{name}.tmp"
        temporary.write_text(json.dumps(identity))
        os.replace(temporary, self.markers / name)

    def _drop_marker(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.markers / name).unlink()

    async def close(self) -> None:
        """Wait for uploads in flight (a marker is only written for a confirmed upload)."""
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
