"""The first page header of a WAL segment (``XLogLongPageHeaderData``) against what its name says.

Layout (PostgreSQL ``access/xlog_internal.h``, little-endian on every platform CloudNativePG
runs on): ``xlp_magic`` u16 at 0, ``xlp_info`` u16 at 2, ``xlp_tli`` u32 at 4, ``xlp_pageaddr``
u64 at 8, ``xlp_rem_len`` u32 at 16, then (aligned to 8) ``xlp_sysid`` u64 at 24,
``xlp_seg_size`` u32 at 32 and ``xlp_xlog_blcksz`` u32 at 36. ``xlp_info`` of a segment's first
page has ``XLP_LONG_HEADER``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

LONG_HEADER_SIZE = 40
XLP_LONG_HEADER = 0x0002
_FORMAT = struct.Struct("<HHIQI4xQII")

WAL_MAGIC = {
    10: 0xD097,
    11: 0xD098,
    12: 0xD101,
    13: 0xD106,
    14: 0xD10D,
    15: 0xD110,
    16: 0xD113,
    17: 0xD116,
    18: 0xD118,
}
"""``XLOG_PAGE_MAGIC`` by PostgreSQL major version."""


@dataclass(frozen=True)
class LongPageHeader:
    magic: int
    info: int
    tli: int
    pageaddr: int
    rem_len: int
    sysid: int
    seg_size: int
    blcksz: int

    @classmethod
    def parse(cls, data: bytes) -> LongPageHeader | None:
        if len(data) < LONG_HEADER_SIZE:
            return None
        return cls(*_FORMAT.unpack_from(data))


def header_problems(
    data: bytes,
    *,
    timeline: int,
    start_lsn: int,
    segment_size: int,
    system_id: int | None,
    major_version: int | None,
) -> list[str]:
    """What is wrong with a segment whose first bytes are ``data`` (empty: nothing)."""
    header = LongPageHeader.parse(data)
    if header is None:
        return [f"too short for a WAL page header ({len(data)} bytes)"]
    problems = []
    expected_magic = WAL_MAGIC.get(major_version) if major_version else None
    if expected_magic is not None and header.magic != expected_magic:
        problems.append(
            f"page magic {header.magic:#06x} is not PostgreSQL {major_version}'s {expected_magic:#06x}"
            + ("" if header.magic in WAL_MAGIC.values() else " (not a WAL segment, or damaged)")
        )
    elif expected_magic is None and header.magic not in WAL_MAGIC.values():
        problems.append(f"page magic {header.magic:#06x} is no known PostgreSQL WAL magic")
    if not header.info & XLP_LONG_HEADER:
        problems.append("the first page has no long header (XLP_LONG_HEADER not set)")
        return problems  # the rest of the long header is not there
    if header.pageaddr != start_lsn:
        problems.append(
            f"the first page is at {header.pageaddr >> 32:X}/{header.pageaddr & 0xFFFFFFFF:X}, "
            f"not at the segment's start {start_lsn >> 32:X}/{start_lsn & 0xFFFFFFFF:X}"
        )
    if header.tli > timeline:
        problems.append(f"page timeline {header.tli} is after the name's timeline {timeline}")
    if header.seg_size != segment_size:
        problems.append(f"segment size {header.seg_size} in the header, expected {segment_size}")
    if system_id is not None and header.sysid != system_id:
        problems.append(
            f"system identifier {header.sysid}, not the backup's {system_id}: WAL of another cluster"
        )
    return problems
