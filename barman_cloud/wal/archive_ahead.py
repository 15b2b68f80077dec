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

Per call: one hop to a thread to check and consume a marker; which markers exist is known in
memory (read from the directory once). The ``.ready`` names are listed in a thread and kept
(the first ``READY_WINDOW`` after PostgreSQL's position): the directory is listed again only once
they are all started, so a backlog of thousands of segments costs one listing per thousand
uploads rather than a sorted listing of all of them, on the event loop, at every call. Only
segments pushed ahead get a marker.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import os
from collections import deque
from pathlib import Path

from barman_cloud.errors import BarmanCloudError
from barman_cloud.format.wal import WalName, is_wal_name
from barman_cloud.wal.archive import ArchivedWal, WalArchiver

log = logging.getLogger(__name__)
READY_WINDOW = 1024
"""``.ready`` names kept from one listing of archive_status."""


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
        self._ahead: set[str] = set()
        """Tasks started ahead of PostgreSQL's request: they leave a marker."""
        self._marked: set[str] | None = None
        """Names with a marker file (None until the directory was read once)."""
        self._ready: deque[str] = deque()
        """``.ready`` names after ``_floor`` not started yet, in order (from the last listing)."""
        self._floor = ""
        """The last segment PostgreSQL asked for: it archives in order, so nothing before is pending."""
        self._listing: asyncio.Task[None] | None = None
        self._closing = False
        self.pushed_ahead = 0
        """Segments uploaded before PostgreSQL asked for them."""

    def queue_depth(self) -> int:
        return len(self._tasks)

    async def archive(self, path: Path) -> ArchivedWal | None:
        """Archive ``path`` (a file in pg_wal); return None when a marker proves it was already done."""
        WalName.parse(path.name)  # InvalidInput before the name is used in the markers directory
        name = path.name
        self._floor = max(self._floor, name)  # before any await: nothing may start this one ahead now
        if self._marked is None:
            self._marked = await asyncio.to_thread(self._read_markers)
        if name in self._marked and await self._consume_marker(path):
            self._look_ahead(name)
            return None
        task = self._tasks.get(name)
        self._ahead.discard(name)  # asked for now: no marker needed if it is still in flight
        if task is None:
            task = self._start(path)
        self._look_ahead(name)
        result = await asyncio.shield(task)
        if name in self._marked:
            # PostgreSQL itself will mark this one done; markers are for segments pushed ahead.
            self._marked.discard(name)
            await asyncio.to_thread(self._drop_marker, name)
        return result

    def _read_markers(self) -> set[str]:
        """Once, in a thread: the markers a previous life of the process left behind."""
        self.markers.mkdir(parents=True, exist_ok=True)
        return {entry.name for entry in os.scandir(self.markers) if not entry.name.startswith(".")}

    def _start(self, path: Path, *, ahead: bool = False) -> asyncio.Task[ArchivedWal]:
        if ahead:
            self._ahead.add(path.name)
        task = asyncio.create_task(self._upload(path), name=f"archive {path.name}")
        self._tasks[path.name] = task
        task.add_done_callback(lambda _: self._tasks.pop(path.name, None))
        return task

    async def _upload(self, path: Path) -> ArchivedWal:
        try:
            async with self._slots:
                identity = await asyncio.to_thread(_identity, path)
                result = await self.archiver.archive(path)
                if path.name in self._ahead:
                    await asyncio.to_thread(self._write_marker, path.name, identity)
                    if self._marked is not None:
                        self._marked.add(path.name)
                return result
        finally:
            self._ahead.discard(path.name)

    def _look_ahead(self, requested: str | None = None, *, may_list: bool = True) -> None:
        """Start uploads of the ``.ready`` segments after PostgreSQL's position (``requested``, when
        it asks), up to max_parallel in flight; list archive_status again when none is known (on a
        request or a completed upload, never right after a listing)."""
        if self.max_parallel < 2 or self._closing:
            return
        if requested is not None and requested > self._floor:
            self._floor = requested
        marked = self._marked or set()
        while self._ready and len(self._tasks) < self.max_parallel:
            name = self._ready.popleft()
            if name <= self._floor or name in self._tasks or name in marked:
                continue
            task = self._start(self.pg_wal / name, ahead=True)
            task.add_done_callback(self._after_ahead)
        if may_list and not self._ready and len(self._tasks) < self.max_parallel and self._listing is None:
            self._listing = asyncio.ensure_future(self._list_ready())

    async def _list_ready(self) -> None:
        try:
            floor = self._floor
            names = await asyncio.to_thread(self._ready_after, floor)
            self._ready = deque(n for n in names if n > self._floor)
        finally:
            self._listing = None
        if self._ready:
            self._look_ahead(may_list=False)

    def _ready_after(self, floor: str) -> list[str]:
        """In a thread: the first READY_WINDOW ``.ready`` segments after ``floor``, in order."""
        try:
            entries = os.scandir(self.pg_wal / "archive_status")
        except OSError:
            return []  # no archive_status (yet): PostgreSQL's own requests still work
        with entries:
            names = (
                entry.name[: -len(".ready")]
                for entry in entries
                if entry.name.endswith(".ready") and entry.name[: -len(".ready")] > floor
            )
            return heapq.nsmallest(READY_WINDOW, (n for n in names if is_wal_name(n)))

    def _after_ahead(self, task: asyncio.Task[ArchivedWal]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            self.pushed_ahead += 1
            # Keep the pipeline full while PostgreSQL works through what we already pushed.
            self._look_ahead()
        else:
            expected = isinstance(error, BarmanCloudError | OSError)
            log.log(
                logging.WARNING if expected else logging.ERROR,
                "archiving ahead failed; PostgreSQL's own request will retry it",
                extra={"task": task.get_name(), "error": str(error) or type(error).__name__},
            )

    async def _consume_marker(self, path: Path) -> bool:
        """Whether the marker proves ``path`` archived; the marker is gone afterwards either way."""
        assert self._marked is not None
        self._marked.discard(path.name)
        matches = await asyncio.to_thread(self._check_and_drop_marker, path)
        if matches is False:
            log.warning(
                "archive marker does not match the WAL file; archiving again", extra={"wal": path.name}
            )
        return bool(matches)

    def _check_and_drop_marker(self, path: Path) -> bool | None:
        """In a thread: True when the marker records this very file, False when another one, None
        when there is no (readable) marker or no file; the marker is removed."""
        marker = self.markers / path.name
        try:
            recorded = json.loads(marker.read_text())
            current = _identity(path)
        except (FileNotFoundError, ValueError):
            return None
        finally:
            self._drop_marker(path.name)
        return bool(recorded == current)

    def _write_marker(self, name: str, identity: dict[str, int]) -> None:
        temporary = self.markers / f".{name}.tmp"
        temporary.write_text(json.dumps(identity))
        os.replace(temporary, self.markers / name)

    def _drop_marker(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.markers / name).unlink()

    async def close(self) -> None:
        """Wait for the uploads in flight (a marker is only written for a confirmed upload), and
        start no other: what is still ``.ready`` is PostgreSQL's to ask for again, from the next
        queue (a closing queue that drained a whole backlog would hold its store's lock, and a
        Pod's shutdown, for as long as that takes)."""
        self._closing = True
        pending = [*self._tasks.values(), *([self._listing] if self._listing else [])]
        await asyncio.gather(*pending, return_exceptions=True)
