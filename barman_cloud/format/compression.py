"""Compression as barman-cloud writes and reads it: decided by the object's suffix alone.

WAL: gzip ``.gz``, bzip2 ``.bz2``, xz ``.xz``, snappy framing ``.snappy``, zstd ``.zst``, lz4
frame ``.lz4`` with barman 3.14+'s default levels. Base-backup archives: ``.tar`` plus ``.gz``,
``.bz2``, ``.snappy`` or ``.lz4``. One member/stream/frame per object; readers also accept
concatenated members where the format allows it.

The codecs are CPU work: callers run them in threads (``asyncio.to_thread``), never on the loop.
"""

from __future__ import annotations

import bz2
import lzma
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from barman_cloud.errors import InvalidInput
from barman_cloud.format.deflate import deflate_level, zlib


class Compressor(Protocol):
    def compress(self, data: bytes) -> bytes: ...
    def flush(self) -> bytes: ...


class Decompressor(Protocol):
    def decompress(self, data: bytes) -> bytes: ...
    def flush(self) -> bytes: ...


@dataclass(frozen=True)
class Codec:
    name: str
    suffix: str
    default_level: int | None
    levels: tuple[int, int] | None
    named_levels: tuple[int, int, int] | None
    """The levels barman's ``low``/``medium``/``high`` stand for."""
    magic: bytes
    _compressor: Callable[[int | None], Compressor]
    _decompressor: Callable[[], Decompressor]

    def compressor(self, level: int | None = None) -> Compressor:
        return self._compressor(self.clamp(level))

    def decompressor(self) -> Decompressor:
        return self._decompressor()

    def clamp(self, level: int | None) -> int | None:
        if level is None or self.levels is None:
            return self.default_level
        low, high = self.levels
        return max(low, min(high, level))

    def compress(self, data: bytes, level: int | None = None) -> bytes:
        compressor = self.compressor(level)
        return compressor.compress(data) + compressor.flush()

    def decompress(self, data: bytes) -> bytes:
        decompressor = self.decompressor()
        return decompressor.decompress(data) + decompressor.flush()


class _Gzip:
    """One gzip member (RFC 1952), like Python's gzip module writes it."""

    def __init__(self, level: int | None = None) -> None:
        self._c = zlib.compressobj(deflate_level(6 if level is None else level), zlib.DEFLATED, 31)

    def compress(self, data: bytes) -> bytes:
        return self._c.compress(data)

    def flush(self) -> bytes:
        return self._c.flush()


class _GzipReader:
    """Reads on across concatenated members, as Python's gzip module does."""

    def __init__(self) -> None:
        self._d = zlib.decompressobj(31)

    def decompress(self, data: bytes) -> bytes:
        out = [self._d.decompress(data)]
        while self._d.eof and self._d.unused_data:
            rest = self._d.unused_data
            self._d = zlib.decompressobj(31)
            out.append(self._d.decompress(rest))
        return b"".join(out)

    def flush(self) -> bytes:
        if not self._d.eof:
            raise InvalidInput("truncated gzip stream")
        return self._d.flush()


class _Bzip2:
    def __init__(self, level: int | None = None) -> None:
        self._c = bz2.BZ2Compressor(5 if level is None else level)

    def compress(self, data: bytes) -> bytes:
        return self._c.compress(data)

    def flush(self) -> bytes:
        return self._c.flush()


class _Bzip2Reader:
    def __init__(self) -> None:
        self._d = bz2.BZ2Decompressor()

    def decompress(self, data: bytes) -> bytes:
        out = [self._d.decompress(data)]
        while self._d.eof and self._d.unused_data:
            rest = self._d.unused_data
            self._d = bz2.BZ2Decompressor()
            out.append(self._d.decompress(rest))
        return b"".join(out)

    def flush(self) -> bytes:
        if not self._d.eof:
            raise InvalidInput("truncated bzip2 stream")
        return b""


class _Xz:
    def __init__(self, level: int | None = None) -> None:
        self._c = lzma.LZMACompressor(lzma.FORMAT_XZ, preset=3 if level is None else level)

    def compress(self, data: bytes) -> bytes:
        return self._c.compress(data)

    def flush(self) -> bytes:
        return self._c.flush()


class _XzReader:
    def __init__(self) -> None:
        self._d = lzma.LZMADecompressor(lzma.FORMAT_AUTO)

    def decompress(self, data: bytes) -> bytes:
        out = [self._d.decompress(data)]
        while self._d.eof and self._d.unused_data:
            rest = self._d.unused_data
            self._d = lzma.LZMADecompressor(lzma.FORMAT_AUTO)
            out.append(self._d.decompress(rest))
        return b"".join(out)

    def flush(self) -> bytes:
        if not self._d.eof:
            raise InvalidInput("truncated xz stream")
        return b""


class _Snappy:
    def __init__(self, level: int | None = None) -> None:
        import snappy

        self._c: Any = snappy.StreamCompressor()

    def compress(self, data: bytes) -> bytes:
        return bytes(self._c.add_chunk(data)) if data else b""

    def flush(self) -> bytes:
        return b""


class _SnappyReader:
    def __init__(self) -> None:
        import snappy

        self._d: Any = snappy.StreamDecompressor()

    def decompress(self, data: bytes) -> bytes:
        return bytes(self._d.decompress(data)) if data else b""

    def flush(self) -> bytes:
        self._d.flush()
        return b""


class _Zstd:
    def __init__(self, level: int | None = None) -> None:
        import zstandard

        self._c: Any = zstandard.ZstdCompressor(level=4 if level is None else level).compressobj()

    def compress(self, data: bytes) -> bytes:
        return bytes(self._c.compress(data))

    def flush(self) -> bytes:
        return bytes(self._c.flush())


class _ZstdReader:
    def __init__(self) -> None:
        import zstandard

        self._new: Any = zstandard.ZstdDecompressor().decompressobj
        self._d: Any = self._new()

    def decompress(self, data: bytes) -> bytes:
        out = [bytes(self._d.decompress(data))]
        while self._d.eof and self._d.unused_data:
            rest = self._d.unused_data
            self._d = self._new()
            out.append(bytes(self._d.decompress(rest)))
        return b"".join(out)

    def flush(self) -> bytes:
        if not self._d.eof:
            raise InvalidInput("truncated zstd stream")
        return b""


class _Lz4:
    def __init__(self, level: int | None = None) -> None:
        import lz4.frame

        self._c: Any = lz4.frame.LZ4FrameCompressor(compression_level=6 if level is None else level)
        self._started = False

    def compress(self, data: bytes) -> bytes:
        head = b""
        if not self._started:
            head = bytes(self._c.begin())
            self._started = True
        return head + bytes(self._c.compress(data))

    def flush(self) -> bytes:
        head = b"" if self._started else bytes(self._c.begin())
        self._started = True
        return head + bytes(self._c.flush())


class _Lz4Reader:
    def __init__(self) -> None:
        import lz4.frame

        self._module: Any = lz4.frame
        self._d: Any = lz4.frame.LZ4FrameDecompressor()

    def decompress(self, data: bytes) -> bytes:
        out = [bytes(self._d.decompress(data))]
        while self._d.eof and self._d.unused_data:
            rest = self._d.unused_data
            self._d = self._module.LZ4FrameDecompressor()
            out.append(bytes(self._d.decompress(rest)))
        return b"".join(out)

    def flush(self) -> bytes:
        if not self._d.eof:
            raise InvalidInput("truncated lz4 stream")
        return b""


GZIP = Codec("gzip", ".gz", 6, (1, 9), (1, 6, 9), b"\x1f\x8b\x08", _Gzip, _GzipReader)
BZIP2 = Codec("bzip2", ".bz2", 5, (1, 9), (1, 5, 9), b"BZh", _Bzip2, _Bzip2Reader)
XZ = Codec("xz", ".xz", 3, (1, 9), (1, 3, 5), b"\xfd7zXZ\x00", _Xz, _XzReader)
SNAPPY = Codec("snappy", ".snappy", None, None, None, b"\xff\x06\x00\x00sNaPpY", _Snappy, _SnappyReader)
ZSTD = Codec("zstd", ".zst", 4, (-22, 22), (1, 4, 9), b"\x28\xb5\x2f\xfd", _Zstd, _ZstdReader)
LZ4 = Codec("lz4", ".lz4", 6, (0, 16), (0, 6, 10), b"\x04\x22\x4d\x18", _Lz4, _Lz4Reader)

# barman's reader table, in its order.
WAL_CODECS = (GZIP, BZIP2, XZ, SNAPPY, ZSTD, LZ4)
BY_NAME = {codec.name: codec for codec in WAL_CODECS}
BY_SUFFIX = {codec.suffix: codec for codec in WAL_CODECS}
BACKUP_CODECS = (GZIP, BZIP2, SNAPPY, LZ4)


def codec_named(name: str | None) -> Codec | None:
    """The codec of an ObjectStore ``compression`` value (None: uncompressed)."""
    if name is None:
        return None
    try:
        return BY_NAME[name]
    except KeyError:
        raise InvalidInput(f"unknown compression {name!r}", hint=f"use one of {', '.join(BY_NAME)}") from None


def parse_level(codec: Codec, level: str | int | None) -> int | None:
    """``--compression-level``: an integer (clamped) or ``low``/``medium``/``high``."""
    if level is None or codec.levels is None:
        return codec.default_level
    if isinstance(level, str) and level in ("low", "medium", "high") and codec.named_levels:
        return codec.named_levels[("low", "medium", "high").index(level)]
    try:
        return codec.clamp(int(level))
    except ValueError:
        raise InvalidInput(
            f"invalid compression level {level!r}", hint="an integer, low, medium or high"
        ) from None


def split_suffix(basename: str) -> tuple[str, Codec | None]:
    """``000000010000000000000002.gz`` -> (``000000010000000000000002``, GZIP); at most one suffix."""
    for codec in WAL_CODECS:
        if basename.endswith(codec.suffix):
            return basename[: -len(codec.suffix)], codec
    return basename, None
