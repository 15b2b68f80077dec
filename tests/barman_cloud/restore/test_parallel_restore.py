"""The parallel restore pipeline: many archives and parts at once, every stage in its own thread or
in the writer's, large and highly compressible members, concatenated compressed streams, ranged
downloads; a failure in any stage (download, decompression, extraction) stops the others and a
retry on the same directory succeeds, byte-identical."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import tarfile
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path

import pytest

from barman_cloud.errors import InvalidInput, Unavailable
from barman_cloud.format import compression
from barman_cloud.format.compression import Codec
from barman_cloud.format.keys import ServerLayout
from barman_cloud.restore import restore_backup
from barman_cloud.restore.download import Pipe, RestoreAborted
from barman_cloud.restore.engine import MARKER
from barman_cloud.restore.extract import MAX_PIECE
from barman_cloud.storage import CommonPrefix, ObjectInfo, Store, StoreLocation
from barman_cloud.storage.factory import open_store
from tests.barman_cloud.catalog.synthetic import info, put_backup
from tests.barman_cloud.restore import tars

BACKUP = "20260101T000000"
CODECS = [None, compression.GZIP, compression.BZIP2, compression.SNAPPY, compression.LZ4]
PARTS = 5


def suffix(codec: Codec | None) -> str:
    return f".tar{codec.suffix if codec else ''}"


def cluster_files(seed: int) -> dict[str, bytes]:
    """Relation-like files: random pages, and a member of zeros much larger than one piece."""
    rng = random.Random(seed)  # noqa: S311 - test data
    files = {"PG_VERSION": b"15\n", "global/pg_control": rng.randbytes(8192)}
    for part in range(PARTS):
        for index in range(3):
            files[f"base/5/{16384 + part * 10 + index}"] = rng.randbytes(rng.randrange(0, 300_000))
    files["base/5/zeros"] = bytes(3 * MAX_PIECE + 12345)  # expands far beyond one compressed chunk
    files["base/5/big"] = rng.randbytes(2 * MAX_PIECE) * 2  # the largest archive: its own stages
    return files


def split_compress(body: bytes, codec: Codec | None) -> bytes:
    """``body`` compressed as two concatenated streams (members, frames), as readers must accept."""
    if codec is None:
        return body
    half = len(body) // 2
    return codec.compress(body[:half]) + codec.compress(body[half:])


async def put_parts(
    store: Store, layout: ServerLayout, codec: Codec | None, files: dict[str, bytes], *, concatenated: bool
) -> None:
    """data.tar in PARTS + 1 parts (directories in the first) and one tablespace."""
    first = [tars.directory("."), tars.member("PG_VERSION", files["PG_VERSION"]), tars.directory("global"),
             tars.directory("base"), tars.directory("base/5"), tars.directory("pg_wal")]  # fmt: skip
    parts: list[list[tuple[tarfile.TarInfo, bytes | None]]] = [first]
    for part in range(PARTS):
        names = [f"base/5/{16384 + part * 10 + index}" for index in range(3)]
        parts.append([tars.member(name, files[name]) for name in names])
    parts[1] += [tars.member("base/5/zeros", files["base/5/zeros"]), tars.member("global/pg_control",
                 files["global/pg_control"])]  # fmt: skip
    parts[2].append(tars.member("base/5/big", files["base/5/big"]))
    objects = {}
    for index, members in enumerate(parts):
        body = tars.build(members)
        name = "data" if index == 0 else f"data_{index:04d}"
        objects[f"{name}{suffix(codec)}"] = split_compress(body, codec) if concatenated else (
            codec.compress(body) if codec else body
        )  # fmt: skip
    objects[f"16390{suffix(codec)}"] = tars.build(
        [tars.directory("PG_15_202209061"), tars.member("PG_15_202209061/t", b"tablespace" * 1000)], codec
    )
    backup = info(BACKUP, tablespaces=(("space", 16390, "/nonexistent"),))
    await put_backup(store, layout, BACKUP, backup, objects)


def digest_tree(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


def expected(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(content).hexdigest() for name, content in files.items()}


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name if c else "none")
@pytest.mark.parametrize("jobs", [1, 3])
async def test_many_parts_restore_byte_identical(
    store: tuple[Store, ServerLayout], codec: Codec | None, jobs: int, tmp_path: Path
) -> None:
    bucket, layout = store
    files = cluster_files(jobs)
    await put_parts(bucket, layout, codec, files, concatenated=codec is not None)
    destination = tmp_path / "pgdata"

    result = await restore_backup(
        bucket,
        layout,
        BACKUP,
        destination,
        jobs=jobs,
        tablespace_map={"space": tmp_path / "space"},
    )

    tree = digest_tree(destination)
    assert {name: tree[name] for name in files} == expected(files)
    assert result.archives == PARTS + 2 and result.files == len(files) + 1
    assert result.extracted_bytes == sum(len(c) for c in files.values()) + 10000
    assert (tmp_path / "space/PG_15_202209061/t").read_bytes() == b"tablespace" * 1000
    assert not (destination / MARKER).exists()


async def test_ranged_downloads_of_a_large_archive(store: tuple[Store, ServerLayout], tmp_path: Path) -> None:
    bucket, layout = store
    files = cluster_files(7)
    await put_parts(bucket, layout, compression.LZ4, files, concatenated=False)
    result = await restore_backup(
        bucket, layout, BACKUP, tmp_path / "pgdata", jobs=2,
        tablespace_map={"space": tmp_path / "space"}, ranged_min_size=1024 * 1024,
    )  # fmt: skip
    tree = digest_tree(tmp_path / "pgdata")
    assert {name: tree[name] for name in files} == expected(files)
    assert result.downloaded_bytes > 0


class FailingStore:
    """A store whose stream of one key breaks after its first chunk (a cut connection)."""

    def __init__(self, inner: Store, key_suffix: str) -> None:
        self.inner = inner
        self.location: StoreLocation = inner.location
        self.key_suffix = key_suffix
        self.broken = True

    async def get(self, key: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        sent = 0
        async for chunk in self.inner.get(key, start=start, end=end):
            if self.broken and key.endswith(self.key_suffix) and sent:
                raise Unavailable(f"connection reset while reading {key}")
            sent += 1
            yield chunk[: 256 * 1024]
            if len(chunk) > 256 * 1024:
                yield chunk[256 * 1024 :]

    async def head(self, key: str) -> ObjectInfo:
        return await self.inner.head(key)

    def list(self, prefix: str, *, delimiter: str | None = None) -> AsyncIterator[ObjectInfo | CommonPrefix]:
        return self.inner.list(prefix, delimiter=delimiter)

    async def close(self) -> None:
        pass


@pytest.mark.parametrize("codec", [None, compression.GZIP], ids=lambda c: c.name if c else "none")
async def test_a_download_cut_midway_fails_then_the_retry_succeeds(
    store: tuple[Store, ServerLayout], codec: Codec | None, tmp_path: Path
) -> None:
    bucket, layout = store
    files = cluster_files(11)
    await put_parts(bucket, layout, codec, files, concatenated=False)
    failing = FailingStore(bucket, f"data_0002{suffix(codec)}")  # the largest archive
    destination = tmp_path / "pgdata"
    mapping = {"space": tmp_path / "space"}

    with pytest.raises(Unavailable, match="connection reset"):
        await restore_backup(failing, layout, BACKUP, destination, jobs=3, tablespace_map=mapping)
    assert (destination / MARKER).exists()
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("restore")]

    failing.broken = False
    result = await restore_backup(failing, layout, BACKUP, destination, jobs=3, tablespace_map=mapping)
    assert result.cleaned_previous_attempt
    tree = digest_tree(destination)
    assert {name: tree[name] for name in files} == expected(files)
    assert not (destination / MARKER).exists()


# gzip and bzip2 carry checksums; barman's lz4 frames have none (incompressible blocks are stored
# as they are, so flipped bytes there go unnoticed by any reader).
@pytest.mark.parametrize("codec", [compression.GZIP, compression.BZIP2], ids=lambda c: c.name)
async def test_corrupt_compressed_data_in_the_largest_archive(
    store: tuple[Store, ServerLayout], codec: Codec, tmp_path: Path
) -> None:
    bucket, layout = store
    files = cluster_files(13)
    await put_parts(bucket, layout, codec, files, concatenated=False)
    key = f"{layout.backup_dir(BACKUP)}data_0002{suffix(codec)}"
    good = b"".join([chunk async for chunk in bucket.get(key)])
    damaged = bytearray(good)
    for at in range(len(good) // 2, len(good) // 2 + 64):
        damaged[at] ^= 0x5A
    await bucket.put(key, bytes(damaged))
    destination = tmp_path / "pgdata"
    mapping = {"space": tmp_path / "space"}

    with pytest.raises(InvalidInput, match=r"data_0002"):
        await restore_backup(bucket, layout, BACKUP, destination, jobs=2, tablespace_map=mapping)

    await bucket.put(key, good)
    result = await restore_backup(bucket, layout, BACKUP, destination, jobs=2, tablespace_map=mapping)
    assert result.cleaned_previous_attempt
    tree = digest_tree(destination)
    assert {name: tree[name] for name in files} == expected(files)


async def test_a_damaged_header_after_the_first_member_is_an_error(tmp_path: Path) -> None:
    bucket = open_store(f"file://{tmp_path / 'bucket'}")
    layout = ServerLayout("", "pg")
    body = bytearray(tars.build([tars.directory("."), tars.member("a", b"x" * 1000), tars.member("b", b"y")]))
    second = body.index(b"y") - 512  # the ustar header of "b" (its data block follows)
    body[second + 10] ^= 0xFF  # its checksum no longer matches
    await put_backup(bucket, layout, BACKUP, info(BACKUP), {"data.tar": bytes(body)})
    try:
        with pytest.raises(InvalidInput, match="damaged tar archive"):
            await restore_backup(bucket, layout, BACKUP, tmp_path / "pgdata")
    finally:
        await bucket.close()


def chunks(total: int, size: int) -> Iterator[bytes]:
    for _ in range(total // size):
        yield b"c" * size


async def test_the_pipe_is_bounded_and_an_abort_wakes_everyone() -> None:
    pipe = Pipe(4 * 1024)
    for chunk in chunks(4 * 1024, 1024):
        await pipe.aput(chunk)
    blocked = asyncio.ensure_future(pipe.aput(b"d" * 1024))
    await asyncio.sleep(0)
    assert not blocked.done()  # full: the producer waits, it does not buffer more
    assert await asyncio.to_thread(pipe.get) == b"c" * 1024  # 3 KiB left: still above half
    await asyncio.sleep(0)
    assert not blocked.done()
    assert await asyncio.to_thread(pipe.get) == b"c" * 1024  # half: the producer is woken
    await asyncio.wait_for(blocked, timeout=30)

    waiting = asyncio.ensure_future(asyncio.to_thread(_drain, pipe))
    pipe.abort()
    with pytest.raises(RestoreAborted):
        await asyncio.wait_for(waiting, timeout=30)
    with pytest.raises(RestoreAborted):
        await pipe.aput(b"late")


def _drain(pipe: Pipe) -> None:
    while pipe.get() is not None:
        pass


async def test_a_pipe_hands_the_producer_error_to_the_consumer() -> None:
    pipe = Pipe(1024)

    async def broken() -> AsyncGenerator[bytes, None]:
        yield b"first"
        raise Unavailable("cut")

    moved = asyncio.ensure_future(pipe.pump(broken()))
    assert await asyncio.to_thread(pipe.get) == b"first"
    with pytest.raises(Unavailable, match="cut"):
        await asyncio.to_thread(pipe.get)
    with pytest.raises(Unavailable, match="cut"):  # and again: the error stays
        await asyncio.to_thread(pipe.get)
    assert await moved == 5


async def test_writeback_of_every_written_byte_starts_during_the_extraction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each file's bytes are handed to the kernel's writeback in WRITEBACK_STEP ranges as they are
    written (contiguous, no gap, nothing twice), on the file being written, before it is closed:
    the final sync only waits for what is left."""
    from barman_cloud.restore import extract

    calls: list[tuple[str, int, int]] = []

    def record(fd: int, offset: int, length: int) -> None:
        assert length > 0
        calls.append((os.readlink(f"/proc/self/fd/{fd}"), offset, length))

    monkeypatch.setattr(extract, "WRITEBACK_STEP", 300_000)
    monkeypatch.setattr(extract, "start_writeback", record)
    rng = random.Random(7)  # noqa: S311 - test data
    files = {
        "small": b"s" * 1000,
        "big": rng.randbytes(3 * MAX_PIECE + 5),
        "exact": b"e" * 600_000,
        "empty": b"",
    }
    bucket = open_store(f"file://{tmp_path / 'bucket'}")
    layout = ServerLayout("", "pg")
    body = tars.build([tars.directory("."), *(tars.member(name, data) for name, data in files.items())])
    await put_backup(bucket, layout, BACKUP, info(BACKUP), {"data.tar.lz4": compression.LZ4.compress(body)})
    try:
        await restore_backup(bucket, layout, BACKUP, tmp_path / "pgdata")
    finally:
        await bucket.close()

    for name, data in files.items():
        ranges = [(offset, length) for path, offset, length in calls if Path(path).name == name]
        covered = 0
        for offset, length in ranges:
            assert offset == covered, f"{name}: ranges {ranges} are not contiguous"
            covered += length
        assert covered == len(data), f"{name}: writeback started for {covered} of {len(data)} bytes"
        assert all(length >= 300_000 for _, length in ranges[:-1]), ranges
    # Written in pieces of at most MAX_PIECE: the writeback of the first MiBs started before the end.
    assert len([c for c in calls if Path(c[0]).name == "big"]) >= 3


def test_start_writeback_reaches_the_kernel_with_64_bit_offsets(tmp_path: Path) -> None:
    """The real sync_file_range of this (Linux) libc is bound, with 64-bit offsets: it accepts a
    range, the rest of a file (length 0), an empty file and an offset past 4 GiB, and refuses a
    bad flag (so a return of 0 means something)."""
    from barman_cloud.restore import extract

    assert extract._SYNC_FILE_RANGE is not None
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100_000)
    (tmp_path / "empty").write_bytes(b"")
    fd = os.open(path, os.O_RDWR)
    empty = os.open(tmp_path / "empty", os.O_RDWR)
    try:
        assert extract._SYNC_FILE_RANGE(fd, 0, 50_000, 2) == 0
        assert extract._SYNC_FILE_RANGE(fd, 50_000, 0, 2) == 0
        assert extract._SYNC_FILE_RANGE(empty, 0, 0, 2) == 0
        assert extract._SYNC_FILE_RANGE(fd, 5 << 32, 4096, 2) == 0
        assert extract._SYNC_FILE_RANGE(fd, 0, 0, 99) == -1  # EINVAL: the call is really made
        extract.start_writeback(fd, 0, 0)  # never raises: a hint
    finally:
        os.close(fd)
        os.close(empty)
    assert path.read_bytes() == b"x" * 100_000
