"""Every archive object is ONE compression stream (format E-3), even though its pieces are
compressed in parallel: the streaming readers barman uses stop after the first gzip member or
bzip2 stream, and the standard tools check the streams too."""

from __future__ import annotations

import bz2
import gzip
import os
import subprocess
import tarfile
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from barman_cloud.backup import encoders
from barman_cloud.backup.encoders import Encoder
from barman_cloud.format import compression
from barman_cloud.format.compression import Codec
from tests.barman_cloud.backup.helpers import read_tar

CODECS = [None, *compression.BACKUP_CODECS]


def _id(codec: Codec | None) -> str:
    return codec.name if codec else "none"


def encode(encoder: Encoder, pieces: list[bytes]) -> bytes:
    """Pieces encoded out of order (as parallel workers finish), joined in order."""
    out = [encoder.head()]
    previous = [b""] + [piece[-encoders.WINDOW :] for piece in pieces[:-1]]
    if encoder.parallel:
        encoded = {i: encoder.encode(pieces[i], previous[i]) for i in reversed(range(len(pieces)))}
        out += [encoder.join(encoded[i]) for i in range(len(pieces))]
    else:
        out += [
            encoder.join(encoder.encode(piece, prev)) for piece, prev in zip(pieces, previous, strict=True)
        ]
    out.append(encoder.end())
    return b"".join(out)


def sample(size: int) -> bytes:
    """Compressible and incompressible stretches, like a data directory."""
    text = b"".join(b"%08d|%s\n" % (i, b"pgbench " * (i % 7)) for i in range(size // 40))
    return (text[: size // 2] + os.urandom(size // 4) + text[: size // 4])[:size]


@pytest.mark.parametrize("archive_codec", CODECS, ids=_id)
def test_pieces_join_into_one_stream(archive_codec: Codec | None) -> None:
    data = sample(3 * 1024 * 1024 + 12345)
    pieces = [data[i : i + 700_001] for i in range(0, len(data), 700_001)]
    blob = encode(encoders.encoder_for(archive_codec), pieces)
    if archive_codec is compression.GZIP:
        member = zlib.decompressobj(31)
        assert member.decompress(blob) == data and member.eof and not member.unused_data
        assert gzip.decompress(blob) == data
    elif archive_codec is compression.BZIP2:
        stream = bz2.BZ2Decompressor()
        assert stream.decompress(blob) == data and stream.eof and not stream.unused_data
    elif archive_codec is None:
        assert blob == data
    else:
        assert archive_codec.decompress(blob) == data
    if archive_codec is not None:
        assert blob.startswith(archive_codec.magic)


def test_gzip_accepts_the_stream(tmp_path: Path) -> None:
    data = sample(2 * 1024 * 1024)
    path = tmp_path / "piece.tar.gz"
    path.write_bytes(encode(encoders.Gzip(), [data[: 1 << 20], data[1 << 20 :]]))
    result = subprocess.run(["gzip", "-t", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    restored = subprocess.run(["gzip", "-dc", str(path)], capture_output=True, check=True).stdout
    assert restored == data


@pytest.mark.parametrize("archive_codec", [compression.GZIP, compression.BZIP2], ids=_id)
def test_python_tarfile_reads_it_in_stream_mode(archive_codec: Codec, tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(sample(1_500_000))
    raw = tmp_path / "raw.tar"
    with tarfile.open(raw, "w", format=tarfile.PAX_FORMAT) as archive:
        archive.add(tmp_path / "a", arcname="a")
    data = raw.read_bytes()
    blob = encode(
        encoders.encoder_for(archive_codec), [data[i : i + 400_000] for i in range(0, len(data), 400_000)]
    )
    (tmp_path / f"x.tar{archive_codec.suffix}").write_bytes(blob)
    path = tmp_path / f"x.tar{archive_codec.suffix}"
    with (
        tarfile.open(path, "r|gz")
        if archive_codec is compression.GZIP
        else tarfile.open(path, "r|bz2") as archive
    ):
        member = archive.next()
        assert member is not None and member.name == "a"
        extracted = archive.extractfile(member)
        assert extracted is not None and extracted.read() == (tmp_path / "a").read_bytes()
    assert [m.name for m, _ in read_tar(blob, archive_codec)] == ["a"]


def test_empty_stream() -> None:
    for archive_codec in CODECS:
        encoder = encoders.encoder_for(archive_codec)
        blob = encoder.head() + encoder.end()
        assert (archive_codec.decompress(blob) if archive_codec else blob) == b""


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.binary(max_size=300))
def test_crc32_combine(first: bytes, second: bytes) -> None:
    combined = encoders.crc32_combine(zlib.crc32(first), zlib.crc32(second), len(second))
    assert combined == zlib.crc32(first + second)


def test_crc32_combine_long_lengths() -> None:
    zeros = bytes(5_000_000)
    assert encoders.crc32_combine(zlib.crc32(b"x"), zlib.crc32(zeros), len(zeros)) == zlib.crc32(b"x" + zeros)


def test_incompressible_lz4_blocks_are_stored() -> None:
    data = os.urandom(5 * 1024 * 1024)
    blob = encode(encoders.Lz4(), [data])
    assert compression.LZ4.decompress(blob) == data
    assert len(blob) < len(data) + 64


@pytest.mark.parametrize(
    "sizes",
    [[1], [0, 5, 0], [encoders.Bzip2.BLOCK_INPUT], [encoders.Bzip2.BLOCK_INPUT + 1, 3], [7, 1 << 20, 13, 9]],
    ids=["one-byte", "empty-pieces", "one-full-block", "block-plus-one", "mixed"],
)
def test_bzip2_blocks_laid_end_to_end_at_any_bit_offset(sizes: list[int]) -> None:
    data = sample(sum(sizes) + 1)[: sum(sizes)]
    pieces, start = [], 0
    for size in sizes:
        pieces.append(data[start : start + size])
        start += size
    blob = encode(encoders.Bzip2(), pieces)
    stream = bz2.BZ2Decompressor()
    assert stream.decompress(blob) == data and stream.eof and not stream.unused_data
