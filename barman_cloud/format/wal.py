"""WAL file names, timelines and segment arithmetic for any ``wal_segment_size``.

Names (case-insensitive hex, as barman accepts them): a segment ``TTTTTTTTLLLLLLLLSSSSSSSS``, its
``.partial`` (archived by a promoted standby), a backup history file ``<segment>.<OFFSET8>.backup``
and a timeline history file ``TTTTTTTT.history``. The segment number of an LSN is
``lsn // segment_size``; a "log" holds ``2**32 // segment_size`` segments.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from functools import total_ordering

from barman_cloud.errors import InvalidInput

DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024
MIN_SEGMENT_SIZE = 1024 * 1024
MAX_SEGMENT_SIZE = 1024 * 1024 * 1024

WAL_NAME = re.compile(r"^[0-9A-Fa-f]{8}(?:[0-9A-Fa-f]{16}(?:\.[0-9A-Fa-f]{8}\.backup|\.partial)?|\.history)$")
_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")


class WalKind(enum.Enum):
    SEGMENT = "segment"
    PARTIAL = "partial"
    BACKUP = "backup"
    HISTORY = "history"


def check_segment_size(size: int) -> int:
    """PostgreSQL allows powers of two from 1 MiB to 1 GiB."""
    if not MIN_SEGMENT_SIZE <= size <= MAX_SEGMENT_SIZE or size & (size - 1):
        raise InvalidInput(f"invalid WAL segment size {size}", hint="a power of two between 1 MiB and 1 GiB")
    return size


def segments_per_log(segment_size: int) -> int:
    return 0x1_0000_0000 // check_segment_size(segment_size)


def is_wal_name(name: str) -> bool:
    return WAL_NAME.fullmatch(name) is not None


@total_ordering
@dataclass(frozen=True)
class WalName:
    """A parsed WAL file name; ordering is the name's (upper-cased) string order, as barman's."""

    name: str
    kind: WalKind
    timeline: int
    log: int = 0
    seg: int = 0

    @classmethod
    def parse(cls, name: str) -> WalName:
        """Parse a bare file name (no directory, no compression suffix); InvalidInput otherwise."""
        if not isinstance(name, str) or not WAL_NAME.fullmatch(name):
            raise InvalidInput(
                f"{name!r} is not a WAL file name",
                hint="expected a segment (24 hex digits), .partial, .backup or TTTTTTTT.history",
            )
        upper = name[:8].upper() + name[8:]
        timeline = int(name[:8], 16)
        if name.endswith(".history"):
            return cls(upper, WalKind.HISTORY, timeline)
        upper = name[:24].upper() + name[24:]
        kind = WalKind.SEGMENT
        if name.endswith(".partial"):
            kind = WalKind.PARTIAL
        elif name.endswith(".backup"):
            kind = WalKind.BACKUP
        return cls(upper, kind, timeline, int(name[8:16], 16), int(name[16:24], 16))

    @property
    def segment(self) -> str:
        """The 24-hex segment name (for .partial and .backup: the segment they belong to)."""
        if self.kind is WalKind.HISTORY:
            raise InvalidInput(f"{self.name} is a history file, not a segment")
        return self.name[:24]

    @property
    def hash_dir(self) -> str:
        """barman's directory under ``wals/``: ``TTTTTTTTLLLLLLLL``, empty for history files."""
        return "" if self.kind is WalKind.HISTORY else self.name[:16]

    def segment_number(self, segment_size: int) -> int:
        return self.log * segments_per_log(segment_size) + self.seg

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, WalName):
            return NotImplemented
        return self.name < other.name


def segment_name(timeline: int, segment_number: int, segment_size: int) -> str:
    per_log = segments_per_log(segment_size)
    return f"{timeline:08X}{segment_number // per_log:08X}{segment_number % per_log:08X}"


def next_segment(name: str, segment_size: int) -> str:
    """The segment after ``name`` on the same timeline."""
    wal = WalName.parse(name)
    if wal.kind is not WalKind.SEGMENT:
        raise InvalidInput(f"{name} is not a plain segment")
    return segment_name(wal.timeline, wal.segment_number(segment_size) + 1, segment_size)


def parse_lsn(text: str) -> int:
    """``X/Y`` as PostgreSQL prints it (hex, any padding) to a 64-bit position."""
    match = _LSN.fullmatch(text.strip())
    if not match:
        raise InvalidInput(f"{text!r} is not an LSN", hint="expected X/Y in hexadecimal, e.g. 0/9000028")
    return (int(match.group(1), 16) << 32) | int(match.group(2), 16)


def format_lsn(position: int) -> str:
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


def wal_file_for_lsn(timeline: int, lsn: int, segment_size: int) -> str:
    """The segment containing ``lsn`` (barman's ``begin_wal``/``end_wal`` rule: no minus-one)."""
    return segment_name(timeline, lsn // segment_size, segment_size)


def history_name(timeline: int) -> str:
    return f"{timeline:08X}.history"
