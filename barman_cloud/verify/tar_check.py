"""Read a compressed tar stream through to its end without extracting it (runs in a worker thread).

What is checked: the stream decompresses (one complete compressed stream: a truncated gzip, bzip2
or lz4 stream fails), every header block has a valid checksum, member sizes (ustar octal, GNU
base-256, PAX ``size`` records) add up, the data of the last member is all there, and the archive
ends with its end-of-archive marker (a zero block) as every tar writer puts it. Member data is
skipped, not parsed: only 512-byte headers are looked at, so the cost is the decompression.

Memory stays bounded: compressed input is fed to the decompressor in small slices, so a highly
compressible member cannot expand one network chunk into gigabytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from barman_cloud.errors import Corrupt
from barman_cloud.format.compression import Codec, Decompressor

BLOCK = 512
INPUT_SLICE = 16 * 1024
_ZERO_BLOCK = bytes(BLOCK)
_EXTENDED = (b"g", b"L", b"K")
"""PAX global headers, GNU long name and long link: data blocks that describe the next member."""
_NO_DATA = (b"1", b"2", b"3", b"4", b"5", b"6")
"""Hard and symbolic links, devices, directories, FIFOs."""
MAX_PAX = 1024 * 1024


TRUNCATED = "truncated"
UNDECODABLE = "undecodable"
BAD_ARCHIVE = "bad-archive"


class ContentError(Corrupt):
    """What reading an object's content found wrong (as opposed to a checksum mismatch)."""

    def __init__(self, kind: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.kind = kind


@dataclass
class TarSummary:
    members: int = 0
    data_bytes: int = 0
    tar_bytes: int = 0
    stored_bytes: int = 0


class TarChecker:
    """Feed the stored bytes of one archive object in order; :meth:`finish` at the end."""

    def __init__(self, codec: Codec | None, where: str) -> None:
        self.where = where
        self._decompressor: Decompressor | None = codec.decompressor() if codec else None
        self._codec = codec
        self._buffer = bytearray()
        self._skip = 0
        """Bytes of member data (with padding) still to skip."""
        self._pax_size: int | None = None
        self._pax_remaining = 0
        self._pax_data = bytearray()
        self._ended = False
        self.summary = TarSummary()

    def feed(self, data: bytes) -> None:
        self.summary.stored_bytes += len(data)
        if self._decompressor is None:
            self._consume(data)
            return
        view = memoryview(data)
        for offset in range(0, len(view), INPUT_SLICE):
            self._consume(self._decompress(bytes(view[offset : offset + INPUT_SLICE])))

    def finish(self) -> TarSummary:
        if self._decompressor is not None:
            self._consume(self._decompress(b"", final=True))
        if self._skip > 0:
            raise ContentError(
                TRUNCATED,
                f"{self.where} is truncated: the data of its last member ends {self._skip} bytes early",
                hint="the archive was cut short: this backup cannot be restored completely",
            )
        if not self._ended:
            raise ContentError(
                TRUNCATED,
                f"{self.where} is truncated: no end-of-archive marker after "
                f"{self.summary.members} members ({self.summary.tar_bytes} tar bytes)",
                hint="the archive was cut short: this backup cannot be restored completely",
            )
        return self.summary

    def _decompress(self, data: bytes, *, final: bool = False) -> bytes:
        assert self._decompressor is not None and self._codec is not None
        try:
            out = self._decompressor.flush() if final else self._decompressor.decompress(data)
        except Exception as error:  # zlib.error, OSError, LZMAError, lz4/snappy errors, InvalidInput
            raise ContentError(
                UNDECODABLE,
                f"{self.where} does not decompress as {self._codec.name} "
                f"(after {self.summary.stored_bytes} stored bytes): {error}",
                hint="the object is damaged or truncated: this backup cannot be restored completely",
            ) from None
        return bytes(out)

    def _consume(self, data: bytes) -> None:
        base = self.summary.tar_bytes
        self.summary.tar_bytes += len(data)
        if self._ended:
            return  # padding after the end-of-archive marker (to a 10 KiB record)
        position = 0
        while position < len(data) and not self._ended:
            if self._pax_remaining:
                step = min(self._pax_remaining, len(data) - position, MAX_PAX - len(self._pax_data))
                if step <= 0:
                    raise ContentError(BAD_ARCHIVE, f"{self.where}: a PAX header larger than {MAX_PAX} bytes")
                self._pax_data += data[position : position + step]
                self._pax_remaining -= step
                position += step
                if not self._pax_remaining:
                    self._pax_size = parse_pax_size(bytes(self._pax_data))
                    self._pax_data.clear()
                continue
            if self._skip:
                step = min(self._skip, len(data) - position)
                self._skip -= step
                position += step
                continue
            take = min(BLOCK - len(self._buffer), len(data) - position)
            self._buffer += data[position : position + take]
            position += take
            if len(self._buffer) == BLOCK:
                header = bytes(self._buffer)
                self._buffer.clear()
                self._header(header, base + position - BLOCK)

    def _header(self, block: bytes, offset: int) -> None:
        if block == _ZERO_BLOCK:
            self._ended = True
            return
        where = f"at tar byte {offset}, after {self.summary.members} members"
        stored = _number(block[148:156])
        computed = sum(block[:148]) + 8 * 32 + sum(block[156:])
        if stored is None or stored != computed:
            raise ContentError(
                BAD_ARCHIVE,
                f"{self.where}: invalid tar header (bad checksum) {where}",
                hint="the archive is damaged: this backup cannot be restored completely",
            )
        size = _number(block[124:136])
        if size is None or size < 0:
            raise ContentError(BAD_ARCHIVE, f"{self.where}: invalid member size in a tar header {where}")
        kind = block[156:157]
        if kind == b"x":  # PAX records for the next member (its size among them)
            self._pax_remaining = size
            self._skip = _padded(size) - size
            return
        if kind in _EXTENDED:
            self._skip = _padded(size)
            return
        if self._pax_size is not None:
            size, self._pax_size = self._pax_size, None
        self.summary.members += 1
        if kind not in _NO_DATA:  # links and directories carry no data whatever their size says
            self.summary.data_bytes += size
            self._skip = _padded(size)


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


def _number(field: bytes) -> int | None:
    """A numeric header field: octal text (NUL/space padded) or GNU base-256."""
    if field and field[0] & 0x80:
        value = int.from_bytes(field[1:], "big")
        return -value if field[0] & 0x40 else value
    text = field.replace(b"\x00", b" ").strip()
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        return None


def parse_pax_size(records: bytes) -> int | None:
    """The ``size`` of PAX records ``"%d %s=%s\\n"``, None if absent."""
    position = 0
    size: int | None = None
    while position < len(records):
        space = records.find(b" ", position)
        if space < 0:
            break
        try:
            length = int(records[position:space])
        except ValueError:
            break
        if length <= 0:
            break
        record = records[space + 1 : position + length - 1]
        key, _, value = record.partition(b"=")
        if key == b"size":
            try:
                size = int(value)
            except ValueError:
                return None
        position += length
    return size
