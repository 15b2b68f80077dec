"""The Store contract (barman_cloud/storage/__init__.py), on every backend: moto's S3 server,
Azurite, fake-gcs-server and the filesystem."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest

from barman_cloud.errors import NotFound
from barman_cloud.storage import CommonPrefix, Feature, ObjectInfo, Store, exists, read_all

MiB = 1024 * 1024


async def pattern(size: int, chunk: int = MiB, seed: bytes = b"seed") -> AsyncIterator[bytes]:
    """Deterministic, incompressible-looking bytes, streamed."""
    block = hashlib.sha256(seed).digest() * (chunk // 32)
    sent = 0
    counter = 0
    while sent < size:
        piece = bytes([counter % 251]) + block[1 : min(chunk, size - sent)]
        counter += 1
        sent += len(piece)
        yield piece


async def digest_of(chunks: AsyncIterator[bytes]) -> tuple[int, str]:
    h = hashlib.sha256()
    size = 0
    async for chunk in chunks:
        h.update(chunk)
        size += len(chunk)
    return size, h.hexdigest()


async def test_small_object_round_trip(store: Store, prefix: str) -> None:
    key = f"{prefix}backup.info"
    info = await store.put(key, b"status=DONE\n", metadata={"origin": "contract"})
    assert info.key == key and info.size == 12
    assert await read_all(store, key) == b"status=DONE\n"
    head = await store.head(key)
    assert head.size == 12
    if Feature.METADATA in store.features:
        assert head.metadata.get("origin") == "contract"


async def test_empty_object_round_trip(store: Store, prefix: str) -> None:
    await store.put(f"{prefix}empty", b"")
    assert await read_all(store, f"{prefix}empty") == b""
    assert (await store.head(f"{prefix}empty")).size == 0


async def test_overwrite_replaces_the_object(store: Store, prefix: str) -> None:
    await store.put(f"{prefix}k", b"first version")
    await store.put(f"{prefix}k", b"second")
    assert await read_all(store, f"{prefix}k") == b"second"


async def test_large_streamed_object_round_trips_byte_identical(store: Store, prefix: str) -> None:
    size = 64 * MiB + 12345
    expected = await digest_of(pattern(size))
    await store.put(f"{prefix}data.tar", pattern(size), size_hint=size)
    assert (await store.head(f"{prefix}data.tar")).size == size
    assert await digest_of(store.get(f"{prefix}data.tar")) == expected


async def test_large_object_without_size_hint(store: Store, prefix: str) -> None:
    size = 20 * MiB + 7
    expected = await digest_of(pattern(size, seed=b"other"))
    await store.put(f"{prefix}stream", pattern(size, seed=b"other"))
    assert await digest_of(store.get(f"{prefix}stream")) == expected


async def test_ranged_get(store: Store, prefix: str) -> None:
    data = bytes(range(256)) * 64
    await store.put(f"{prefix}ranged", data)
    assert b"".join([c async for c in store.get(f"{prefix}ranged", start=100, end=300)]) == data[100:300]
    assert b"".join([c async for c in store.get(f"{prefix}ranged", start=16000)]) == data[16000:]


async def test_missing_objects_raise_not_found(store: Store, prefix: str) -> None:
    with pytest.raises(NotFound):
        await store.head(f"{prefix}absent")
    with pytest.raises(NotFound):
        await read_all(store, f"{prefix}absent")
    assert not await exists(store, f"{prefix}absent")


async def test_listing_an_empty_prefix_yields_nothing(store: Store, prefix: str) -> None:
    assert [entry async for entry in store.list(f"{prefix}nothing/")] == []


async def test_delimited_listing(store: Store, prefix: str) -> None:
    for key in ("a/base/1/backup.info", "a/base/2/backup.info", "a/wals/x", "a/top"):
        await store.put(f"{prefix}{key}", b"x")
    entries = [entry async for entry in store.list(f"{prefix}a/", delimiter="/")]
    objects = sorted(e.key for e in entries if isinstance(e, ObjectInfo))
    prefixes = sorted(e.prefix for e in entries if isinstance(e, CommonPrefix))
    assert objects == [f"{prefix}a/top"]
    assert prefixes == [f"{prefix}a/base/", f"{prefix}a/wals/"]


async def test_thousands_of_keys_list_across_pages_and_delete_in_batches(store: Store, prefix: str) -> None:
    keys = [f"{prefix}many/{i:05d}" for i in range(2500)]
    semaphore = asyncio.Semaphore(32)

    async def put(key: str) -> None:
        async with semaphore:
            await store.put(key, key.encode())

    await asyncio.gather(*(put(key) for key in keys))
    listed = [entry.key async for entry in store.list(f"{prefix}many/") if isinstance(entry, ObjectInfo)]
    assert listed == keys  # every page, in key order
    await store.delete_many([*keys, f"{prefix}many/never-existed"])
    assert [entry async for entry in store.list(f"{prefix}many/")] == []


# Cancelling an upload mid-part cancels aiohttp requests mid-body; their transports are then
# finalised by the garbage collector at an unpredictable moment, sometimes during the next test
# (an "unclosed transport" ResourceWarning from aiohttp's internals, not from an object the store
# keeps). What these tests assert is the store's behaviour: nothing left behind. The leak is
# tracked in the issue notes.
_AIOHTTP_CANCELLATION = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@_AIOHTTP_CANCELLATION
async def test_cancelled_upload_leaves_no_object(store: Store, prefix: str) -> None:
    started = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        async for chunk in pattern(80 * MiB):
            yield chunk
            started.set()
            await asyncio.sleep(0.01)

    upload = asyncio.create_task(store.put(f"{prefix}cancelled", slow(), size_hint=80 * MiB))
    await started.wait()
    await asyncio.sleep(0.5)
    upload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upload
    assert not await exists(store, f"{prefix}cancelled")
    assert [entry async for entry in store.list(prefix)] == []


@_AIOHTTP_CANCELLATION
async def test_failing_source_leaves_no_object(store: Store, prefix: str) -> None:
    class SourceBroke(Exception):
        pass

    async def broken() -> AsyncIterator[bytes]:
        async for chunk in pattern(40 * MiB):
            yield chunk
        raise SourceBroke

    with pytest.raises(SourceBroke):
        await store.put(f"{prefix}broken", broken())
    assert not await exists(store, f"{prefix}broken")
