"""A local directory as an object store: the embedded default of the quick start and of tests.

An object is a file under the root directory. Uploads are written to a private temporary file in
``<root>/.incoming`` (same filesystem), flushed and fsynced, then renamed over the final name and
the directory fsynced: a reader sees the old object or the complete new one, never a part.

The SHA-256 of the bytes is computed while they are written and stored, before the rename, in the
file's extended attribute ``user.bcp_sha256`` (see :mod:`.integrity`); a whole read verifies it.
On a filesystem without user extended attributes objects are stored without a checksum.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import errno
import hashlib
import logging
import os
import uuid
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from barman_cloud.errors import Forbidden, InvalidInput, NotFound
from barman_cloud.storage import CommonPrefix, Feature, ObjectInfo, StoreLocation
from barman_cloud.storage.integrity import CHECKSUM_METADATA, checksum_of, expected_from_metadata, verified
from barman_cloud.storage.keys import check_key

CHUNK = 1024 * 1024
INCOMING = ".incoming"
CHECKSUM_XATTR = f"user.{CHECKSUM_METADATA}"
log = logging.getLogger(__name__)


async def _read(handle: BinaryIO, start: int, end: int | None) -> AsyncGenerator[bytes, None]:
    """The bytes of ``handle`` from ``start`` to ``end`` (its end when None), read in a thread."""
    if start:
        await asyncio.to_thread(handle.seek, start)
    remaining = None if end is None else max(0, end - start)
    while remaining is None or remaining > 0:
        chunk = await asyncio.to_thread(handle.read, CHUNK if remaining is None else min(CHUNK, remaining))
        if not chunk:
            return
        if remaining is not None:
            remaining -= len(chunk)
        yield chunk


class FilesystemStore:
    """``file:///path``: objects are files below ``location.bucket`` (an absolute directory)."""

    features = frozenset({Feature.RANGED_GET})

    def __init__(self, location: StoreLocation) -> None:
        self.location = location
        self.root = Path(location.bucket)

    def _path(self, key: str) -> Path:
        check_key(key)
        if key == INCOMING or key.startswith(f"{INCOMING}/"):
            raise InvalidInput(f"object key {key!r} is reserved by the filesystem store")
        return self.root / key

    async def put(
        self,
        key: str,
        data: bytes | AsyncIterable[bytes],
        *,
        size_hint: int | None = None,
        metadata: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        target = self._path(key)
        incoming = self.root / INCOMING
        temporary = incoming / f"{uuid.uuid4().hex}.part"
        try:
            await asyncio.to_thread(incoming.mkdir, parents=True, exist_ok=True)
            handle = await asyncio.to_thread(open, temporary, "wb")
        except PermissionError as error:
            raise Forbidden(f"cannot write to {self.root}", hint=str(error)) from error
        size = 0
        digest = hashlib.sha256()
        try:
            try:
                if isinstance(data, bytes):
                    await asyncio.to_thread(_write, handle, digest, data)
                    size = len(data)
                else:
                    async for chunk in data:
                        await asyncio.to_thread(_write, handle, digest, chunk)
                        size += len(chunk)
                await asyncio.to_thread(_flush, handle, digest.hexdigest())
            finally:
                await asyncio.to_thread(handle.close)
            await asyncio.to_thread(_publish, temporary, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            raise
        return ObjectInfo(key=key, size=size, last_modified=datetime.now(UTC), sha256=digest.hexdigest())

    async def get(self, key: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            handle = await asyncio.to_thread(open, path, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"object {key!r} not found in {self.root}") from None
        try:
            expected = None
            if start == 0 and end is None:
                expected = expected_from_metadata(await asyncio.to_thread(_read_checksum, handle.fileno()))
            checked = verified(_read(handle, start, end), expected, f"object {key!r} in {self.root}")
            async with contextlib.aclosing(checked) as chunks:
                async for chunk in chunks:
                    yield chunk
        finally:
            await asyncio.to_thread(handle.close)

    async def head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = await asyncio.to_thread(path.stat)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"object {key!r} not found in {self.root}") from None
        if not path.is_file():
            raise NotFound(f"object {key!r} not found in {self.root}")
        metadata = await asyncio.to_thread(_read_checksum, path)
        return ObjectInfo(
            key=key,
            size=st.st_size,
            last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
            sha256=checksum_of(metadata),
        )

    async def list(
        self, prefix: str, *, delimiter: str | None = None
    ) -> AsyncIterator[ObjectInfo | CommonPrefix]:
        entries = await asyncio.to_thread(self._scan, prefix)
        seen: set[str] = set()
        for info in entries:
            rest = info.key[len(prefix) :]
            if delimiter and delimiter in rest:
                common = prefix + rest.split(delimiter, 1)[0] + delimiter
                if common not in seen:
                    seen.add(common)
                    yield CommonPrefix(common)
                continue
            yield info

    def _scan(self, prefix: str) -> builtins.list[ObjectInfo]:
        # Start at the deepest existing directory the prefix names, then filter by the prefix.
        directory = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = self.root / directory
        found: builtins.list[ObjectInfo] = []
        for dirpath, dirnames, filenames in os.walk(start):
            here = Path(dirpath)
            if here == self.root:
                dirnames[:] = [d for d in dirnames if d != INCOMING]
            for name in filenames:
                path = here / name
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    with contextlib.suppress(FileNotFoundError):
                        st = path.stat()
                        found.append(ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC)))
        found.sort(key=lambda info: info.key)
        return found

    async def delete_many(self, keys: Iterable[str]) -> None:
        paths = [self._path(key) for key in keys]
        await asyncio.to_thread(self._delete, paths)

    def _delete(self, paths: builtins.list[Path]) -> None:
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            # Drop directories the deletion emptied, up to the root.
            parent = path.parent
            while parent != self.root and parent.is_relative_to(self.root):
                try:
                    parent.rmdir()
                except OSError:
                    break
                parent = parent.parent

    async def close(self) -> None:
        return None


def _write(handle: BinaryIO, digest: hashlib._Hash, data: bytes) -> None:
    handle.write(data)
    digest.update(data)


_NO_XATTRS = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.ENOSYS)
_warned_no_xattrs = False


def _flush(handle: BinaryIO, digest: str) -> None:
    """Flush the data and record its checksum (fsync covers both)."""
    global _warned_no_xattrs
    handle.flush()
    try:
        os.setxattr(handle.fileno(), CHECKSUM_XATTR, digest.encode("ascii"))
    except OSError as error:
        if error.errno not in _NO_XATTRS:
            raise
        if not _warned_no_xattrs:
            _warned_no_xattrs = True
            log.warning(
                "this filesystem has no user extended attributes: objects are stored without checksums",
                extra={"directory": str(Path(handle.name).parent)},
            )
    os.fsync(handle.fileno())


def _read_checksum(target: int | Path) -> dict[str, str]:
    """The object's checksum as metadata (empty when it has none)."""
    try:
        value = os.getxattr(target, CHECKSUM_XATTR)
    except OSError as error:
        if error.errno in (errno.ENODATA, *_NO_XATTRS):
            return {}
        raise
    return {CHECKSUM_METADATA: value.decode("ascii", errors="replace")}


def _publish(temporary: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(temporary, target)
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
