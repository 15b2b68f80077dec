"""Hostile tar archives served by a real S3 endpoint (moto) through the restore engine.

tests/barman_cloud/restore/test_safe_extraction.py covers every refusal on the filesystem store;
here the same kinds of members arrive over HTTP, through the S3 backend and the ranged parallel
downloads, plus a few shapes it does not build (long PAX names, links through links, hostile
members after megabytes of good data). Each is refused with the member and archive named, and
nothing is ever written outside DEST.
"""

from __future__ import annotations

import os
import tarfile
import uuid
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
from barman_cloud.storage.location import parse_destination
from barman_cloud.storage.options import S3Credentials, StoreOptions
from tests.badinput.conftest import tree
from tests.barman_cloud.catalog.synthetic import info, put_backup
from tests.barman_cloud.restore import tars
from tests.harness.object_stores import MotoS3

BACKUP = "20260101T000000"
MiB = 1024 * 1024


@pytest.fixture
async def s3(moto_s3: MotoS3) -> AsyncIterator[tuple[Store, ServerLayout]]:
    destination = f"s3://{moto_s3.bucket}/hostile-{uuid.uuid4().hex[:8]}"
    store = open_store(
        destination,
        S3Credentials(moto_s3.access_key, moto_s3.secret_key, region=moto_s3.region),
        StoreOptions(endpoint_url=moto_s3.endpoint),
    )
    yield store, ServerLayout(parse_destination(destination).prefix, "pg")
    await store.close()


HOSTILE = {
    "absolute path": ([tars.member("/tmp/bcp-hostile-s3", b"x")], "/tmp/bcp-hostile-s3", "absolute path"),
    "dot-dot": ([tars.member("../escaped", b"x")], "../escaped", "'..'"),
    "dot-dot after dot": ([tars.member("./base/../../escaped", b"x")], "./base/../../escaped", "'..'"),
    "long PAX name with dot-dot": (
        [tars.member("a/" * 60 + "../" * 61 + "escaped", b"x")],
        "a/" * 60 + "../" * 61 + "escaped",
        "'..'",
    ),
    "NUL in a PAX name": ([tars.member("a" * 120 + "\x00/../x", b"x")], "a" * 120 + "\x00/../x", "NUL"),
    "absolute symlink": ([tars.symlink("pg_tblspc", "/")], "pg_tblspc", "points outside"),
    "symlink up and out": ([tars.symlink("up", "..")], "up", "points outside"),
    "symlink to an absolute-looking relative path": (
        [tars.directory("a"), tars.symlink("a/etc", "../../../../etc")],
        "a/etc",
        "points outside",
    ),
    "file through a symlinked directory": (
        [tars.directory("real"), tars.symlink("global", "real"), tars.member("global/pg_control", b"x")],
        "global/pg_control",
        "nothing is written through links",
    ),
    "symlinks chained out": (
        [tars.directory("d"), tars.symlink("d/here", ".."), tars.symlink("out", "d/here/..")],
        "out",
        "resolves outside",
    ),
    "hard link out": ([tars.hardlink("shadow", "../../etc/shadow")], "shadow", "points outside"),
    "absolute hard link": ([tars.hardlink("passwd", "/etc/passwd")], "passwd", "points outside"),
    "hard link through a symlinked directory": (
        [
            tars.directory("real"),
            tars.member("real/f", b"x"),
            tars.symlink("link", "real"),
            tars.hardlink("h", "link/f"),
        ],
        "h",
        "nothing is written through links",
    ),
    "hard link to a symlink": (
        [tars.symlink("s", "PG_VERSION"), tars.hardlink("h", "s")],
        "h",
        "not a regular file",
    ),
    "character device": ([tars.member("dev-null", kind=tarfile.CHRTYPE)], "dev-null", "character device"),
    "block device": ([tars.member("dev-sda", kind=tarfile.BLKTYPE)], "dev-sda", "block device"),
    "fifo": ([tars.member("pipe", kind=tarfile.FIFOTYPE)], "pipe", "FIFO"),
    "GNU sparse-like unknown type": ([tars.member("odd", kind=b"V")], "odd", "type"),
}


def _check_nothing_outside(root: Path, destination: Path) -> None:
    assert sorted(p.name for p in root.iterdir()) == ["outside", "restore"]
    assert tree(root / "outside") == set()
    assert tree(root / "restore") <= {"data", *(f"data/{p}" for p in tree(destination))}
    for path in destination.rglob("*"):
        real = os.path.realpath(path)
        assert not path.is_symlink() or real == str(destination) or real.startswith(f"{destination}/")
    assert not Path("/tmp/bcp-hostile-s3").exists()


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
async def test_hostile_member_from_s3_is_refused(
    s3: tuple[Store, ServerLayout], tmp_path: Path, case: str
) -> None:
    store, layout = s3
    members, name, reason = HOSTILE[case]
    (tmp_path / "outside").mkdir()
    harmless = [tars.directory("."), tars.member("PG_VERSION", b"16\n")]
    archive = tars.build([*harmless, *members], compression.SNAPPY)
    await put_backup(store, layout, BACKUP, info(BACKUP), {"data.tar.snappy": archive})
    destination = tmp_path / "restore" / "data"

    with pytest.raises(UnsafeMember) as refused:
        await restore_backup(store, layout, BACKUP, destination)

    message = str(refused.value)
    assert repr(name) in message and reason in message, message
    assert f"{layout.backup_dir(BACKUP)}data.tar.snappy" in message
    _check_nothing_outside(tmp_path, destination)
    assert (destination / MARKER).exists()  # a retry will clean the attempt


async def test_hostile_member_after_megabytes_in_ranged_downloads(
    s3: tuple[Store, ServerLayout], tmp_path: Path
) -> None:
    """Several ranged GETs in flight, the bad member in the last part of the object."""
    store, layout = s3
    (tmp_path / "outside").mkdir()
    filler = os.urandom(3 * MiB)
    members = [
        tars.directory("."),
        tars.member("base/1/16384", filler),
        tars.member("base/1/16385", filler),
        tars.member("base/1/16386", filler),
        tars.member("../../outside/late", b"late"),
    ]
    archive = tars.build(members)
    assert len(archive) > 9 * MiB
    await put_backup(store, layout, BACKUP, info(BACKUP), {"data.tar": archive})
    destination = tmp_path / "restore" / "data"

    with pytest.raises(UnsafeMember, match=r"'\.\./\.\./outside/late'.*'\.\.' leaves the target"):
        await restore_backup(store, layout, BACKUP, destination, jobs=4)

    _check_nothing_outside(tmp_path, destination)
    # The retry after the archive is repaired cleans the attempt and completes.
    good = tars.build(members[:-1])
    await put_backup(store, layout, BACKUP, info(BACKUP), {"data.tar": good})
    result = await restore_backup(store, layout, BACKUP, destination, jobs=4)
    assert result.cleaned_previous_attempt
    assert (destination / "base/1/16386").read_bytes() == filler
    assert not (destination / MARKER).exists()
    _check_nothing_outside(tmp_path, destination)
