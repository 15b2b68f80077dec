"""restore_backup on the filesystem store and on S3 (moto): every archive and part extracted with
its compression, tablespaces relocated by name and linked, pg_wal recreated; a failed attempt is
cleaned by the next one (upstream #1100), a directory that is not ours is refused."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from barman_cloud.errors import FailedPrecondition, InvalidInput, NotFound
from barman_cloud.format import compression
from barman_cloud.format.compression import Codec
from barman_cloud.format.keys import ServerLayout
from barman_cloud.restore import restore_backup
from barman_cloud.restore.engine import MARKER
from barman_cloud.storage import Store
from tests.barman_cloud.catalog.synthetic import info, put_backup
from tests.barman_cloud.restore import tars

BACKUP = "20260101T000000"
CODECS = [None, compression.GZIP, compression.BZIP2, compression.SNAPPY, compression.LZ4]


def suffix(codec: Codec | None) -> str:
    return f".tar{codec.suffix if codec else ''}"


async def put_cluster(
    store: Store, layout: ServerLayout, backup_id: str, codec: Codec | None, big: bytes = b""
) -> dict[str, bytes]:
    """A small barman-like backup: data in two parts, one tablespace; returns the file contents."""
    files = {
        "PG_VERSION": b"15\n",
        "global/pg_control": os.urandom(8192),
        "base/1/1259": os.urandom(40000),
        "base/1/big": big,
        "backup_label": b"START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n",
    }
    part1 = tars.build(
        [
            tars.directory("."),
            tars.member("./PG_VERSION", files["PG_VERSION"]),
            tars.directory("global"),
            tars.directory("base"),
            tars.directory("base/1"),
            tars.member("base/1/1259", files["base/1/1259"]),
            tars.directory("pg_wal"),
            tars.directory("pg_tblspc"),
            tars.directory("log", mode=0o750),
            tars.symlink("conf-link", "PG_VERSION"),
        ],
        codec,
    )
    # The second part holds files whose directory entries are in the first part.
    part2 = tars.build(
        [
            tars.member("base/1/big", files["base/1/big"], mode=0o640),
            tars.member("global/pg_control", files["global/pg_control"]),
            tars.member("backup_label", files["backup_label"], mode=0o644),
        ],
        codec,
    )
    tablespace = tars.build(
        [tars.directory("PG_15_202209061"), tars.directory("PG_15_202209061/16384"),
         tars.member("PG_15_202209061/16384/16400", b"T" * 20000)],
        codec,
    )  # fmt: skip
    backup = info(backup_id, tablespaces=(("fast", 16385, "/nonexistent/original/location"),))
    await put_backup(
        store,
        layout,
        backup_id,
        backup,
        {
            f"data{suffix(codec)}": part1,
            f"data_0001{suffix(codec)}": part2,
            f"16385{suffix(codec)}": tablespace,
        },
    )
    return files


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name if c else "none")
async def test_restore_every_compression(
    store: tuple[Store, ServerLayout], codec: Codec | None, tmp_path: Path
) -> None:
    bucket, layout = store
    files = await put_cluster(bucket, layout, BACKUP, codec)
    destination = tmp_path / "pgdata"
    tablespace = tmp_path / "tablespaces" / "fast"

    result = await restore_backup(
        bucket, layout, BACKUP, destination, jobs=3, tablespace_map={"fast": tablespace}
    )

    for name, content in files.items():
        assert (destination / name).read_bytes() == content, name
    assert (destination / "conf-link").is_symlink() and os.readlink(destination / "conf-link") == "PG_VERSION"
    assert ((destination / "log").stat().st_mode & 0o777) == 0o750
    assert ((destination / "base/1/big").stat().st_mode & 0o777) == 0o640
    assert (destination / "pg_wal").is_dir()
    link = destination / "pg_tblspc" / "16385"
    assert link.is_symlink() and Path(os.readlink(link)) == tablespace
    assert (link / "PG_15_202209061/16384/16400").read_bytes() == b"T" * 20000
    assert not (destination / MARKER).exists() and not (tablespace / MARKER).exists()
    assert result.archives == 3 and result.tablespaces == {16385: tablespace}
    assert result.extracted_bytes == sum(len(c) for c in files.values()) + 20000
    assert not result.cleaned_previous_attempt


async def test_large_archive_with_ranged_parallel_downloads(
    store: tuple[Store, ServerLayout], tmp_path: Path
) -> None:
    bucket, layout = store
    big = random.Random(5).randbytes(20 * 1024 * 1024)  # noqa: S311 - test data, several 8 MiB ranges
    files = await put_cluster(bucket, layout, BACKUP, None, big=big)
    result = await restore_backup(
        bucket, layout, "latest", tmp_path / "pgdata", tablespace_map={"fast": tmp_path / "t"},
        ranged_min_size=8 * 1024 * 1024,
    )  # fmt: skip
    assert result.backup_id == BACKUP
    assert (tmp_path / "pgdata/base/1/big").read_bytes() == files["base/1/big"]
    assert result.downloaded_bytes > len(big)


async def test_a_failed_restore_is_cleaned_by_the_retry(
    store: tuple[Store, ServerLayout], tmp_path: Path
) -> None:
    bucket, layout = store
    files = await put_cluster(bucket, layout, BACKUP, compression.GZIP)
    tablespace_key = f"{layout.backup_dir(BACKUP)}16385.tar.gz"
    good_tablespace = b"".join([chunk async for chunk in bucket.get(tablespace_key)])
    await bucket.put(tablespace_key, good_tablespace[:-30])  # truncated: the first attempt fails
    destination = tmp_path / "pgdata"
    mapping = {"fast": tmp_path / "tbs"}

    with pytest.raises(InvalidInput, match=r"16385\.tar\.gz"):
        await restore_backup(bucket, layout, BACKUP, destination, tablespace_map=mapping)
    assert (destination / MARKER).exists() and (tmp_path / "tbs" / MARKER).exists()
    (destination / "leftover-from-the-failed-attempt").write_text("x")
    (tmp_path / "tbs" / "leftover").mkdir(exist_ok=True)

    await bucket.put(tablespace_key, good_tablespace)
    result = await restore_backup(bucket, layout, BACKUP, destination, tablespace_map=mapping)

    assert result.cleaned_previous_attempt
    assert not (destination / "leftover-from-the-failed-attempt").exists()
    assert not (tmp_path / "tbs" / "leftover").exists()
    assert (destination / "PG_VERSION").read_bytes() == files["PG_VERSION"]
    assert not (destination / MARKER).exists()


async def test_a_retry_with_another_tablespace_location_cleans_the_old_one(
    store: tuple[Store, ServerLayout], tmp_path: Path
) -> None:
    bucket, layout = store
    await put_cluster(bucket, layout, BACKUP, None)
    key = f"{layout.backup_dir(BACKUP)}data_0001.tar"
    good = b"".join([chunk async for chunk in bucket.get(key)])
    await bucket.put(key, b"not a tar archive at all" * 100)
    destination = tmp_path / "pgdata"
    with pytest.raises(InvalidInput):
        await restore_backup(bucket, layout, BACKUP, destination, tablespace_map={"fast": tmp_path / "old"})
    await bucket.put(key, good)
    await restore_backup(bucket, layout, BACKUP, destination, tablespace_map={"fast": tmp_path / "new"})
    assert list((tmp_path / "old").iterdir()) == []
    assert (tmp_path / "new" / "PG_15_202209061").is_dir()


async def test_directories_that_are_not_ours_are_refused(
    store: tuple[Store, ServerLayout], tmp_path: Path
) -> None:
    bucket, layout = store
    await put_cluster(bucket, layout, BACKUP, None)
    someone_else = tmp_path / "busy"
    someone_else.mkdir()
    (someone_else / "precious").write_text("keep me")
    with pytest.raises(FailedPrecondition, match="not left by an interrupted restore"):
        await restore_backup(bucket, layout, BACKUP, someone_else, tablespace_map={"fast": tmp_path / "t1"})
    assert [p.name for p in someone_else.iterdir()] == ["precious"]
    assert not (tmp_path / "t1").exists()

    # A busy tablespace target stops the restore before anything is written.
    (tmp_path / "t2").mkdir()
    (tmp_path / "t2" / "precious").write_text("keep me")
    with pytest.raises(FailedPrecondition, match="t2"):
        await restore_backup(
            bucket, layout, BACKUP, tmp_path / "fresh", tablespace_map={"fast": tmp_path / "t2"}
        )
    assert not (tmp_path / "fresh").exists()

    # A completed restore has no marker: it is never restored over.
    done = tmp_path / "done"
    await restore_backup(bucket, layout, BACKUP, done, tablespace_map={"fast": tmp_path / "t3"})
    with pytest.raises(FailedPrecondition):
        await restore_backup(bucket, layout, BACKUP, done, tablespace_map={"fast": tmp_path / "t4"})


async def test_what_cannot_be_restored(store: tuple[Store, ServerLayout], tmp_path: Path) -> None:
    bucket, layout = store
    with pytest.raises(NotFound, match="does not exist"):
        await restore_backup(bucket, layout, BACKUP, tmp_path / "a")
    await put_backup(bucket, layout, BACKUP, info(BACKUP, status="FAILED"))
    with pytest.raises(FailedPrecondition, match="status is FAILED"):
        await restore_backup(bucket, layout, BACKUP, tmp_path / "a")
    backup = info("20260102T000000", tablespaces=(("tbs", 16385, "/x"),))
    await put_backup(
        bucket, layout, "20260102T000000", backup, {"data.tar": tars.build([tars.directory(".")])}
    )
    with pytest.raises(NotFound, match=r"no archive for .*16385\.tar\*"):
        await restore_backup(bucket, layout, "20260102T000000", tmp_path / "a")
    with pytest.raises(InvalidInput, match="no tablespace named other"):
        await restore_backup(
            bucket, layout, "20260102T000000", tmp_path / "a", tablespace_map={"other": tmp_path}
        )
    assert not (tmp_path / "a").exists()
