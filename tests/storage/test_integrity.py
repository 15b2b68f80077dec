"""Checksums (barman_cloud/storage/integrity.py) on every backend: moto's S3 server, Azurite,
fake-gcs-server and the filesystem.

Every upload returns the SHA-256 of the stored bytes; one-request uploads (and Azure's block list,
and the filesystem) record it with the object; a whole read of an object whose bytes no longer
match it raises Corrupt instead of handing over the last chunk.
"""

from __future__ import annotations

import hashlib
import importlib
from types import ModuleType

import pytest

from barman_cloud.errors import Corrupt
from barman_cloud.storage import Feature, Store, read_all
from barman_cloud.storage.integrity import CHECKSUM_METADATA
from tests.storage.test_store_contract import digest_of, pattern

MiB = 1024 * 1024


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> ModuleType:
    """The module of tests/storage/backends/ behind this test's ``store``."""
    name = request.node.callspec.params["store"]
    return importlib.import_module(f"tests.storage.backends.{name}")


def flipped(data: bytes, position: int) -> bytes:
    """``data`` with one bit flipped."""
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


async def test_a_small_object_carries_the_sha256_of_its_bytes(store: Store, prefix: str) -> None:
    body = b"\x1f\x8b compressed WAL, say" * 1000
    info = await store.put(f"{prefix}000000010000000000000001.gz", body)
    expected = hashlib.sha256(body).hexdigest()
    assert info.sha256 == expected
    head = await store.head(f"{prefix}000000010000000000000001.gz")
    assert head.sha256 == expected
    assert CHECKSUM_METADATA not in head.metadata  # ours, not the caller's: shown as sha256
    assert await read_all(store, f"{prefix}000000010000000000000001.gz") == body


async def test_the_callers_metadata_is_kept_and_cannot_override_the_checksum(
    store: Store, prefix: str
) -> None:
    forged = "0" * 64
    info = await store.put(f"{prefix}k", b"content", metadata={"origin": "caller", CHECKSUM_METADATA: forged})
    head = await store.head(f"{prefix}k")
    assert info.sha256 == head.sha256 == hashlib.sha256(b"content").hexdigest()
    if Feature.METADATA in store.features:
        assert dict(head.metadata) == {"origin": "caller"}
    assert await read_all(store, f"{prefix}k") == b"content"


async def test_a_large_upload_returns_its_digest(store: Store, prefix: str, backend: ModuleType) -> None:
    size = 20 * MiB + 7
    _, expected = await digest_of(pattern(size))
    # An over-estimated size hint (as the backup engine gives) means multipart from the start.
    info = await store.put(f"{prefix}data.tar", pattern(size), size_hint=100 * MiB)
    assert info.sha256 == expected and info.size == size
    head = await store.head(f"{prefix}data.tar")
    # Azure's Put Block List and the filesystem set metadata after the bytes; an S3 multipart
    # upload and a GCS resumable session fix theirs before the first byte.
    assert head.sha256 == (expected if backend.__name__.endswith(("azure", "filesystem")) else None)
    assert await digest_of(store.get(f"{prefix}data.tar")) == (size, expected)


async def test_a_flipped_bit_is_detected_before_the_last_chunk(
    store: Store, prefix: str, backend: ModuleType
) -> None:
    size = 6 * MiB + 3  # several chunks on every backend
    body = b"".join([chunk async for chunk in pattern(size)])
    key = f"{prefix}000000010000000000000002"
    info = await store.put(key, body)
    await backend.overwrite_keeping_metadata(store, key, flipped(body, size // 2))
    received = 0
    with pytest.raises(Corrupt) as raised:
        async for chunk in store.get(key):
            received += len(chunk)
    assert received < size  # the caller never got the whole (corrupt) object
    message = str(raised.value)
    assert key in message and info.sha256 is not None and info.sha256 in message
    assert hashlib.sha256(flipped(body, size // 2)).hexdigest() in message or "x-goog-hash" in message
    assert "verify" in message  # says what to do


async def test_a_corrupt_single_chunk_object_fails_before_any_byte(
    store: Store, prefix: str, backend: ModuleType
) -> None:
    key = f"{prefix}00000002.history"
    await store.put(key, b"1\t0/3000000\tno recovery target specified\n")
    await backend.overwrite_keeping_metadata(store, key, b"1\t0/3000001\tno recovery target specified\n")
    chunks: list[bytes] = []
    with pytest.raises(Corrupt):
        async for chunk in store.get(key):
            chunks.append(chunk)
    assert chunks == []


async def test_ranged_reads_are_not_verified(store: Store, prefix: str, backend: ModuleType) -> None:
    body = bytes(range(256)) * 4096
    key = f"{prefix}ranged"
    await store.put(key, body)
    damaged = flipped(body, 10)
    await backend.overwrite_keeping_metadata(store, key, damaged)
    assert b"".join([c async for c in store.get(key, start=100, end=5000)]) == damaged[100:5000]


@pytest.mark.parametrize("store", ["s3"], indirect=True)
async def test_s3_signs_the_payload_with_the_digest_already_computed(
    store: Store, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over plain HTTP (moto) SigV4 signs the body's SHA-256: the signer takes ours instead of
    reading the body again on the event loop, and the server accepts the signature."""
    from barman_cloud.storage import s3

    reads: list[int] = []
    original = s3._Body.read

    def counting_read(self: s3._Body, size: int | None = -1) -> bytes:
        reads.append(size or -1)
        return original(self, size)

    monkeypatch.setattr(s3._Body, "read", counting_read)
    body = b"".join([chunk async for chunk in pattern(3 * MiB)])
    await store.put(f"{prefix}single", body)
    await store.put(f"{prefix}parts", pattern(12 * MiB), size_hint=100 * MiB)
    assert reads == []
    assert await read_all(store, f"{prefix}single") == body
    assert (await digest_of(store.get(f"{prefix}parts")))[1] == (await digest_of(pattern(12 * MiB)))[1]
