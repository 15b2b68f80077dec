"""Deflate through zlib-ng (barman_cloud/format/deflate.py): what it writes is read by Python's
zlib and gzip (barman-cloud reads with them), and barman's level names keep their sizes."""

from __future__ import annotations

import gzip
import random
import zlib

import pytest

from barman_cloud.format import compression
from barman_cloud.format.deflate import IMPLEMENTATION


def wal_like(size: int = 4 * 1024 * 1024, seed: int = 3) -> bytes:
    """Record-like data: headers, counters, text and zero runs, compressible as WAL is."""
    rng = random.Random(seed)  # noqa: S311 - test data
    out = bytearray()
    row = 0
    while len(out) < size:
        row += 1
        out += row.to_bytes(8, "little") + rng.randbytes(16)
        out += f"account {row:08d} balance {rng.randrange(10**6):07d} filler".encode() + bytes(40)
    return bytes(out[:size])


def test_the_engine_deflates_with_zlib_ng() -> None:
    assert IMPLEMENTATION == "zlib-ng"  # a dependency: without it gzip is ~3x slower


@pytest.mark.parametrize("level", [None, 1, 6, 9])
def test_python_gzip_reads_what_the_wal_codec_writes(level: int | None) -> None:
    data = wal_like()
    compressed = compression.GZIP.compress(data, level)
    assert gzip.decompress(compressed) == data
    assert zlib.decompress(compressed, 31) == data
    assert compression.GZIP.decompress(gzip.compress(data)) == data


@pytest.mark.parametrize("level", [1, 6, 9])
def test_each_gzip_level_stores_about_what_zlib_stores(level: int) -> None:
    """zlib-ng's own level 1 is far cruder than zlib's (30 % larger on real WAL): barman's ``low``
    (level 1) must not cost that much more storage than it does with barman."""
    data = wal_like()
    ours = len(compression.GZIP.compress(data, level))
    theirs = len(zlib.compress(data, level))
    assert ours <= theirs * 1.05, (ours, theirs)
