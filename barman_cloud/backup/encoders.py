"""One compression stream per archive object, compressed in parallel pieces.

barman reads each archive with Python's streaming ``tarfile`` (``r|gz``, ``r|bz2``) or a streaming
snappy/lz4 decompressor, which stops at the end of the first gzip member or bzip2 stream (format
E-3). So an archive object must be ONE stream, which would make its compression sequential.
These encoders split the work differently: the tar bytes are cut into pieces, each piece is
compressed independently in a worker thread, and the pieces are joined, in order, into one valid
stream:

- gzip: pigz's method. Each piece is raw deflate primed with the previous piece's last 32 KiB (so
  matches across pieces are not lost) and ended by a sync flush (byte aligned, not final); the
  stream is a gzip header, the pieces, an empty final block, and the CRC-32 of all the data
  (combined from the pieces' CRCs) with its length. One gzip member.
- lz4: one frame with independent blocks (``block_linked=0``) of up to 4 MiB, no checksums, as
  ``lz4.frame`` would write them with those parameters.
- snappy: the framing format is already a sequence of independently compressed chunks of at most
  64 KiB; the pieces are joined under one stream identifier.
- bzip2: each piece cut into parts that make exactly one block each, compressed on their own;
  the blocks (not byte aligned) are laid end to end bit by bit under one header, followed by the
  end-of-stream marker and the combined CRC of the blocks. One bzip2 stream.

Levels: gzip 6 (barman's tarfile uses 9, several times slower for a few percent), bzip2 9 and lz4's
fast mode (barman's), snappy has none. Every stream is readable by barman 3.19's reader (tested in
``tests/compat``) and by the standard tools (gzip, lz4, bzip2).
"""

from __future__ import annotations

import bz2
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from barman_cloud.format import compression
from barman_cloud.format.compression import Codec
from barman_cloud.format.deflate import zlib

Buffer = bytes | bytearray
WINDOW = 32 * 1024
"""Deflate's window: a gzip piece is primed with this much of the previous piece."""
LZ4_BLOCK = 4 * 1024 * 1024


@dataclass(frozen=True)
class Piece:
    """A compressed piece and what joining it needs."""

    data: bytes
    size: int
    """Uncompressed size."""
    crc: int = 0
    extra: object = None
    """Whatever else the encoder's ``join`` needs."""


class Encoder(Protocol):
    """A compression stream built from pieces.

    ``encode`` is CPU work for a worker thread; when ``parallel`` is true it is pure (pieces may
    be encoded concurrently, in any order), otherwise it must be called in order. ``join``,
    ``head`` and ``end`` are cheap and called in stream order.
    """

    parallel: bool

    def head(self) -> bytes: ...
    def encode(self, data: Buffer, previous: bytes) -> Piece: ...
    def join(self, piece: Piece) -> bytes: ...
    def end(self) -> bytes: ...


class Identity:
    """No compression."""

    parallel = True

    def head(self) -> bytes:
        return b""

    def encode(self, data: Buffer, previous: bytes) -> Piece:
        return Piece(bytes(data), len(data))

    def join(self, piece: Piece) -> bytes:
        return piece.data

    def end(self) -> bytes:
        return b""


# -- CRC-32 combination (zlib's crc32_combine, with the operators for 2**k zero bytes cached) ----

_CRC_POLYNOMIAL = 0xEDB88320


def _gf2_times(matrix: Sequence[int], vector: int) -> int:
    result = 0
    index = 0
    while vector:
        if vector & 1:
            result ^= matrix[index]
        vector >>= 1
        index += 1
    return result


def _gf2_square(matrix: Sequence[int]) -> list[int]:
    return [_gf2_times(matrix, matrix[n]) for n in range(32)]


def _zero_byte_operators(count: int = 64) -> list[list[int]]:
    """``operators[k]`` advances a CRC over ``2**k`` zero bytes."""
    one_bit = [_CRC_POLYNOMIAL] + [1 << n for n in range(31)]
    two_bits = _gf2_square(one_bit)
    four_bits = _gf2_square(two_bits)
    operators = [_gf2_square(four_bits)]
    for _ in range(count - 1):
        operators.append(_gf2_square(operators[-1]))
    return operators


_OPERATORS = _zero_byte_operators()


def crc32_combine(crc1: int, crc2: int, length2: int) -> int:
    """The CRC-32 of ``A + B`` from ``crc32(A)``, ``crc32(B)`` and ``len(B)``."""
    k = 0
    while length2:
        if length2 & 1:
            crc1 = _gf2_times(_OPERATORS[k], crc1)
        length2 >>= 1
        k += 1
    return crc1 ^ crc2


class Gzip:
    """One gzip member from pieces compressed in parallel (see the module docstring)."""

    parallel = True
    HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"  # deflate, no name, mtime 0, Unix
    FINAL_EMPTY_BLOCK = b"\x03\x00"

    def __init__(self, level: int = 6) -> None:
        self.level = level
        self._crc = 0
        self._size = 0

    def head(self) -> bytes:
        return self.HEADER

    def encode(self, data: Buffer, previous: bytes) -> Piece:
        if previous:
            compressor = zlib.compressobj(
                self.level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, previous
            )
        else:
            compressor = zlib.compressobj(self.level, zlib.DEFLATED, -15, 8)
        out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        return Piece(out, len(data), zlib.crc32(data))

    def join(self, piece: Piece) -> bytes:
        self._crc = crc32_combine(self._crc, piece.crc, piece.size)
        self._size += piece.size
        return piece.data

    def end(self) -> bytes:
        return self.FINAL_EMPTY_BLOCK + struct.pack("<II", self._crc, self._size & 0xFFFFFFFF)


class Lz4:
    """One LZ4 frame of independent blocks (each piece compressed on its own)."""

    parallel = True

    def __init__(self) -> None:
        import lz4.block
        import lz4.frame

        self._block: Any = lz4.block
        frame: Any = lz4.frame
        self._header = bytes(
            frame.LZ4FrameCompressor(
                block_size=frame.BLOCKSIZE_MAX4MB,
                block_linked=False,
                content_checksum=False,
                compression_level=0,
            ).begin()
        )

    def head(self) -> bytes:
        return self._header

    def encode(self, data: Buffer, previous: bytes) -> Piece:
        out: list[bytes] = []
        view = memoryview(data)
        for offset in range(0, len(view), LZ4_BLOCK):
            raw = view[offset : offset + LZ4_BLOCK]
            packed = self._block.compress(raw, mode="default", store_size=False)
            if len(packed) < len(raw):
                out += (struct.pack("<I", len(packed)), bytes(packed))
            else:  # incompressible: stored as is, flagged by the high bit
                out += (struct.pack("<I", len(raw) | 0x80000000), bytes(raw))
        return Piece(b"".join(out), len(data))

    def join(self, piece: Piece) -> bytes:
        return piece.data

    def end(self) -> bytes:
        return b"\x00\x00\x00\x00"  # end mark, no content checksum


class Snappy:
    """The snappy framing format, pieces framed independently under one stream identifier."""

    parallel = True
    STREAM_IDENTIFIER = b"\xff\x06\x00\x00sNaPpY"

    def __init__(self) -> None:
        import snappy

        self._new: Any = snappy.StreamCompressor

    def head(self) -> bytes:
        return self.STREAM_IDENTIFIER

    def encode(self, data: Buffer, previous: bytes) -> Piece:
        framed = bytes(self._new().add_chunk(bytes(data))) if data else b""
        if framed.startswith(self.STREAM_IDENTIFIER):
            framed = framed[len(self.STREAM_IDENTIFIER) :]
        return Piece(framed, len(data))

    def join(self, piece: Piece) -> bytes:
        return piece.data

    def end(self) -> bytes:
        return b""


class Bzip2:
    """One bzip2 stream from pieces compressed in parallel (lbzip2's idea).

    A bzip2 stream is a header, blocks that are not byte aligned (each with its own CRC), an
    end-of-stream marker and the combined CRC of the blocks. Each piece is cut into parts small
    enough to make exactly one block at level 9 (RLE1 can grow data by 5/4, a block holds 899,981
    bytes), each part compressed as its own stream by libbzip2, and its block's bits taken out; the
    join lays the blocks end to end, bit by bit, and the end writes the marker and the CRC. For a
    cheap join, the worker renders the piece's bits at each of the 8 possible bit offsets."""

    parallel = True
    BLOCK_INPUT = 719_984
    """The most input that always fits one level-9 block."""
    BLOCK_MAGIC = 0x314159265359
    END_MAGIC = 0x177245385090

    def __init__(self, level: int = 9) -> None:
        self.level = level
        self._crc = 0
        self._carry = 0
        self._carry_bits = 0

    def head(self) -> bytes:
        return b"BZh" + str(self.level).encode()

    @classmethod
    def _block(cls, stream: bytes) -> tuple[int, int, int]:
        """(bits, bit length, CRC) of the only block of a one-block stream."""
        crc = int.from_bytes(stream[10:14], "big")
        value = int.from_bytes(stream, "big")
        tail = (cls.END_MAGIC << 32) | crc
        for padding in range(8):
            if value & ((1 << padding) - 1) == 0 and (value >> padding) & ((1 << 80) - 1) == tail:
                length = len(stream) * 8 - 32 - 80 - padding
                return (value >> (80 + padding)) & ((1 << length) - 1), length, crc
        raise ValueError("not a one-block bzip2 stream")

    def encode(self, data: Buffer, previous: bytes) -> Piece:
        view = memoryview(data)
        bits, length, crc, blocks = 0, 0, 0, 0
        for offset in range(0, len(view), self.BLOCK_INPUT):
            block, block_length, block_crc = self._block(
                bz2.compress(view[offset : offset + self.BLOCK_INPUT], self.level)
            )
            bits = (bits << block_length) | block
            length += block_length
            crc = ((crc << 1) | (crc >> 31)) & 0xFFFFFFFF ^ block_crc
            blocks += 1
        return Piece(b"", len(data), crc, _BitRenderings(bits, length, blocks))

    def join(self, piece: Piece) -> bytes:
        rendered = piece.extra
        assert isinstance(rendered, _BitRenderings)
        if not rendered.length:
            return b""
        blocks = rendered.blocks % 32
        self._crc = ((self._crc << blocks) | (self._crc >> (32 - blocks))) & 0xFFFFFFFF ^ piece.crc
        out = bytearray(rendered.at(self._carry_bits))
        out[0] |= self._carry << (8 - self._carry_bits) if self._carry_bits else 0
        total = self._carry_bits + rendered.length
        self._carry_bits = total % 8
        if self._carry_bits:
            self._carry = out[-1] >> (8 - self._carry_bits)
            del out[-1]
        else:
            self._carry = 0
        return bytes(out)

    def end(self) -> bytes:
        value = (self._carry << 80) | (self.END_MAGIC << 32) | self._crc
        total = self._carry_bits + 80
        padded = -(-total // 8) * 8
        return (value << (padded - total)).to_bytes(padded // 8, "big")


class _BitRenderings:
    """A bit string rendered as bytes starting at each bit offset 0-7 (zeros before and after)."""

    def __init__(self, bits: int, length: int, blocks: int) -> None:
        self.length = length
        self.blocks = blocks
        self._renderings = []
        for offset in range(8 if length else 0):
            total = offset + length
            padded = -(-total // 8) * 8
            self._renderings.append((bits << (padded - total)).to_bytes(padded // 8, "big"))

    def at(self, offset: int) -> bytes:
        return self._renderings[offset]


def encoder_for(codec: Codec | None) -> Encoder:
    """A fresh encoder (one per archive object) for a base-backup codec."""
    if codec is None:
        return Identity()
    if codec is compression.GZIP:
        return Gzip()
    if codec is compression.LZ4:
        return Lz4()
    if codec is compression.SNAPPY:
        return Snappy()
    if codec is compression.BZIP2:
        return Bzip2()
    raise ValueError(f"{codec.name} is not a base-backup compression")
