"""Safe, streaming extraction of one tar archive into a directory (runs in a worker thread).

Headers are parsed by Python's ``tarfile`` (ustar, GNU and PAX, as barman writes and reads them);
every member is then written by this module, never by ``tarfile``:

- names: no absolute path, no ``..`` component, no NUL; ``./x`` and ``x`` are the same member;
- types: directories, regular files, symbolic links and hard links only; a character or block
  device, a FIFO or any other type is refused, naming the member;
- no write through a symbolic link: every parent directory is opened component by component with
  ``O_NOFOLLOW`` relative to the previous one (``openat``), files are created with ``O_EXCL |
  O_NOFOLLOW``, so nothing can land outside the target whatever links earlier members created;
- symbolic links must point inside the target: absolute targets and targets leaving it (``..``)
  are refused, and once every archive is extracted the links are resolved again on disk
  (:func:`check_links`), which catches chains of individually harmless links;
- hard links must name a regular file of the same archive already extracted;
- a directory is never replaced by another type; modes lose setuid/setgid/sticky bits; directory
  modes and times are applied at the end, deepest first, so that a read-only directory cannot
  block its own content. Owners are not copied member by member: the root entry's owner (by name,
  else by number) is recorded, and the engine gives the whole restored tree to it when root.

The stream is read by :class:`TarStream` (headers by ``tarfile.TarInfo.fromtarfile``, so they are
read exactly as ``tarfile`` reads them, with its end-of-archive rules); file data goes from the
decompressed pieces straight to ``os.write`` as memory views, without the copies of ``tarfile``'s
stream layers (they cost more CPU than the lz4 decompression). A header that fails its checksum
after the first member is an error here (``tarfile`` silently stops there). Sparse members are
refused (barman never writes them).

Memory stays bounded: decompression, in its own thread (:func:`decompress`) or in the writer's
(:func:`decompressed`), yields pieces of at most ``MAX_PIECE`` bytes (``max_length`` for gzip,
bzip2 and lz4, small input slices for the others), so a highly compressible member (empty
relation pages) cannot expand one network chunk into gigabytes; extended headers (PAX, GNU long
names) larger than ``MAX_HEADER`` are refused.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import grp
import os
import pwd
import stat
import tarfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from barman_cloud.errors import BarmanCloudError, FailedPrecondition, InvalidInput
from barman_cloud.format.compression import Codec
from barman_cloud.format.deflate import zlib
from barman_cloud.restore.download import Chunk, RestoreAborted

MAX_PIECE = 1024 * 1024
"""Largest decompressed piece handed to the writer (and written by one ``os.write``)."""
INPUT_SLICE = 64 * 1024
"""Compressed input per call for codecs without an output bound (snappy: <= ~1.4 MiB out)."""
MAX_HEADER = 16 * 1024 * 1024
"""Largest extended header (PAX records, GNU long name) read into memory."""

# What TarInfo.fromtarfile raises (not in typeshed): how TarFile.next tells the end from damage.
_END_OF_ARCHIVE: type[Exception] = tarfile.EOFHeaderError  # type: ignore[attr-defined]
_NO_HEADER: type[Exception] = tarfile.EmptyHeaderError  # type: ignore[attr-defined]
_BAD_HEADER: tuple[type[Exception], ...] = (
    _NO_HEADER,
    tarfile.TruncatedHeaderError,  # type: ignore[attr-defined]
    tarfile.InvalidHeaderError,  # type: ignore[attr-defined]
)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_FD_CACHE = 32

Parts = tuple[str, ...]


class UnsafeMember(InvalidInput):
    """An archive member that would write outside the target or create something dangerous."""


@dataclass(frozen=True)
class DirectoryMeta:
    parts: Parts
    mode: int
    uid: int | None
    gid: int | None
    mtime: float


@dataclass
class ExtractStats:
    members: int = 0
    files: int = 0
    bytes: int = 0
    directories: list[DirectoryMeta] = field(default_factory=list)
    symlinks: list[Parts] = field(default_factory=list)


def member_parts(name: str, *, where: str) -> Parts:
    """The path components of a member name, refusing absolute paths and ``..``."""
    if "\x00" in name:
        raise UnsafeMember(f"refusing member {name!r} of {where}: NUL character in its name")
    if name.startswith("/"):
        raise UnsafeMember(f"refusing member {name!r} of {where}: absolute path")
    parts = tuple(p for p in name.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeMember(f"refusing member {name!r} of {where}: '..' leaves the target directory")
    return parts


def link_stays_inside(parts: Parts, target: str) -> bool:
    """Whether a symbolic link at ``parts`` pointing to ``target`` stays inside the root, lexically."""
    if not target or target.startswith("/") or "\x00" in target:
        return False
    depth = len(parts) - 1
    for component in target.split("/"):
        if component in ("", "."):
            continue
        depth = depth - 1 if component == ".." else depth + 1
        if depth < 0:
            return False
    return True


WRITEBACK_STEP = 16 * 1024 * 1024
"""Bytes written to a file between two :func:`start_writeback` calls."""
_SYNC_FILE_RANGE_WRITE = 2


def _libc(name: str, argtypes: list[Any]) -> Any:
    """A function of this process's C library (None where it does not exist, as off Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        call = getattr(ctypes.CDLL(None, use_errno=True), name)
        call.argtypes = argtypes
        call.restype = ctypes.c_int
        return call
    return None


_SYNC_FILE_RANGE = _libc("sync_file_range", [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint])
_SYNCFS = _libc("syncfs", [ctypes.c_int])


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing ``length`` bytes of ``fd`` from ``offset`` to disk now,
    without waiting for them (``sync_file_range(SYNC_FILE_RANGE_WRITE)``; length 0: to the end).

    Without it the final :func:`sync_filesystems` writes the whole restore at once: with a lot of
    memory the kernel's background writeback starts only past ``dirty_background_ratio`` (2.4 GB
    on a 24 GB machine), so a 1 GiB restore sat in the page cache and its sync took 0.35-0.4 s
    after the last byte; with the writeback started as files are written, the disk works during
    the extraction and the sync takes milliseconds (bench/README.md, restores). A hint only:
    where the call does not exist or fails, the final sync does all the work."""
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def sync_filesystems(paths: list[Path]) -> None:
    """Everything written to the filesystems holding ``paths`` on disk: ``syncfs`` once per
    filesystem (not the whole machine's dirty data, as ``sync`` would), else ``os.sync``.

    One call rather than an fsync per file (thousands of journal commits). The extraction has
    already started the writeback of everything it wrote (:func:`start_writeback`), so this
    mostly waits for the last few MiB."""
    call = _SYNCFS
    if call is None:
        os.sync()
        return
    seen: set[int] = set()
    for path in paths:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            device = os.fstat(fd).st_dev
            if device not in seen:
                seen.add(device)
                if call(fd) != 0:
                    error = ctypes.get_errno()
                    raise OSError(error, f"syncfs: {os.strerror(error)}", str(path))
        finally:
            os.close(fd)


class _Stream(Protocol):
    """A decompressor bounded in output: pieces of at most MAX_PIECE bytes."""

    def feed(self, data: Chunk) -> Iterator[bytes]: ...

    def finish(self) -> Iterator[bytes]: ...


class _GzipStream:
    """gzip with ``max_length``; reads on across concatenated members like Python's gzip module."""

    def __init__(self) -> None:
        self._d = zlib.decompressobj(31)

    def feed(self, data: Chunk) -> Iterator[bytes]:
        # In slices: what zlib leaves unconsumed at max_length is copied on every call.
        view = memoryview(data)
        for at in range(0, len(view), INPUT_SLICE):
            yield from self._feed(view[at : at + INPUT_SLICE])

    def _feed(self, data: Chunk) -> Iterator[bytes]:
        pending: Chunk = data
        while True:
            if self._d.eof:
                if not pending:
                    return
                self._d = zlib.decompressobj(31)  # another member follows
            out = self._d.decompress(pending, MAX_PIECE)
            if out:
                yield out
            pending = self._d.unused_data if self._d.eof else self._d.unconsumed_tail
            if not pending and len(out) < MAX_PIECE:
                return  # all input consumed and no output held back

    def finish(self) -> Iterator[bytes]:
        if not self._d.eof:
            raise InvalidInput("truncated gzip stream")
        yield from ()


class _NeedsInputStream:
    """bzip2 and lz4 frames: the ``decompress(data, max_length)`` / ``needs_input`` protocol."""

    def __init__(self, new: Callable[[], Any], name: str) -> None:
        self._new = new
        self._d = new()
        self._name = name

    def feed(self, data: Chunk) -> Iterator[bytes]:
        pending: Chunk = data
        while True:
            if self._d.eof:
                if not pending:
                    return
                self._d = self._new()  # another stream follows
            out = bytes(self._d.decompress(pending, MAX_PIECE))
            pending = b""
            if out:
                yield out
            if self._d.eof:
                pending = self._d.unused_data
            elif self._d.needs_input:
                return

    def finish(self) -> Iterator[bytes]:
        if not self._d.eof:
            raise InvalidInput(f"truncated {self._name} stream")
        yield from ()


class _SlicedStream:
    """Any other codec: compressed input fed in small slices."""

    def __init__(self, codec: Codec) -> None:
        self._d = codec.decompressor()

    def feed(self, data: Chunk) -> Iterator[bytes]:
        view = memoryview(data)
        for at in range(0, len(view), INPUT_SLICE):
            out = self._d.decompress(bytes(view[at : at + INPUT_SLICE]))
            if out:
                yield out

    def finish(self) -> Iterator[bytes]:
        out = self._d.flush()
        if out:
            yield out


def _bounded(codec: Codec) -> _Stream:
    if codec.name == "gzip":
        return _GzipStream()
    if codec.name == "bzip2":
        import bz2

        return _NeedsInputStream(bz2.BZ2Decompressor, "bzip2")
    if codec.name == "lz4":
        import lz4.frame

        return _NeedsInputStream(lz4.frame.LZ4FrameDecompressor, "lz4")
    return _SlicedStream(codec)


def decompress(
    source: Callable[[], Chunk | None],
    codec: Codec,
    sink: Callable[[Chunk], None],
    close: Callable[[BaseException | None], None],
    where: str,
) -> None:
    """The decompression stage (a worker thread): compressed chunks from ``source``, bounded
    pieces to ``sink``; ``close`` ends the output, with the error if any (the reader raises it)."""
    stream = _bounded(codec)
    try:
        while (chunk := source()) is not None:
            for piece in _checked(stream.feed(chunk), where):
                sink(piece)
        for piece in _checked(stream.finish(), where):
            sink(piece)
    except RestoreAborted:
        return
    except Exception as error:
        close(error)
        return
    close(None)


def decompressed(source: Callable[[], Chunk | None], codec: Codec, where: str) -> Callable[[], Chunk | None]:
    """The decompression inline, in the reader's thread: ``source``'s chunks as bounded pieces."""
    stream = _bounded(codec)

    def pieces() -> Iterator[bytes]:
        while (chunk := source()) is not None:
            yield from _checked(stream.feed(chunk), where)
        yield from _checked(stream.finish(), where)

    iterator = pieces()
    return lambda: next(iterator, None)


def _checked(pieces: Iterator[bytes], where: str) -> Iterator[bytes]:
    try:
        yield from pieces
    except BarmanCloudError as error:
        raise InvalidInput(f"{where}: {error.message}", hint="the archive is damaged") from None
    except RestoreAborted:
        raise
    except Exception as error:  # zlib.error, OSError("Invalid data stream"), EOFError, lz4/snappy errors
        raise InvalidInput(
            f"{where}: corrupt compressed data ({type(error).__name__}: {error})",
            hint="the archive is damaged or its suffix does not match its compression",
        ) from None


class TarStream:
    """The tar bytes, from pieces handed over by ``next_piece`` (None at the end), read in order.

    ``read``/``tell`` are what ``tarfile.TarInfo.fromtarfile`` needs for headers; member data is
    taken as memory views of the pieces (:meth:`views`), never copied.
    """

    def __init__(self, next_piece: Callable[[], Chunk | None]) -> None:
        self._next = next_piece
        self._piece = memoryview(b"")
        self._at = 0
        self._position = 0
        self._eof = False

    def _load(self) -> bool:
        while self._at >= len(self._piece):
            if self._eof:
                return False
            piece = self._next()
            if piece is None:
                self._eof = True
                self._piece, self._at = memoryview(b""), 0
                return False
            self._piece, self._at = memoryview(piece), 0
        return True

    def tell(self) -> int:
        return self._position

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes (fewer only at the end): extended headers, bounded."""
        if size > MAX_HEADER:
            raise InvalidInput(f"a tar header of {size} bytes (more than {MAX_HEADER}): damaged archive")
        parts = []
        for view in self.views(size):
            parts.append(bytes(view))
        return b"".join(parts)

    def views(self, size: int) -> Iterator[memoryview]:
        """The next ``size`` bytes as views (fewer only at the end)."""
        left = size
        while left > 0 and self._load():
            take = min(left, len(self._piece) - self._at)
            view = self._piece[self._at : self._at + take]
            self._at += take
            self._position += take
            left -= take
            yield view

    def skip(self, size: int) -> int:
        return sum(len(view) for view in self.views(size))

    def drain(self) -> None:
        """Read (and check) the rest: tar padding, compression trailer, download errors."""
        while self._load():
            self._position += len(self._piece) - self._at
            self._at = len(self._piece)


class _Headers:
    """What ``tarfile.TarInfo.fromtarfile`` reads from a ``TarFile``: the stream, the encoding
    (``tarfile``'s defaults for reading), global PAX headers and the offset of the next header."""

    def __init__(self, stream: TarStream) -> None:
        self.fileobj = stream
        self.encoding = tarfile.ENCODING
        self.errors = "surrogateescape"
        self.pax_headers: dict[str, str] = {}
        self.offset = 0


class _Owners:
    """uid/gid of a member: by name on this host, else the numbers in the archive (like tarfile)."""

    def __init__(self) -> None:
        self._users: dict[str, int | None] = {}
        self._groups: dict[str, int | None] = {}

    def uid(self, member: tarfile.TarInfo) -> int:
        if member.uname:
            if member.uname not in self._users:
                try:
                    self._users[member.uname] = pwd.getpwnam(member.uname).pw_uid
                except KeyError:
                    self._users[member.uname] = None
            found = self._users[member.uname]
            if found is not None:
                return found
        return member.uid

    def gid(self, member: tarfile.TarInfo) -> int:
        if member.gname:
            if member.gname not in self._groups:
                try:
                    self._groups[member.gname] = grp.getgrnam(member.gname).gr_gid
                except KeyError:
                    self._groups[member.gname] = None
            found = self._groups[member.gname]
            if found is not None:
                return found
        return member.gid


def _mode(member: tarfile.TarInfo) -> int:
    return member.mode & 0o777


class Extractor:
    """Extracts one archive into ``root`` (an existing directory); see the module docstring."""

    def __init__(self, root: Path, where: str, *, reserved: frozenset[str] = frozenset()) -> None:
        self.root = root
        self.where = where
        self.reserved = reserved
        self.stats = ExtractStats()
        self._owners = _Owners()
        self._fds: OrderedDict[Parts, int] = OrderedDict()
        self._root_fd = -1

    # -- directories, opened without following links -------------------------------------------

    def _close_fds(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def _cache(self, parts: Parts, fd: int) -> None:
        self._fds[parts] = fd
        while len(self._fds) > _FD_CACHE:
            _, old = self._fds.popitem(last=False)
            os.close(old)

    def dir_fd(self, parts: Parts, *, create: bool, name: str) -> int:
        """An fd of the directory ``parts`` under the root, never through a symbolic link."""
        if not parts:
            return self._root_fd
        if parts in self._fds:
            self._fds.move_to_end(parts)
            return self._fds[parts]
        parent = self.dir_fd(parts[:-1], create=create, name=name)
        leaf = parts[-1]
        try:
            fd = os.open(leaf, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            with contextlib.suppress(FileExistsError):
                os.mkdir(leaf, 0o700, dir_fd=parent)
            fd = self._open_dir(leaf, parent, parts, name)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafeMember(
                    f"refusing member {name!r} of {self.where}: {'/'.join(parts)} is a symbolic link "
                    "or a file, not a directory; nothing is written through links"
                ) from None
            raise
        self._cache(parts, fd)
        return fd

    def _open_dir(self, leaf: str, parent: int, parts: Parts, name: str) -> int:
        try:
            return os.open(leaf, _DIR_FLAGS, dir_fd=parent)
        except OSError as error:
            if error.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafeMember(
                    f"refusing member {name!r} of {self.where}: {'/'.join(parts)} is not a directory"
                ) from None
            raise

    def _clear(self, parent: int, leaf: str, name: str) -> None:
        """Remove a non-directory at ``leaf`` (a member replacing an earlier one)."""
        try:
            st = os.stat(leaf, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise UnsafeMember(f"refusing member {name!r} of {self.where}: it would replace a directory")
        os.unlink(leaf, dir_fd=parent)

    # -- members ---------------------------------------------------------------------------------

    def run(self, stream: TarStream) -> ExtractStats:
        self._root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            headers = _Headers(stream)
            while (member := self._next(headers)) is not None:
                self._member(stream, member)
            stream.drain()
        finally:
            self._close_fds()
            os.close(self._root_fd)
        return self.stats

    def _next(self, headers: _Headers) -> tarfile.TarInfo | None:
        """The next member, or None at the end of the archive (``TarFile.next``'s rules)."""
        stream = headers.fileobj
        gap = headers.offset - stream.tell()
        if gap > 0 and stream.skip(gap) < gap:
            raise InvalidInput(f"{self.where}: damaged tar archive: unexpected end of data")
        try:
            return tarfile.TarInfo.fromtarfile(headers)  # type: ignore[arg-type]
        except _END_OF_ARCHIVE:
            return None  # a zero block: the end
        except _BAD_HEADER as error:
            if headers.offset == 0:
                raise InvalidInput(f"{self.where} is not a tar archive: {error}") from None
            if isinstance(error, _NO_HEADER):
                return None  # no end-of-archive blocks, as tarfile accepts
            raise InvalidInput(f"{self.where}: damaged tar archive: {error}") from None
        except tarfile.TarError as error:
            raise InvalidInput(f"{self.where}: damaged tar archive: {error}") from None

    def _member(self, stream: TarStream, member: tarfile.TarInfo) -> None:
        name = member.name
        parts = member_parts(name, where=self.where)
        if parts and parts[0] in self.reserved and len(parts) == 1:
            raise UnsafeMember(
                f"refusing member {name!r} of {self.where}: the name is reserved for the restore"
            )
        self.stats.members += 1
        try:
            if member.isdir():
                self._directory(parts, member)
            elif member.isreg():
                if member.sparse is not None:
                    raise InvalidInput(
                        f"refusing member {name!r} of {self.where}: sparse files are not supported"
                    )
                self._file(stream, parts, member)
            elif member.issym():
                self._symlink(parts, member)
            elif member.islnk():
                self._hardlink(parts, member)
            else:
                kind = {tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device",
                        tarfile.FIFOTYPE: "a FIFO"}.get(member.type, f"of type {member.type!r}")  # fmt: skip
                raise UnsafeMember(f"refusing member {name!r} of {self.where}: it is {kind}")
        except OSError as error:
            if error.errno == errno.ENOSPC:
                raise FailedPrecondition(
                    f"no space left on device while writing {name} from {self.where} into {self.root}",
                    hint="free space or restore into a larger volume; a retry cleans this attempt first",
                ) from None
            raise FailedPrecondition(
                f"cannot write {name} from {self.where} into {self.root}: {error.strerror or error}"
            ) from None

    def _require_leaf(self, parts: Parts, name: str) -> None:
        if not parts:
            raise UnsafeMember(f"refusing member {name!r} of {self.where}: it names the target directory")

    def _directory(self, parts: Parts, member: tarfile.TarInfo) -> None:
        if parts:
            parent = self.dir_fd(parts[:-1], create=True, name=member.name)
            try:
                os.mkdir(parts[-1], 0o700, dir_fd=parent)
            except FileExistsError:
                st = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    raise UnsafeMember(
                        f"refusing member {member.name!r} of {self.where}: a non-directory is in its place"
                    ) from None
        self.stats.directories.append(
            DirectoryMeta(parts, _mode(member), self._owners.uid(member), self._owners.gid(member),
                          float(member.mtime))
        )  # fmt: skip

    def _create(self, parent: int, leaf: str, name: str) -> int:
        try:
            return os.open(leaf, _FILE_FLAGS, 0o600, dir_fd=parent)
        except FileExistsError:  # a member replacing an earlier one
            self._clear(parent, leaf, name)
            return os.open(leaf, _FILE_FLAGS, 0o600, dir_fd=parent)

    def _file(self, stream: TarStream, parts: Parts, member: tarfile.TarInfo) -> None:
        self._require_leaf(parts, member.name)
        parent = self.dir_fd(parts[:-1], create=True, name=member.name)
        fd = self._create(parent, parts[-1], member.name)
        try:
            written = flushed = 0
            for view in stream.views(member.size):
                written += len(view)
                while view:
                    view = view[os.write(fd, view) :]
                if written - flushed >= WRITEBACK_STEP:
                    start_writeback(fd, flushed, written - flushed)
                    flushed = written
            if written > flushed:
                start_writeback(fd, flushed, written - flushed)
            if written != member.size:
                raise InvalidInput(
                    f"{self.where}: {member.name} is truncated ({written} of {member.size} bytes)"
                )
            os.fchmod(fd, _mode(member))
            os.utime(fd, (member.mtime, member.mtime))
        finally:
            os.close(fd)
        self.stats.files += 1
        self.stats.bytes += member.size

    def _symlink(self, parts: Parts, member: tarfile.TarInfo) -> None:
        self._require_leaf(parts, member.name)
        if not link_stays_inside(parts, member.linkname):
            raise UnsafeMember(
                f"refusing member {member.name!r} of {self.where}: symbolic link to {member.linkname!r} "
                "points outside the target directory"
            )
        parent = self.dir_fd(parts[:-1], create=True, name=member.name)
        self._clear(parent, parts[-1], member.name)
        os.symlink(member.linkname, parts[-1], dir_fd=parent)
        self.stats.symlinks.append(parts)

    def _hardlink(self, parts: Parts, member: tarfile.TarInfo) -> None:
        self._require_leaf(parts, member.name)
        try:
            target = member_parts(member.linkname, where=self.where)
        except UnsafeMember:
            raise UnsafeMember(
                f"refusing member {member.name!r} of {self.where}: hard link to {member.linkname!r} "
                "points outside the target directory"
            ) from None
        self._require_leaf(target, member.name)
        try:
            source_dir = self.dir_fd(target[:-1], create=False, name=member.name)
            st = os.stat(target[-1], dir_fd=source_dir, follow_symlinks=False)
        except FileNotFoundError:
            raise UnsafeMember(
                f"refusing member {member.name!r} of {self.where}: hard link to {member.linkname!r}, "
                "which is not an earlier file of the archive"
            ) from None
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeMember(
                f"refusing member {member.name!r} of {self.where}: hard link to {member.linkname!r}, "
                "which is not a regular file"
            )
        parent = self.dir_fd(parts[:-1], create=True, name=member.name)
        self._clear(parent, parts[-1], member.name)
        os.link(target[-1], parts[-1], src_dir_fd=source_dir, dst_dir_fd=parent, follow_symlinks=False)
        self.stats.files += 1


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def check_links(root: Path, symlinks: list[Parts], where: str) -> None:
    """Resolve every extracted link on disk: one that leads outside ``root`` is removed, then refused."""
    real_root = os.path.realpath(root)
    escaping = []
    for parts in symlinks:
        path = root.joinpath(*parts)
        if path.is_symlink() and not _inside(os.path.realpath(path), real_root):
            escaping.append((parts, os.readlink(path)))
            path.unlink()
    if escaping:
        parts, target = escaping[0]
        raise UnsafeMember(
            f"refusing member {'/'.join(parts)!r} of {where}: symbolic link to {target!r} "
            "resolves outside the target directory through other links"
        )


def apply_directory_metadata(root: Path, directories: list[DirectoryMeta]) -> None:
    """Modes and times of directory members, deepest first (the root's own last)."""
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for meta in sorted(directories, key=lambda m: len(m.parts), reverse=True):
            fd = root_fd
            opened = []
            try:
                for component in meta.parts:
                    fd = os.open(component, _DIR_FLAGS, dir_fd=fd)
                    opened.append(fd)
                # Like tarfile's default errorlevel: a directory we may not chmod (a mount point
                # owned by someone else) keeps its mode.
                with contextlib.suppress(PermissionError):
                    os.fchmod(fd, meta.mode)
                    os.utime(fd, (meta.mtime, meta.mtime))
            except FileNotFoundError:
                continue
            finally:
                for opened_fd in opened:
                    os.close(opened_fd)
    finally:
        os.close(root_fd)


def chown_tree(root: Path, owner: tuple[int, int]) -> None:
    """Give ``root`` and everything below it (links themselves, never followed) to ``owner``."""
    uid, gid = owner
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files, ""]:
            path = os.path.join(directory, name) if name else directory
            st = os.lstat(path)
            if (st.st_uid, st.st_gid) != owner:
                os.chown(path, uid, gid, follow_symlinks=False)
