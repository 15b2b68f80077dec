"""Safe, streaming extraction of one tar archive into a directory (runs in a worker thread).

The tar stream is parsed by Python's ``tarfile`` in stream mode (ustar, GNU and PAX, as barman
writes and reads them); every member is then written by this module, never by ``tarfile``:

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

Memory stays bounded: compressed input is fed to the decompressor in small slices, so a highly
compressible member (empty relation pages) cannot expand one network chunk into gigabytes.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import pwd
import stat
import tarfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from barman_cloud.errors import BarmanCloudError, FailedPrecondition, InvalidInput
from barman_cloud.format.compression import Codec, Decompressor

COPY_BUFFER = 1024 * 1024
INPUT_SLICE = 16 * 1024
TAR_BUFFER = 1024 * 1024
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


class ChunkStream:
    """A file-like ``read()`` over compressed chunks (``next_chunk`` returns None at the end)."""

    def __init__(self, next_chunk: Callable[[], bytes | None], codec: Codec | None, where: str) -> None:
        self._next = next_chunk
        self._decompressor: Decompressor | None = codec.decompressor() if codec else None
        self._where = where
        self._pending = b""
        self._pending_at = 0
        self._buffer = bytearray()
        self._offset = 0
        self._eof = False
        self.raw_bytes = 0

    def _decompress(self, data: bytes, final: bool = False) -> bytes:
        assert self._decompressor is not None
        try:
            out = self._decompressor.decompress(data) if data else b""
            return out + self._decompressor.flush() if final else out
        except BarmanCloudError as error:
            raise InvalidInput(f"{self._where}: {error.message}", hint="the archive is damaged") from None
        except Exception as error:  # zlib.error, OSError("Invalid data stream"), lz4/snappy errors
            raise InvalidInput(
                f"{self._where}: corrupt compressed data ({type(error).__name__}: {error})",
                hint="the archive is damaged or its suffix does not match its compression",
            ) from None

    def _fill(self) -> None:
        if self._pending_at >= len(self._pending):
            chunk = self._next()
            if chunk is None:
                if self._decompressor is not None:
                    self._buffer += self._decompress(b"", final=True)
                self._eof = True
                return
            self.raw_bytes += len(chunk)
            if self._decompressor is None:
                self._buffer += chunk
                return
            self._pending, self._pending_at = chunk, 0
        piece = self._pending[self._pending_at : self._pending_at + INPUT_SLICE]
        self._pending_at += len(piece)
        self._buffer += self._decompress(piece)

    def read(self, size: int = -1) -> bytes:
        while (size < 0 or len(self._buffer) - self._offset < size) and not self._eof:
            self._fill()
        end = len(self._buffer) if size < 0 else min(len(self._buffer), self._offset + size)
        data = bytes(self._buffer[self._offset : end])
        self._offset = end
        if self._offset >= len(self._buffer) // 2:
            del self._buffer[: self._offset]
            self._offset = 0
        return data

    def drain(self) -> None:
        """Read (and check) the rest of the stream: tar padding, compression trailer."""
        while not self._eof:
            self._fill()
            self._buffer.clear()
            self._offset = 0


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

    def _open(self, stream: ChunkStream) -> tarfile.TarFile:
        try:
            return tarfile.open(fileobj=stream, mode="r|", bufsize=TAR_BUFFER)  # type: ignore[call-overload, no-any-return]
        except tarfile.TarError as error:
            raise InvalidInput(f"{self.where} is not a tar archive: {error}") from None

    def run(self, stream: ChunkStream) -> ExtractStats:
        self._root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            with self._open(stream) as tar:
                while True:
                    try:
                        member = tar.next()
                    except tarfile.TarError as error:
                        raise InvalidInput(f"{self.where}: damaged tar archive: {error}") from None
                    if member is None:
                        break
                    self._member(tar, member)
                    tar.members.clear()  # type: ignore[attr-defined]  # stream mode keeps every header
                stream.drain()
        finally:
            self._close_fds()
            os.close(self._root_fd)
        return self.stats

    def _member(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
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
                self._file(tar, parts, member)
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

    def _file(self, tar: tarfile.TarFile, parts: Parts, member: tarfile.TarInfo) -> None:
        self._require_leaf(parts, member.name)
        parent = self.dir_fd(parts[:-1], create=True, name=member.name)
        self._clear(parent, parts[-1], member.name)
        fd = os.open(parts[-1], _FILE_FLAGS, 0o600, dir_fd=parent)
        try:
            source = tar.extractfile(member)
            if source is None:  # pragma: no cover - isreg() members always have a file object
                raise InvalidInput(f"{self.where}: no data for {member.name}")
            written = 0
            while True:
                try:
                    data = source.read(COPY_BUFFER)
                except tarfile.TarError as error:
                    raise InvalidInput(
                        f"{self.where}: damaged tar archive at {member.name}: {error}"
                    ) from None
                if not data:
                    break
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                written += len(data)
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
