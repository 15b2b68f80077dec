"""Hostile archives put in a store as a backup: every dangerous member is refused with an error
naming it, and nothing is ever written outside the restore targets."""

from __future__ import annotations

import os
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from barman_cloud.format import compression
from barman_cloud.format.keys import ServerLayout
from barman_cloud.restore import restore_backup
from barman_cloud.restore.engine import MARKER
from barman_cloud.restore.extract import UnsafeMember
from barman_cloud.storage import Store
from barman_cloud.storage.factory import open_store
from tests.barman_cloud.catalog.synthetic import info, put_backup
from tests.barman_cloud.restore import tars

BACKUP = "20260101T000000"
LAYOUT = ServerLayout("", "pg")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = open_store(f"file://{tmp_path / 'bucket'}")
    yield opened
    await opened.close()


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


HOSTILE = {
    "absolute path": ([tars.member("/tmp/bcp-evil", b"x")], "/tmp/bcp-evil", "absolute path"),
    "dot-dot": ([tars.member("../evil", b"x")], "../evil", "'..'"),
    "dot-dot deeper": ([tars.directory("a"), tars.member("a/../../evil", b"x")], "a/../../evil", "'..'"),
    "absolute symlink": ([tars.symlink("etc", "/etc")], "etc", "points outside"),
    "escaping symlink": (
        [tars.directory("a"), tars.symlink("a/up", "../../outside")],
        "a/up",
        "points outside",
    ),
    "write through a symlink": (
        [tars.directory("real"), tars.symlink("link", "real"), tars.member("link/file", b"x")],
        "link/file",
        "nothing is written through links",
    ),
    "symlink chain escaping on disk": (
        [tars.symlink("here", "."), tars.symlink("up", "here/..")],
        "up",
        "resolves outside",
    ),
    "absolute hard link": ([tars.hardlink("passwd", "/etc/passwd")], "passwd", "points outside"),
    "escaping hard link": ([tars.hardlink("h", "../outside/secret")], "h", "points outside"),
    "hard link to nothing": ([tars.hardlink("h", "missing")], "h", "not an earlier file"),
    "hard link to a directory": ([tars.directory("d"), tars.hardlink("h", "d")], "h", "not a regular file"),
    "character device": ([tars.member("null", kind=tarfile.CHRTYPE)], "null", "character device"),
    "block device": ([tars.member("sda", kind=tarfile.BLKTYPE)], "sda", "block device"),
    "fifo": ([tars.member("pipe", kind=tarfile.FIFOTYPE)], "pipe", "FIFO"),
    "file replacing a directory": ([tars.directory("d"), tars.member("d", b"x")], "d", "replace a directory"),
    "the restore marker": ([tars.member(MARKER, b"{}")], MARKER, "reserved"),
}


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
async def test_hostile_members_are_refused(store: Store, tmp_path: Path, case: str) -> None:
    members, name, reason = HOSTILE[case]
    outside = tmp_path / "outside"
    outside.mkdir()
    harmless = [tars.directory("."), tars.member("PG_VERSION", b"15\n", mode=0o600)]
    archive = tars.build([*harmless, *members], compression.GZIP)
    await put_backup(store, LAYOUT, BACKUP, info(BACKUP), {"data.tar.gz": archive})
    destination = tmp_path / "restore" / "data"

    with pytest.raises(UnsafeMember) as refused:
        await restore_backup(store, LAYOUT, BACKUP, destination)

    assert repr(name) in str(refused.value) and reason in str(refused.value)
    assert f"{LAYOUT.backup_dir(BACKUP)}data.tar.gz" in str(refused.value)
    assert tree(outside) == set()
    assert not Path("/tmp/bcp-evil").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bucket", "outside", "restore"]
    assert tree(tmp_path / "restore") <= {"data", *(f"data/{p}" for p in tree(destination))}
    # The failed attempt stays marked: a retry will clean it.
    assert (destination / MARKER).exists()
    for path in destination.rglob("*"):
        assert not path.is_symlink() or os.path.realpath(path).startswith(str(destination))


async def test_hostile_tablespace_archive_writes_nothing_outside(store: Store, tmp_path: Path) -> None:
    backup = info(BACKUP, tablespaces=(("tbs", 16385, str(tmp_path / "tbs")),))
    data = tars.build([tars.directory("."), tars.member("PG_VERSION", b"15\n")])
    hostile = tars.build(
        [tars.directory("PG_15_1"), tars.member("PG_15_1/../../escaped", b"x")], compression.LZ4
    )
    await put_backup(store, LAYOUT, BACKUP, backup, {"data.tar": data, "16385.tar.lz4": hostile})
    with pytest.raises(UnsafeMember, match=r"PG_15_1/\.\./\.\./escaped"):
        await restore_backup(store, LAYOUT, BACKUP, tmp_path / "data")
    assert not (tmp_path / "escaped").exists()
    assert tree(tmp_path / "tbs") <= {MARKER, "PG_15_1"}


async def test_corrupt_and_mislabelled_archives_are_clear_errors(store: Store, tmp_path: Path) -> None:
    from barman_cloud.errors import InvalidInput

    good = tars.build([tars.directory("."), tars.member("PG_VERSION", b"15\n")], compression.GZIP)
    await put_backup(store, LAYOUT, BACKUP, info(BACKUP), {"data.tar.gz": good[: len(good) // 2]})
    with pytest.raises(InvalidInput, match=r"data\.tar\.gz"):
        await restore_backup(store, LAYOUT, BACKUP, tmp_path / "a")
    await put_backup(store, LAYOUT, "20260102T000000", info("20260102T000000"), {"data.tar.bz2": good})
    with pytest.raises(InvalidInput, match=r"corrupt compressed data"):
        await restore_backup(store, LAYOUT, "20260102T000000", tmp_path / "b")
