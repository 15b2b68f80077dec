"""backup.info files that are not what barman writes, read from a real store by the catalog and
the restore engine: unknown keys are tolerated, anything else is an error that names the backup
(its backup.info key) and the key at fault, and a restore writes nothing."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from barman_cloud.catalog.listing import load_catalog
from barman_cloud.errors import FailedPrecondition, InvalidInput, NotFound
from barman_cloud.format import compression
from barman_cloud.format.backup_info import format_backup_info
from barman_cloud.format.keys import ServerLayout
from barman_cloud.restore import restore_backup
from barman_cloud.storage import Store
from barman_cloud.storage.factory import open_store
from tests.barman_cloud.catalog.synthetic import info
from tests.barman_cloud.restore import tars

BACKUP = "20260101T000000"
LAYOUT = ServerLayout("", "pg")
GOOD = format_backup_info(info(BACKUP))
KEY = LAYOUT.backup_info(BACKUP)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = open_store(f"file://{tmp_path / 'bucket'}")
    data = tars.build([tars.directory("."), tars.member("PG_VERSION", b"16\n")], compression.GZIP)
    await opened.put(f"{LAYOUT.backup_dir(BACKUP)}data.tar.gz", data)
    yield opened
    await opened.close()


def _replace(text: bytes, key: str, line: bytes | None) -> bytes:
    """``text`` with the line of ``key`` replaced by ``line`` (None: removed)."""
    lines = [raw for raw in text.splitlines(keepends=True) if not raw.startswith(f"{key}=".encode())]
    return b"".join(lines) + (line + b"\n" if line is not None else b"")


async def test_unknown_keys_are_tolerated(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    await store.put(KEY, GOOD + b"future_field=42\nx-vendor.note=hello = world\n")
    with caplog.at_level(logging.WARNING, "barman_cloud.format.backup_info"):
        catalog = await load_catalog(store, LAYOUT)
        result = await restore_backup(store, LAYOUT, BACKUP, tmp_path / "data")
    assert catalog.ids == [BACKUP] and not catalog.unreadable
    assert catalog.get(BACKUP).info.unknown == {"future_field": "42", "x-vendor.note": "hello = world"}
    assert (result.destination / "PG_VERSION").read_bytes() == b"16\n"
    warned = [
        r for r in caplog.records if r.getMessage() == "backup.info has fields this version does not know"
    ]
    assert warned and warned[0].__dict__["fields"] == ["future_field", "x-vendor.note"]
    assert warned[0].__dict__["where"] == KEY


GARBLED = {
    "no equals sign": (GOOD + b"status DONE\n", "is not key=value: 'status DONE'"),
    "int is a word": (
        _replace(GOOD, "timeline", b"timeline=one"),
        "invalid value for timeline (ValueError): 'one'",
    ),
    "int is a float": (_replace(GOOD, "size", b"size=1.5"), "invalid value for size (ValueError): '1.5'"),
    "time is a word": (
        _replace(GOOD, "end_time", b"end_time=yesterday"),
        "invalid value for end_time (ValueError): 'yesterday'",
    ),
    "time out of range": (
        _replace(GOOD, "begin_time", b"begin_time=0001-01-01 00:00:00"),
        "invalid value for begin_time",
    ),
    "tablespaces a string": (
        _replace(GOOD, "tablespaces", b"tablespaces='tbs1'"),
        "invalid value for tablespaces (ValueError)",
    ),
    "tablespace oid a word": (
        _replace(GOOD, "tablespaces", b"tablespaces=[('tbs1', 'oid', '/t')]"),
        "invalid value for tablespaces (ValueError)",
    ),
    "tablespace oid infinite": (
        _replace(GOOD, "tablespaces", b"tablespaces=[('tbs1', 1e999, '/t')]"),
        "invalid value for tablespaces (OverflowError)",
    ),
    "tablespace short": (
        _replace(GOOD, "tablespaces", b"tablespaces=[('tbs1', 16385)]"),
        "invalid value for tablespaces (ValueError)",
    ),
    "copy_stats a list": (
        _replace(GOOD, "copy_stats", b"copy_stats=[1, 2]"),
        "invalid value for copy_stats (ValueError)",
    ),
    "included_files a dict": (
        _replace(GOOD, "included_files", b"included_files={'a': 1}"),
        "invalid value for included_files (ValueError)",
    ),
    "code instead of a literal": (
        _replace(GOOD, "backup_label", b"backup_label=open('/etc/passwd').read()"),
        "invalid value for backup_label (ValueError)",
    ),
    "nesting bomb": (
        _replace(GOOD, "copy_stats", b"copy_stats=" + b"[" * 100000 + b"]" * 100000),
        "invalid value for copy_stats",
    ),
    "unknown status": (
        _replace(GOOD, "status", b"status=done"),
        "unknown status 'done': one of EMPTY, STARTED",
    ),
    "not UTF-8": (GOOD + b"error=\xff\xfe\n", "is not UTF-8 text"),
}


@pytest.mark.parametrize("case", list(GARBLED), ids=list(GARBLED))
async def test_garbled_backup_info_names_the_backup_and_the_key(
    store: Store, tmp_path: Path, case: str
) -> None:
    text, message = GARBLED[case]
    await store.put(KEY, text)
    destination = tmp_path / "data"

    with pytest.raises(InvalidInput) as refused:
        await restore_backup(store, LAYOUT, BACKUP, destination)
    assert str(refused.value).startswith(KEY), str(refused.value)[:300]
    assert message in str(refused.value), str(refused.value)[:300]
    assert len(str(refused.value)) < 1000  # the value is quoted, not the file
    assert not destination.exists()

    catalog = await load_catalog(store, LAYOUT)
    assert catalog.ids == []
    ((unreadable),) = catalog.unreadable
    assert unreadable.backup_id == BACKUP and message in unreadable.reason


MISSING = {
    "end_time": (_replace(GOOD, "end_time", None), "its backup.info has status DONE but no end_time"),
    "begin_time": (
        _replace(GOOD, "begin_time", b"begin_time=None"),
        "its backup.info has status DONE but no begin_time",
    ),
    "both times": (
        _replace(_replace(GOOD, "begin_time", None), "end_time", None),
        "its backup.info has status DONE but no begin_time and no end_time",
    ),
    "status": (_replace(GOOD, "status", None), "its status is EMPTY"),
}


@pytest.mark.parametrize("case", list(MISSING), ids=list(MISSING))
async def test_missing_required_keys_are_named(store: Store, tmp_path: Path, case: str) -> None:
    text, message = MISSING[case]
    await store.put(KEY, text)
    destination = tmp_path / "data"
    with pytest.raises(FailedPrecondition) as refused:
        await restore_backup(store, LAYOUT, BACKUP, destination)
    assert f"backup {BACKUP} cannot be restored: {message}" in str(refused.value)
    assert refused.value.hint is not None  # what to do
    with pytest.raises(NotFound, match="no completed backup ends before the recovery target"):
        await restore_backup(store, LAYOUT, "latest", destination)
    assert not destination.exists()
    # Listed (barman lists it too), but never chosen automatically.
    assert (await load_catalog(store, LAYOUT)).ids == [BACKUP]
