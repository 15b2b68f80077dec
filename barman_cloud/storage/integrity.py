"""Checksums of the objects we write, and their verification when an object is read back whole.

What is stored: the SHA-256 of the object's *stored* bytes (after compression), hex, in the
object's user metadata under :data:`CHECKSUM_METADATA` (``bcp_sha256``): a name that is valid on
every provider (Azure wants a C# identifier: no hyphen) and that barman-cloud ignores, so buckets
stay readable by barman-cloud 3.19. SHA-256 because hashlib runs it on the CPU's SHA extensions
(about 1.7 GB/s here, faster than MD5 or BLAKE2 in software), and because it is the digest S3's
SigV4 signs a request body with: the S3 backend hands the digest it computed to the signer, so a
body is hashed once (:mod:`barman_cloud.storage.s3`).

Who sets it: every backend, on every upload whose metadata is sent after the bytes are known: one
request uploads (WAL segments, history files, backup.info), Azure's Put Block List, the filesystem
store (an extended attribute). S3 multipart uploads and GCS resumable sessions fix their metadata
before the first byte, so those objects carry none; :meth:`Store.put` still returns the digest in
:attr:`ObjectInfo.sha256`, and the backup engine records the digests of its archives in a manifest
(:mod:`barman_cloud.verify.manifest`).

Who checks it: every backend's ``get`` of a whole object (no range) whose metadata carries a
checksum, from the headers of the download itself (no extra request). A mismatch raises
:class:`~barman_cloud.errors.Corrupt` *instead of* the object's last chunk: a caller that writes
chunks to a temporary file and renames it when the stream ends never publishes a corrupt file.
On GCS, objects without our checksum (barman's, our resumable uploads) are checked against the
MD5 GCS computed at upload (``x-goog-hash``), which every non-composite object has.

Hashing a large piece runs in a worker thread (hashlib releases the GIL), overlapped with the
download of the next chunk: the event loop only moves bytes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from barman_cloud.errors import Corrupt

log = logging.getLogger(__name__)

CHECKSUM_METADATA = "bcp_sha256"
"""User-metadata name of the stored bytes' SHA-256 (hex)."""
INLINE_LIMIT = 64 * 1024
"""Pieces up to this size are hashed on the event loop (a thread hand-off costs more)."""
_HEX64 = re.compile(r"[0-9a-f]{64}")


def _new(algorithm: str) -> Any:
    return hashlib.new(algorithm)


async def sha256_hex(data: bytes | bytearray | memoryview) -> str:
    """SHA-256 of ``data`` (hex), in a worker thread when it is large."""
    if len(data) <= INLINE_LIMIT:
        return hashlib.sha256(data).hexdigest()
    return await asyncio.to_thread(lambda: hashlib.sha256(data).hexdigest())


def with_checksum(metadata: Mapping[str, str] | None, digest: str) -> dict[str, str]:
    """The caller's metadata plus ours; ours always wins (a caller cannot vouch for bytes)."""
    return {**(metadata or {}), CHECKSUM_METADATA: digest}


def checksum_of(metadata: Mapping[str, str] | None) -> str | None:
    """Our SHA-256 from an object's metadata (names compared case-insensitively), if valid."""
    if not metadata:
        return None
    for name, value in metadata.items():
        if name.lower() == CHECKSUM_METADATA:
            text = str(value).strip().lower()
            if _HEX64.fullmatch(text):
                return text
            log.warning("ignoring a malformed checksum in an object's metadata", extra={"value": value[:80]})
    return None


def split_checksum(metadata: Mapping[str, str] | None) -> tuple[dict[str, str], str | None]:
    """An object's metadata without our checksum, and the checksum: :attr:`ObjectInfo.metadata`
    stays what callers put there, :attr:`ObjectInfo.sha256` says the rest."""
    user = {k: v for k, v in (metadata or {}).items() if k.lower() != CHECKSUM_METADATA}
    return user, checksum_of(metadata)


@dataclass(frozen=True)
class Expected:
    """What a whole read must hash to."""

    algorithm: str
    """A hashlib name: ``sha256`` (ours) or ``md5`` (GCS's own hash)."""
    hexdigest: str
    source: str
    """Where the expected value comes from, for the error message."""


def expected_from_metadata(metadata: Mapping[str, str] | None) -> Expected | None:
    digest = checksum_of(metadata)
    if digest is None:
        return None
    return Expected("sha256", digest, f"metadata {CHECKSUM_METADATA}")


def expected_from_goog_hash(header: str | None) -> Expected | None:
    """The MD5 of GCS's ``x-goog-hash: crc32c=...,md5=...`` header (base64), if there is one."""
    if not header:
        return None
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if sep and name.lower() == "md5":
            try:
                raw = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return None
            if len(raw) == 16:
                return Expected("md5", raw.hex(), "x-goog-hash md5 computed by GCS at upload")
    return None


class RunningDigest:
    """A digest of a stream, fed in order; large pieces are hashed in a worker thread."""

    def __init__(self, algorithm: str = "sha256") -> None:
        self.algorithm = algorithm
        self._hash = _new(algorithm)
        self.size = 0

    async def update(self, data: bytes | bytearray | memoryview) -> None:
        self.size += len(data)
        if len(data) <= INLINE_LIMIT:
            self._hash.update(data)
        else:
            await asyncio.to_thread(self._hash.update, data)

    def hexdigest(self) -> str:
        return str(self._hash.hexdigest())


async def digesting(parts: AsyncIterable[bytes], digest: RunningDigest) -> AsyncIterator[bytes]:
    """``parts`` unchanged, each hashed into ``digest`` before it is handed on."""
    async for part in parts:
        await digest.update(part)
        yield part


class Verifier:
    """Checks a whole read against :class:`Expected`, holding back the last chunk until it passes.

    Feed every chunk to :meth:`push` and hand on what it returns (the previous chunk, or nothing);
    at the end hand on what :meth:`finish` returns, which raises Corrupt on a mismatch. Hashing a
    chunk overlaps with receiving the next one. Without an expected value chunks pass straight
    through.
    """

    def __init__(self, expected: Expected | None, what: str) -> None:
        self.expected = expected
        self.what = what
        self._hash = _new(expected.algorithm) if expected is not None else None
        self._held: bytes | None = None
        self._pending: asyncio.Future[None] | None = None
        self.size = 0

    async def push(self, chunk: bytes) -> bytes | None:
        if self._hash is None:
            return chunk
        await self._settle()
        self.size += len(chunk)
        if len(chunk) <= INLINE_LIMIT:
            self._hash.update(chunk)
        else:
            self._pending = asyncio.get_running_loop().run_in_executor(None, self._hash.update, chunk)
        held, self._held = self._held, chunk
        return held

    async def finish(self) -> bytes | None:
        if self._hash is None or self.expected is None:
            return None
        await self._settle()
        found = str(self._hash.hexdigest())
        if found != self.expected.hexdigest:
            self._held = None
            name = "SHA-256" if self.expected.algorithm == "sha256" else self.expected.algorithm.upper()
            raise Corrupt(
                f"{self.what} is corrupt: the {name} of its {self.size} bytes is {found}, "
                f"not {self.expected.hexdigest} ({self.expected.source})",
                hint="the object changed after it was written (a storage fault, or a tool that "
                "rewrote its bytes): nothing was written from it. Do not rely on it: use another "
                "backup or archive the WAL again from a server that still has it, and run "
                "`barman-cloud-plugin verify` to find other damaged objects",
            )
        held, self._held = self._held, None
        return held

    async def _settle(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            await pending

    async def aclose(self) -> None:
        """Wait for a hash still running (a read abandoned halfway)."""
        pending, self._pending = self._pending, None
        if pending is not None and not pending.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(pending)


async def verified(
    chunks: AsyncIterable[bytes], expected: Expected | None, what: str
) -> AsyncGenerator[bytes, None]:
    """``chunks`` checked against ``expected`` (see :class:`Verifier`): for callers that know the
    digest from elsewhere, such as a backup's manifest for archives uploaded in parts."""
    verifier = Verifier(expected, what)
    try:
        async for chunk in chunks:
            out = await verifier.push(chunk)
            if out is not None:
                yield out
        tail = await verifier.finish()
        if tail is not None:
            yield tail
    finally:
        await verifier.aclose()
