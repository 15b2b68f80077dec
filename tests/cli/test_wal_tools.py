"""`wal-archive`, `wal-restore` and `check-wal-archive` as PostgreSQL and people run them."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness.object_stores import local_store_manifest
from tests.harness.postgres import PostgresServer, as_postgres, owned_by_postgres_tempdir

CLI = str(Path(sys.executable).with_name("barman-cloud-plugin"))


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = owned_by_postgres_tempdir("bcp-waltools-")
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=True)


def write_store(workdir: Path, compression: str = "lz4") -> Path:
    manifest = workdir / "store.yaml"
    manifest.write_text(
        local_store_manifest(workdir / "bucket", wal=f"compression: {compression}, maxParallel: 4")
    )
    manifest.chmod(0o644)
    return manifest


def cli(*args: str, user_postgres: bool = False) -> subprocess.CompletedProcess[str]:
    command = [CLI, *args]
    return subprocess.run(
        as_postgres(command) if user_postgres else command,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_postgres_archives_through_our_archive_command(
    postgres_factory: Callable[..., PostgresServer], workdir: Path
) -> None:
    manifest = write_store(workdir)
    server = postgres_factory(15)
    server.set(archive_command=f"{CLI} wal-archive -f {manifest} --server-name pg %p")
    server.query("CREATE TABLE t (n int)")
    for _ in range(3):
        server.query("INSERT INTO t SELECT generate_series(1, 20000)")
        server.query("SELECT pg_switch_wal()")
    last = server.query("SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0]
    server.query("INSERT INTO t VALUES (1)")
    server.query("SELECT pg_switch_wal()")
    deadline = time.monotonic() + 60
    while True:
        archived, failed, last_archived = server.query(
            "SELECT archived_count, failed_count, last_archived_wal FROM pg_stat_archiver"
        )[0]
        if last_archived and last_archived >= last:
            break
        assert time.monotonic() < deadline, f"archived {archived}, failed {failed}"
        time.sleep(0.2)
    assert failed == 0
    objects = sorted(p.name for p in (workdir / "bucket/pg/wals").rglob("*.lz4"))
    assert len(objects) >= 3 and f"{last}.lz4" in objects

    restored = workdir / "restored"
    result = cli("wal-restore", "-f", str(manifest), "--server-name", "pg", last, str(restored))
    assert result.returncode == 0, result.stderr
    assert restored.read_bytes() == (server.pg_wal / last).read_bytes()


def test_exit_codes_for_restore_command(workdir: Path) -> None:
    manifest = write_store(workdir)
    segment = workdir / "000000010000000000000001"
    segment.write_bytes(b"\x01" * 1024 * 1024)
    assert cli("wal-archive", "-f", str(manifest), "--server-name", "pg", str(segment)).returncode == 0
    missing = cli(
        "wal-restore", "-f", str(manifest), "--server-name", "pg", "000000010000000000000009", "/tmp/x"
    )
    assert missing.returncode == 1 and "is not in the archive" in missing.stderr
    bad = cli("wal-restore", "-f", str(manifest), "--server-name", "pg", "../etc/passwd", str(workdir / "x"))
    assert bad.returncode == 3 and "is not a WAL file name" in bad.stderr
    no_store = cli("wal-restore", "--server-name", "pg", "000000010000000000000001", str(workdir / "x"))
    assert no_store.returncode == 3 and "use -f FILE" in no_store.stderr


def test_restore_with_prefetch_fills_the_spool(workdir: Path) -> None:
    manifest = write_store(workdir, compression="gzip")
    names = [f"0000000100000000000000{n:02X}" for n in range(1, 5)]
    for name in names:
        (workdir / name).write_bytes(name.encode() * 1000)
    assert (
        cli(
            "wal-archive", "-f", str(manifest), "--server-name", "pg", *(str(workdir / n) for n in names)
        ).returncode
        == 0
    )
    spool = workdir / "spool"
    source = ["-f", str(manifest), "--server-name", "pg"]
    result = cli(
        "wal-restore", *source, "--parallel", "2", "--spool-dir", str(spool), names[0], str(workdir / "R")
    )
    assert result.returncode == 0, result.stderr
    spooled = sorted(p.name for p in spool.rglob("0*") if p.is_file())  # not the spool's hashed subdirectory
    assert spooled == names[1:3]


def test_check_wal_archive(workdir: Path) -> None:
    manifest = write_store(workdir)
    assert cli("check-wal-archive", "-f", str(manifest), "--server-name", "pg").returncode == 0
    segment = workdir / "000000030000000000000001"
    segment.write_bytes(b"x")
    assert cli("wal-archive", "-f", str(manifest), "--server-name", "pg", str(segment)).returncode == 0
    busy = cli("check-wal-archive", "-f", str(manifest), "--server-name", "pg")
    assert busy.returncode == 1 and "is not empty" in busy.stderr
    assert (
        cli("check-wal-archive", "-f", str(manifest), "--server-name", "pg", "--timeline", "4").returncode
        == 0
    )
