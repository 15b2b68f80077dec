"""Tar bytes as barman-cloud-backup writes them, produced in fixed-size chunks.

The dialect is Python's ``tarfile`` in PAX format, as barman's ``TarFileIgnoringTruncate``: the
headers are built by :meth:`tarfile.TarInfo.tobuf` from ``lstat`` (so fractional ``mtime`` pax
records, ``uname``/``gname``, a trailing ``/`` on directories, hard links within one archive
part stored as links), 512-byte blocks, and the archive closed by two zero blocks padded to a
multiple of 10240 bytes. A file that vanishes before it is opened is skipped; one that shrinks
while being read is padded with zeros to the size in its header; growth is ignored.

Everything here blocks (``lstat``, ``open``, ``readinto``): it runs in worker threads. Chunks
are fresh zero-filled buffers, so padding costs nothing but an offset.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import stat
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from barman_cloud.backup.walk import Member

log = logging.getLogger(__name__)

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
DEFAULT_CHUNK = 1024 * 1024
"""Tar bytes per unit of work (read, then compressed in one go)."""


class NewPart:
    """Marker yielded between the end of one archive part and the start of the next."""


NEW_PART = NewPart()


@dataclass
class TarStats:
    """Counters shared with the event loop (plain ints: single writer, readers tolerate lag)."""

    members: int = 0
    files: int = 0
    bytes: int = 0
    """Tar bytes produced (headers, data, padding), all parts."""
    skipped: list[str] = field(default_factory=list)
    """Arcnames of files that vanished before they could be read."""


class _Names:
    """uid/gid to user/group names, looked up once each (tarfile looks them up per member)."""

    def __init__(self) -> None:
        self._users: dict[int, str] = {}
        self._groups: dict[int, str] = {}

    def user(self, uid: int) -> str:
        if uid not in self._users:
            try:
                self._users[uid] = pwd.getpwuid(uid).pw_name
            except KeyError:
                self._users[uid] = ""
        return self._users[uid]

    def group(self, gid: int) -> str:
        if gid not in self._groups:
            try:
                self._groups[gid] = grp.getgrgid(gid).gr_name
            except KeyError:
                self._groups[gid] = ""
        return self._groups[gid]


def header(info: tarfile.TarInfo) -> bytes:
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


class TarStream:
    """The tar stream of one archive base ("data" or a tablespace), possibly in several parts.

    ``split`` is asked before each member whether the current part is big enough to be closed
    (barman checks the compressed size of the part so far against ``--max-archive-size``).
    """

    def __init__(self, split: Callable[[], bool], chunk_size: int = DEFAULT_CHUNK) -> None:
        self._split = split
        self.chunk_size = max(RECORD, chunk_size)
        self.stats = TarStats()
        self._names = _Names()
        self._inodes: dict[tuple[int, int], str] = {}
        self.part_offset = 0
        """Tar bytes written to the current part."""
        self._buffer = bytearray(self.chunk_size)
        self._position = 0

    # -- chunk buffer ---------------------------------------------------------------------------

    def _take(self) -> bytearray:
        """The filled part of the buffer; a fresh one replaces it."""
        full = self._buffer if self._position == len(self._buffer) else self._buffer[: self._position]
        self._buffer = bytearray(self.chunk_size)
        self._position = 0
        return full

    def _write(self, data: bytes) -> Iterator[bytearray]:
        view = memoryview(data)
        while view:
            room = len(self._buffer) - self._position
            take = min(room, len(view))
            self._buffer[self._position : self._position + take] = view[:take]
            self._position += take
            view = view[take:]
            if self._position == len(self._buffer):
                yield self._take()
        self._count(len(data))

    def _skip(self, count: int) -> Iterator[bytearray]:
        """``count`` zero bytes (the buffer is zero-filled: only the position moves)."""
        self._count(count)
        while count:
            take = min(len(self._buffer) - self._position, count)
            self._position += take
            count -= take
            if self._position == len(self._buffer):
                yield self._take()

    def _count(self, count: int) -> None:
        self.part_offset += count
        self.stats.bytes += count

    def _read(self, handle: int, size: int) -> Iterator[bytearray]:
        """``size`` bytes of an open file, zero-padded if it shrank."""
        remaining = size
        while remaining:
            room = len(self._buffer) - self._position
            view = memoryview(self._buffer)[self._position : self._position + min(room, remaining)]
            got = os.readv(handle, [view])
            if got == 0:  # shrank while being read: pad to the size announced in the header
                yield from self._skip(remaining)
                return
            self._position += got
            self._count(got)
            remaining -= got
            if self._position == len(self._buffer):
                yield self._take()

    # -- members --------------------------------------------------------------------------------

    def chunks(self, members: Iterable[Member]) -> Iterator[bytearray | NewPart]:
        """Tar bytes for ``members``, a chunk at a time; the last chunk may be short."""
        for member in members:
            if self.part_offset and self._split():
                yield from self._end_part()
                yield NEW_PART
            yield from self._member(member)
        if self._position:
            yield self._take()

    def add_bytes(self, name: str, data: bytes, uid: int, gid: int, mode: int = 0o644) -> Iterator[bytearray]:
        """An in-memory file (``backup_label``): mtime 0, as barman's ``add_fileobj``."""
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = mode
        info.uid, info.gid = uid, gid
        info.uname, info.gname = self._names.user(uid), self._names.group(gid)
        yield from self._write(header(info))
        yield from self._write(data)
        yield from self._skip(-len(data) % BLOCK)
        self.stats.members += 1
        if self._position:
            yield self._take()

    def end_of_archive(self) -> bytearray:
        """The closing zero blocks of the current part (and what is still buffered)."""
        chunks = list(self._end_part())
        return bytearray(b"".join(chunks))

    def _end_part(self) -> Iterator[bytearray]:
        end = self.part_offset + 2 * BLOCK
        yield from self._skip(2 * BLOCK + (-end % RECORD))
        if self._position:
            yield self._take()
        self.part_offset = 0
        self._inodes = {}

    def _member(self, member: Member) -> Iterator[bytearray]:
        try:
            info = self._info(member, os.lstat(member.source))
        except FileNotFoundError:  # vanished: WAL replay recreates what is needed
            if not member.optional:
                self.stats.skipped.append(member.arcname)
            return
        if info is None:
            log.debug("not a file, directory or symbolic link: skipped", extra={"path": member.source})
            return
        if info.type != tarfile.REGTYPE:
            yield from self._write(header(info))
            self.stats.members += 1
            return
        try:
            handle = os.open(member.source, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self.stats.skipped.append(member.arcname)
            return
        try:
            os.posix_fadvise(handle, 0, 0, os.POSIX_FADV_SEQUENTIAL)
            yield from self._write(header(info))
            yield from self._read(handle, info.size)
            yield from self._skip(-info.size % BLOCK)
        finally:
            os.close(handle)
        self.stats.members += 1
        self.stats.files += 1

    def _info(self, member: Member, status: os.stat_result) -> tarfile.TarInfo | None:
        """``tarfile.TarFile.gettarinfo``'s header for ``lstat`` results (hard links per part)."""
        mode = status.st_mode
        linkname = ""
        if stat.S_ISREG(mode):
            kind = tarfile.REGTYPE
            inode = (status.st_ino, status.st_dev)
            known = self._inodes.get(inode)
            if status.st_nlink > 1 and known is not None and known != member.arcname:
                kind, linkname = tarfile.LNKTYPE, known
            elif inode[0]:
                self._inodes[inode] = member.arcname
        elif stat.S_ISDIR(mode):
            kind = tarfile.DIRTYPE
        elif stat.S_ISLNK(mode):
            kind = tarfile.SYMTYPE
            linkname = os.readlink(member.source)
        else:
            return None  # sockets, pipes and devices have no place in a data directory
        info = tarfile.TarInfo(member.arcname)
        info.mode = mode
        info.uid, info.gid = status.st_uid, status.st_gid
        info.size = status.st_size if kind == tarfile.REGTYPE else 0
        info.mtime = status.st_mtime
        info.type = kind
        info.linkname = linkname
        info.uname, info.gname = self._names.user(status.st_uid), self._names.group(status.st_gid)
        return info
