"""Object stores: one small async protocol, a backend per provider, a factory keyed on the URL.

The contract every backend honours (``tests/storage/test_store_contract.py`` runs it against
moto's S3 server, Azurite, fake-gcs-server and the filesystem):

- Keys are full object names inside the bucket/container (``store.location.prefix`` is the
  destination path's base, joined by the barman-cloud format module, never here).
- ``put`` makes the object visible under its key only once it is complete: a failed or cancelled
  upload leaves no object and nothing billable behind (S3 multipart uploads are aborted, Azure
  uncommitted blocks are dropped, GCS resumable sessions cancelled, filesystem temp files removed).
  Overwriting an existing key replaces it atomically.
- ``get`` streams the object (or the ``[start, end)`` byte range); a missing key raises
  :class:`barman_cloud.errors.NotFound` before the first chunk is yielded.
- Integrity (:mod:`.integrity`): ``put`` records the SHA-256 of the stored bytes in the object's
  metadata (``bcp_sha256``) whenever the upload can carry it, and returns it in
  :attr:`ObjectInfo.sha256` always; a ``get`` of a whole object that has a recorded checksum
  verifies it and raises :class:`barman_cloud.errors.Corrupt` instead of yielding the last chunk
  when the bytes do not match.
- ``head`` raises NotFound for a missing key.
- ``list`` walks every page; a prefix with no objects, or a bucket path that does not exist yet,
  lists nothing (no error). Without ``delimiter`` it yields every object under the prefix, in
  lexicographic key order. With ``delimiter="/"`` it yields the objects directly under the prefix
  and one :class:`CommonPrefix` per "subfolder" (ending with the delimiter).
- ``delete_many`` deletes in provider-sized batches; keys that do not exist are not an error.
- Errors are the engine's: NotFound, Forbidden (credentials refused / permission missing),
  InvalidInput (bad key, bad configuration), Unavailable (network, throttling, 5xx, timeouts,
  after retries). Messages name the bucket and key, never a credential.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable


class Provider(enum.Enum):
    S3 = "aws-s3"
    AZURE = "azure-blob-storage"
    GCS = "google-cloud-storage"
    FILESYSTEM = "filesystem"


@dataclass(frozen=True)
class StoreLocation:
    """Where a destination path points: provider, bucket (or container, or directory) and base path.

    ``prefix`` is barman's ``<P>``: the URL path without leading slashes (a trailing slash is kept
    as the user wrote it; the format module normalises it).
    """

    provider: Provider
    bucket: str
    prefix: str
    url: str
    account: str | None = None
    """Azure storage account (from the host, or the first path segment for emulator URLs)."""
    endpoint: str | None = None
    """Service endpoint implied by the URL (Azure emulator style URLs); ``endpointURL`` wins."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: datetime | None = None
    etag: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    """User metadata; filled by ``head`` (listings may leave it empty)."""
    sha256: str | None = None
    """SHA-256 (hex) of the stored bytes when known: ``put`` always returns it; ``head`` returns
    the checksum recorded with the object when it has one (see :mod:`.integrity`). The checksum
    is stored as object metadata but never shown in :attr:`metadata`."""


@dataclass(frozen=True)
class CommonPrefix:
    """A "subfolder" returned by a delimited listing; ``prefix`` ends with the delimiter."""

    prefix: str


class Feature(enum.Enum):
    TAGS = "tags"
    """Object tags (S3 tagging, Azure blob index tags); GCS stores them as metadata."""
    METADATA = "metadata"
    RANGED_GET = "ranged-get"
    SERVER_SIDE_ENCRYPTION = "server-side-encryption"


@runtime_checkable
class ReadableStore(Protocol):
    """What restore and listing code needs: it cannot write."""

    location: StoreLocation

    def get(self, key: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream the object's bytes (``end`` exclusive). NotFound before the first chunk."""
        ...

    async def head(self, key: str) -> ObjectInfo: ...

    def list(
        self, prefix: str, *, delimiter: str | None = None
    ) -> AsyncIterator[ObjectInfo | CommonPrefix]: ...

    async def close(self) -> None:
        """Release the connection pool; the store is unusable afterwards."""
        ...


@runtime_checkable
class Store(ReadableStore, Protocol):
    features: frozenset[Feature]

    async def put(
        self,
        key: str,
        data: bytes | AsyncIterable[bytes],
        *,
        size_hint: int | None = None,
        metadata: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Upload ``data`` (small objects in one request, large ones in parallel parts).

        ``size_hint`` (the expected total size, when known) picks the part size within the
        provider's limits. Returns once the store has confirmed the complete object.
        """
        ...

    async def delete_many(self, keys: Iterable[str]) -> None: ...


async def read_all(store: ReadableStore, key: str) -> bytes:
    """The whole object in memory: for small objects only (backup.info, history files)."""
    return b"".join([chunk async for chunk in store.get(key)])


async def exists(store: ReadableStore, key: str) -> bool:
    from barman_cloud.errors import NotFound

    try:
        await store.head(key)
    except NotFound:
        return False
    return True
