"""PostgreSQL's archive_command and restore_command through the instance sidecar, exactly as the
CloudNativePG instance manager drives them (handshake, then WAL.Archive / WAL.Restore)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from tests.e2e.conftest import Sidecar, store_manifest
from tests.harness.object_stores import local_store_manifest
from tests.harness.postgres import PostgresServer


def wait_archived(server: PostgresServer, wal: str, timeout: float = 90) -> tuple[int, int]:
    deadline = time.monotonic() + timeout
    while True:
        archived, failed, last = server.query(
            "SELECT archived_count, failed_count, last_archived_wal FROM pg_stat_archiver"
        )[0]
        if last and last >= wal:
            return archived, failed
        assert time.monotonic() < deadline, f"{wal} not archived: {archived} archived, {failed} failed"
        time.sleep(0.1)


def test_archive_and_restore_through_cnpg_i(
    postgres_factory: Callable[..., PostgresServer],
    sidecar_factory: Callable[..., Sidecar],
    e2e_workdir: Path,
) -> None:
    manifest = store_manifest(
        e2e_workdir, local_store_manifest(e2e_workdir / "bucket", wal="compression: lz4, maxParallel: 4")
    )
    sidecar = sidecar_factory(manifest)
    server = postgres_factory(15)
    server.set(archive_command=sidecar.archive_command())
    server.query("CREATE TABLE t (n int)")
    names = []
    for _ in range(6):
        server.query("INSERT INTO t SELECT generate_series(1, 5000)")
        names.append(server.query("SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0])
        server.query("SELECT pg_switch_wal()")
    archived, failed = wait_archived(server, names[-1])
    assert failed == 0 and archived >= len(set(names))
    stored = {p.name for p in (e2e_workdir / "bucket/pg/wals").rglob("*.lz4")}
    assert {f"{n}.lz4" for n in names} <= stored

    for name in names[:3]:
        result = sidecar.manager("wal-restore", name, str(e2e_workdir / "RECOVERYXLOG"))
        assert result.returncode == 0, result.stderr
        assert (e2e_workdir / "RECOVERYXLOG").read_bytes() == (server.pg_wal / name).read_bytes()
    missing = sidecar.manager("wal-restore", "0000000100000000000000FF", str(e2e_workdir / "X"))
    assert missing.returncode == 1 and "code = 5" in missing.stderr  # NOT_FOUND


def test_a_corrupt_segment_makes_the_restore_command_exit_255_and_write_nothing(
    postgres_factory: Callable[..., PostgresServer],
    sidecar_factory: Callable[..., Sidecar],
    e2e_workdir: Path,
) -> None:
    """A stored segment whose bytes no longer match its recorded checksum is DATA_LOSS over
    CNPG-I, and the restore_command exits 255: above 125, PostgreSQL aborts the recovery instead
    of taking the segment for "not archived" (exit 1) and ending the recovery early there."""
    manifest = store_manifest(e2e_workdir, local_store_manifest(e2e_workdir / "bucket"))
    sidecar = sidecar_factory(manifest)
    server = postgres_factory(15)
    server.set(archive_command=sidecar.archive_command())
    server.query("CREATE TABLE t (n int)")
    server.query("INSERT INTO t SELECT generate_series(1, 5000)")
    name = server.query("SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0]
    server.query("SELECT pg_switch_wal()")
    wait_archived(server, name)
    [stored] = (e2e_workdir / "bucket/pg/wals").rglob(f"{name}.lz4")
    body = bytearray(stored.read_bytes())
    body[len(body) // 2] ^= 0x01  # one bit, as a storage fault would
    stored.write_bytes(bytes(body))  # in place: the recorded checksum stays

    destination = e2e_workdir / "RECOVERYXLOG-corrupt"
    result = sidecar.manager("wal-restore", name, str(destination))
    assert result.returncode == 255, (result.returncode, result.stderr)
    assert "code = 15" in result.stderr and "corrupt" in result.stderr  # DATA_LOSS
    assert not destination.exists()
