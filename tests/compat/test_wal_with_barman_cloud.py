"""WAL written by barman-cloud-wal-archive 3.19 is restored by us byte for byte, and the reverse,
with every compression, on S3 (moto), Azure (Azurite) and GCS (fake-gcs-server); the empty-archive
checks agree."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from barman_cloud.format import compression
from barman_cloud.format.wal import WalName
from barman_cloud.wal.archive import ArchiveSettings, WalArchiver
from barman_cloud.wal.check import check_wal_archive
from barman_cloud.wal.restore import WalRestorer
from tests.compat.conftest import SharedBucket

BARMAN_FLAGS = {None: [], "gzip": ["--gzip"], "bzip2": ["--bzip2"], "xz": ["--xz"], "snappy": ["--snappy"],
                "zstd": ["--zstd"], "lz4": ["--lz4"]}  # fmt: skip
CODECS = [None, *compression.WAL_CODECS]


def wal_file(directory: Path, name: str, size: int = 2 * 1024 * 1024) -> Path:
    block = hashlib.sha256(name.encode()).digest() * 4096
    path = directory / name
    path.write_bytes((block * (size // len(block) + 1))[:size])
    return path


def _id(codec: compression.Codec | None) -> str:
    return codec.name if codec else "none"


@pytest.mark.parametrize("codec", CODECS, ids=_id)
async def test_barman_archives_we_restore(
    shared_bucket: SharedBucket, codec: compression.Codec | None, tmp_path: Path
) -> None:
    name = "000000010000000000000007"
    source = wal_file(tmp_path, name)
    flags = BARMAN_FLAGS[codec.name if codec else None]
    shared_bucket.barman("wal-archive", *flags, shared_bucket.destination, shared_bucket.server, str(source))
    restored = await WalRestorer(shared_bucket.store, shared_bucket.layout).restore(
        name, tmp_path / "RECOVERYXLOG"
    )
    assert restored.key == shared_bucket.layout.wal(WalName.parse(name), codec)
    assert (tmp_path / "RECOVERYXLOG").read_bytes() == source.read_bytes()


@pytest.mark.parametrize("codec", CODECS, ids=_id)
async def test_we_archive_barman_restores(
    shared_bucket: SharedBucket, codec: compression.Codec | None, tmp_path: Path
) -> None:
    name = "000000010000000000000008"
    source = wal_file(tmp_path, name)
    await WalArchiver(shared_bucket.store, shared_bucket.layout, ArchiveSettings(codec=codec)).archive(source)
    target = tmp_path / "restored"
    shared_bucket.barman("wal-restore", shared_bucket.destination, shared_bucket.server, name, str(target))
    assert target.read_bytes() == source.read_bytes()


async def test_history_files_round_trip_both_ways(shared_bucket: SharedBucket, tmp_path: Path) -> None:
    ours = tmp_path / "00000002.history"
    ours.write_text("1\t0/5000000\tno recovery target specified\n")
    await WalArchiver(
        shared_bucket.store, shared_bucket.layout, ArchiveSettings(codec=compression.GZIP)
    ).archive(ours)
    shared_bucket.barman(
        "wal-restore", shared_bucket.destination, "pg", "00000002.history", str(tmp_path / "a")
    )
    assert (tmp_path / "a").read_text() == ours.read_text()
    theirs = tmp_path / "00000003.history"
    theirs.write_text("1\t0/5000000\tno recovery target specified\n2\t0/7000000\tbefore 2026-11-24\n")
    shared_bucket.barman("wal-archive", "--bzip2", shared_bucket.destination, "pg", str(theirs))
    await WalRestorer(shared_bucket.store, shared_bucket.layout).restore("00000003.history", tmp_path / "b")
    assert (tmp_path / "b").read_text() == theirs.read_text()


async def test_empty_archive_checks_agree(shared_bucket: SharedBucket, tmp_path: Path) -> None:
    def barman_check(*extra: str) -> int:
        return shared_bucket.barman(
            "check-wal-archive", *extra, shared_bucket.destination, "pg", check=False
        ).returncode

    async def our_check(timeline: int | None = None) -> int:
        try:
            await check_wal_archive(shared_bucket.store, shared_bucket.layout, timeline)
        except Exception:
            return 1
        return 0

    assert barman_check() == 0 and await our_check() == 0
    shared_bucket.barman(
        "wal-archive",
        shared_bucket.destination,
        "pg",
        str(wal_file(tmp_path, "000000020000000000000001", 1024)),
    )
    assert barman_check() == 1 and await our_check() == 1
    assert barman_check("--timeline", "3") == 0 and await our_check(3) == 0
    assert barman_check("--timeline", "2") == 1 and await our_check(2) == 1
