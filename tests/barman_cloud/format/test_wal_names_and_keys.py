from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from barman_cloud.errors import InvalidInput
from barman_cloud.format import compression
from barman_cloud.format.backup_id import check_backup_name, is_backup_id, new_backup_id
from barman_cloud.format.keys import ServerLayout
from barman_cloud.format.wal import (
    WalKind,
    WalName,
    format_lsn,
    next_segment,
    parse_lsn,
    segment_name,
    wal_file_for_lsn,
)

MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("name", "kind", "timeline", "hash_dir"),
    [
        ("000000010000000000000002", WalKind.SEGMENT, 1, "0000000100000000"),
        ("0000000200000001000000FF.partial", WalKind.PARTIAL, 2, "0000000200000001"),
        ("000000010000000000000002.00000028.backup", WalKind.BACKUP, 1, "0000000100000000"),
        ("00000002.history", WalKind.HISTORY, 2, ""),
        ("0000000a0000000b0000000c", WalKind.SEGMENT, 10, "0000000A0000000B"),
    ],
)
def test_wal_names(name: str, kind: WalKind, timeline: int, hash_dir: str) -> None:
    wal = WalName.parse(name)
    assert (wal.kind, wal.timeline, wal.hash_dir) == (kind, timeline, hash_dir)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "../000000010000000000000002",
        "00000001000000000000000",
        "000000010000000000000002/",
        "x" * 24,
        "000000010000000000000002\x00",
        "000000010000000000000002.gz",
        "00000001.history.partial",
        "RECOVERYXLOG",
    ],
)
def test_bad_wal_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="is not a WAL file name"):
        WalName.parse(name)


@given(st.text(max_size=60))
def test_wal_name_parser_never_crashes(text: str) -> None:
    try:
        wal = WalName.parse(text)
    except InvalidInput:
        return
    assert "/" not in wal.name and "\x00" not in wal.name


@pytest.mark.parametrize(
    ("size", "name", "following"),
    [
        (16 * MiB, "0000000100000000000000FE", "0000000100000000000000FF"),
        (16 * MiB, "0000000100000000000000FF", "000000010000000100000000"),
        (1 * MiB, "000000010000000000000FFF", "000000010000000100000000"),
        (1024 * MiB, "000000010000000000000003", "000000010000000100000000"),
        (64 * MiB, "00000003000000020000003F", "000000030000000300000000"),
    ],
)
def test_next_segment_for_any_segment_size(size: int, name: str, following: str) -> None:
    assert next_segment(name, size) == following


def test_lsn_arithmetic() -> None:
    assert parse_lsn("0/9000028") == 0x9000028
    assert parse_lsn("31/B0000028") == (0x31 << 32) | 0xB0000028
    assert format_lsn(parse_lsn("31/B0000028")) == "31/B0000028"
    assert wal_file_for_lsn(1, parse_lsn("0/9000028"), 16 * MiB) == "000000010000000000000009"
    assert wal_file_for_lsn(1, parse_lsn("0/A000000"), 16 * MiB) == "00000001000000000000000A"  # no minus one
    assert segment_name(2, 0x100 + 3, 16 * MiB) == "000000020000000100000003"
    with pytest.raises(InvalidInput):
        parse_lsn("0-9000028")


def test_keys_follow_barmans_layout() -> None:
    layout = ServerLayout("prefix/dir", "pg1")
    seg = WalName.parse("000000010000000000000002")
    assert (
        layout.wal(seg, compression.GZIP)
        == "prefix/dir/pg1/wals/0000000100000000/000000010000000000000002.gz"
    )
    assert (
        layout.wal(WalName.parse("00000002.history"), compression.XZ)
        == "prefix/dir/pg1/wals/00000002.history.xz"
    )
    assert layout.backup_info("20261124T060327") == "prefix/dir/pg1/base/20261124T060327/backup.info"
    assert layout.archive("20261124T060327", "data", 0, compression.SNAPPY).endswith("/data.tar.snappy")
    assert layout.archive("20261124T060327", "data", 1, compression.SNAPPY).endswith("/data_0001.tar.snappy")
    assert layout.archive("20261124T060327", "16385", 0, None).endswith("/16385.tar")
    assert ServerLayout("", "pg1").wals == "pg1/wals/"
    trailing = ServerLayout("p/", "pg1")
    assert trailing.backup_info("X") == "p/pg1/base/X/backup.info"
    assert trailing.keep_annotation_keys("X") == [
        "p/pg1/base/X/annotations/keep",
        "p//pg1/base/X/annotations/keep",
    ]


def test_wal_keys_parse_back() -> None:
    layout = ServerLayout("p", "pg")
    for name in ("000000010000000000000002", "00000003.history", "000000010000000000000002.partial"):
        for codec in (None, *compression.WAL_CODECS):
            wal = WalName.parse(name)
            assert layout.parse_wal_key(layout.wal(wal, codec)) == (wal, codec)
    assert layout.parse_wal_key("p/pg/wals/0000000100000000/garbage") is None
    assert layout.parse_wal_key("p/pg/wals/0000000200000000/000000010000000000000002") is None  # wrong dir


@pytest.mark.parametrize("bad", ["", "a/b", "..", " pg"])
def test_server_names_are_checked(bad: str) -> None:
    with pytest.raises(InvalidInput, match="invalid server name"):
        ServerLayout("", bad)


def test_backup_ids_and_names() -> None:
    assert is_backup_id(new_backup_id())
    assert not is_backup_id("20240506T0708091")
    for reserved in ("latest", "20240506T070809", "auto"):
        with pytest.raises(InvalidInput):
            check_backup_name(reserved)
    assert check_backup_name("nightly") == "nightly"


@pytest.mark.parametrize("codec", compression.WAL_CODECS, ids=lambda c: c.name)
def test_codecs_round_trip_with_barmans_magic(codec: compression.Codec) -> None:
    data = bytes(range(256)) * 4096 + b"tail"
    packed = codec.compress(data)
    assert packed.startswith(codec.magic)
    assert codec.decompress(packed) == data
    # Streaming, in uneven pieces, as the backup and restore pipelines use them.
    reader = codec.decompressor()
    out = (
        b"".join(reader.decompress(packed[i : i + 777]) for i in range(0, len(packed), 777)) + reader.flush()
    )
    assert out == data


@pytest.mark.parametrize(
    "codec", [c for c in compression.WAL_CODECS if c is not compression.SNAPPY], ids=lambda c: c.name
)
def test_truncated_streams_are_detected(codec: compression.Codec) -> None:
    packed = codec.compress(bytes(range(256)) * 4096)
    with pytest.raises(InvalidInput, match="truncated"):
        codec.decompress(packed[: len(packed) // 2])


def test_levels() -> None:
    assert compression.parse_level(compression.GZIP, None) == 6
    assert compression.parse_level(compression.GZIP, "high") == 9
    assert compression.parse_level(compression.ZSTD, 99) == 22
    assert compression.split_suffix("000000010000000000000002.zst") == (
        "000000010000000000000002",
        compression.ZSTD,
    )
