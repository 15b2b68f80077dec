"""backup.info read and written byte for byte as barman 3.19 does."""

from __future__ import annotations

import contextlib
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from barman_cloud.errors import InvalidInput
from barman_cloud.format.backup_info import FIELD_NAMES, BackupInfo, format_backup_info, parse_backup_info

# barman-cloud-format.md 2.5: written by barman 3.17 for an object-store backup.
BARMAN_EXAMPLE = (Path(__file__).parents[2] / "data/barman/backup.info").read_bytes()


def test_barman_example_round_trips_byte_identical() -> None:
    info = parse_backup_info(BARMAN_EXAMPLE)
    assert info.status == "DONE" and info.backup_name == "nightly"
    assert info.begin_time is not None and info.begin_time.utcoffset() == timedelta(hours=2)
    assert info.begin_time.microsecond == 123456
    assert info.tablespaces == (("tbs1", 16385, "/var/lib/postgresql/tbs1"),)
    assert info.backup_label is not None and info.backup_label.startswith("START WAL LOCATION: 0/9000028")
    assert info.copy_stats is not None and info.copy_stats["number_of_workers"] == 2
    assert (info.timeline, info.version, info.systemid) == (1, 160002, "7312345678901234567")
    assert format_backup_info(info) == BARMAN_EXAMPLE


def test_writer_emits_exactly_barmans_keys() -> None:
    assert len(FIELD_NAMES) == 35
    text = format_backup_info(BackupInfo(status="STARTED")).decode()
    keys = [line.split("=", 1)[0] for line in text.splitlines()]
    assert keys == sorted(keys)
    assert len(keys) == 33  # backup_name and snapshots_info are omitted when null
    assert "backup_id" not in keys and "server_name=cloud" in text.splitlines()


def test_unknown_keys_are_tolerated_and_not_written_back() -> None:
    info = parse_backup_info(BARMAN_EXAMPLE + b"future_field=42\n")
    assert info.unknown == {"future_field": "42"}
    assert b"future_field" not in format_backup_info(info)


def test_reader_tolerates_what_barman_tolerates() -> None:
    text = (
        b"# comment\n\n  status = FAILED  \nerror=failure uploading data (boom)\n"
        b"begin_time=2024-05-06 07:08:09\n"
    )
    info = parse_backup_info(text)
    assert info.status == "FAILED" and info.error == "failure uploading data (boom)"
    assert info.begin_time is not None and info.begin_time.tzinfo is not None  # local zone attached


def test_empty_literals_are_written_as_none() -> None:
    text = format_backup_info(BackupInfo(status="DONE", tablespaces=(), included_files=())).decode()
    assert "tablespaces=None\n" in text and "included_files=None\n" in text


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"status DONE", "line 1 is not key=value"),
        (b"timeline=one", "invalid value for timeline"),
        (b"tablespaces=[('a', 'x', '/p')]", "invalid value for tablespaces"),
        (b"tablespaces=__import__('os')", "invalid value for tablespaces"),
        (b"status=BROKEN", "unknown status"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_garbled_backup_info_is_refused_with_the_reason(line: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_backup_info(line, where="s3://b/pg/base/20240506T070809/backup.info")


@given(st.binary(max_size=400))
def test_any_bytes_parse_or_fail_cleanly(data: bytes) -> None:
    with contextlib.suppress(InvalidInput):
        parse_backup_info(data)


@given(
    st.builds(
        BackupInfo,
        backup_name=st.none()
        | st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1)
        .map(str.strip)
        .filter(bool)
        .filter(lambda s: s != "None"),
        begin_offset=st.none() | st.integers(0, 2**31),
        begin_time=st.none() | st.datetimes(timezones=st.just(UTC)),
        tablespaces=st.none()
        | st.lists(
            st.tuples(st.text(min_size=1), st.integers(1, 2**32), st.text(min_size=1)), min_size=1
        ).map(tuple),
        backup_label=st.none() | st.text(min_size=1),
        status=st.sampled_from(["STARTED", "DONE", "FAILED"]),
        timeline=st.none() | st.integers(1, 2**31),
    )
)
def test_what_we_write_we_read_back(info: BackupInfo) -> None:
    assert parse_backup_info(format_backup_info(info)) == info
