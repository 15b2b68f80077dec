"""A real PostgreSQL archiving through our instance sidecar (the CNPG-I calls CloudNativePG's
instance manager makes), the sidecar talking to the store through the fault proxy.

Invariants: every segment PostgreSQL marked done (``archive_status/*.done``: archive_command
exited 0, that is WAL.Archive acknowledged it) is in the bucket, complete and byte-identical to
the file in ``pg_wal``; once the fault is gone PostgreSQL's own retries succeed
(``pg_stat_archiver`` reaches the last segment written); and the same after a kill -9 of the
sidecar in the middle of archiving ahead.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from barman_cloud.format.wal import WalName
from barman_cloud.wal.archive import read_object, variants
from tests.e2e.conftest import Sidecar, start_sidecar, store_manifest
from tests.faults import ledger
from tests.faults.conftest import STORES, Target
from tests.harness.fault_proxy import Fault, Rule
from tests.harness.postgres import PostgresServer, owned_by_postgres_tempdir

SEGMENTS = 5
# The sidecar's store: a stalled request is given up after this many seconds (read timeout).
TUNING = '    wal: {compression: gzip, maxParallel: 4, archiveAdditionalCommandArgs: ["--read-timeout=2"]}\n'
# The default run has the kill -9 scenario (stalled uploads); every fault class with --run-slow.
FAST: set[tuple[Fault, str]] = set()
UPLOAD = {"s3": ("PUT", None), "azure": ("PUT", None), "gcs": ("POST", r"^/upload/")}


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = owned_by_postgres_tempdir("bcp-faults-")
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=True)


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 240) -> None:
    """Poll until ``predicate`` holds; the deadline only turns a hang into a failure."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.2)


def archiver(server: PostgresServer) -> tuple[int, int, str | None]:
    archived, failed, last = server.query(
        "SELECT archived_count, failed_count, last_archived_wal FROM pg_stat_archiver"
    )[0]
    return int(archived), int(failed), last


def write_segments(server: PostgresServer, count: int) -> list[str]:
    """``count`` segments, each with rows in it, switched out: PostgreSQL marks each ``.ready``."""
    names = []
    for _ in range(count):
        server.query("INSERT INTO t SELECT generate_series(1, 2000)")
        names.append(server.query("SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0])
        server.query("SELECT pg_switch_wal()")
    return names


def archived_through(server: PostgresServer, name: str) -> bool:
    last = archiver(server)[2]
    return bool(last and last >= name)


def acknowledged(server: PostgresServer) -> list[str]:
    """Files archive_command reported archived (PostgreSQL renamed their .ready to .done)."""
    status = server.pg_wal / "archive_status"
    return sorted(p.name[: -len(".done")] for p in status.glob("*.done"))


async def not_in_bucket(target: Target, server: PostgresServer, names: list[str]) -> list[str]:
    store = target.store(via_proxy=False)
    missing = []
    for name in names:
        found = await variants(store, target.layout, WalName.parse(name))
        local = (server.pg_wal / name).read_bytes()
        if len(found) != 1 or await read_object(store, *next(iter(found.items()))) != local:
            missing.append(name)
    return missing


def sidecar_for(workdir: Path, target: Target, server: PostgresServer) -> Sidecar:
    manifest = store_manifest(workdir, target.manifest(extra=TUNING))
    return start_sidecar(workdir, manifest, postgres_conninfo=server.conninfo)


def kill_9(sidecar: Sidecar) -> None:
    """SIGKILL the sidecar (its process group: runuser and the Python process under it)."""
    os.killpg(sidecar.process.process.pid, signal.SIGKILL)
    sidecar.process.process.wait()


@pytest.mark.parametrize(
    ("fault", "store"),
    [pytest.param(f, s, marks=() if (f, s) in FAST else pytest.mark.slow) for f in Fault for s in STORES],
)
async def test_postgres_archives_through_faults(
    fault: Fault,
    store: str,
    target: Target,
    workdir: Path,
    postgres_factory: Callable[..., PostgresServer],
) -> None:
    server = postgres_factory(15)
    sidecar = sidecar_for(workdir, target, server)
    try:
        server.set(archive_command=sidecar.archive_command())
        server.query("CREATE TABLE t (n int)")
        seed = zlib.crc32(f"pg/{fault.name}/{store}".encode())
        budget = 4 if fault in (Fault.STALL, Fault.STALL_RESPONSE) else 10
        with target.proxy.faults(Rule(fault, first=1, probability=0.4, seed=seed, times=budget)) as (active,):
            names = write_segments(server, SEGMENTS)
            wait_for(
                lambda: active.exhausted or archived_through(server, names[-1]),
                "the fault budget spent, or every segment archived",
            )
        # The fault is gone: PostgreSQL retries by itself (a new segment wakes its archiver).
        names += write_segments(server, 1)
        wait_for(lambda: archived_through(server, names[-1]), f"PostgreSQL archives up to {names[-1]}")
        _, failed, _ = archiver(server)
        done = acknowledged(server)
        missing = await not_in_bucket(target, server, done)
        ledger.record(
            "PostgreSQL archive_command via sidecar", fault.value, store, injected=active.injected,
            attempted=len(names), acknowledged=len([n for n in names if n in done]), missing=len(missing),
            # PostgreSQL retries a failed segment until it is archived, in order: all of them were.
            failed=failed, recovered=failed,
        )  # fmt: skip
        assert active.injected > 0
        assert set(names) <= set(done)
        assert missing == [], f"acknowledged to PostgreSQL but not in the bucket byte for byte: {missing}"
    finally:
        sidecar.process.stop()


@pytest.mark.parametrize(
    "store", [pytest.param(s, marks=() if s == "s3" else pytest.mark.slow) for s in STORES]
)
async def test_kill_9_of_the_sidecar_while_archiving_ahead(
    store: str, target: Target, workdir: Path, postgres_factory: Callable[..., PostgresServer]
) -> None:
    """Uploads of the requested segment and of the ones pushed ahead hang; the sidecar is killed;
    a new one starts on the same spool (its archive markers) and PostgreSQL carries on."""
    server = postgres_factory(15)
    sidecar = sidecar_for(workdir, target, server)
    server.query("CREATE TABLE t (n int)")
    method, path = UPLOAD[store]
    stall = Rule(Fault.STALL, method=method, path=path, times=None)
    restarted: Sidecar | None = None
    try:
        with target.proxy.faults(stall):
            # Segments first, then the archive_command: the queue finds them all .ready at once.
            names = write_segments(server, SEGMENTS)
            server.set(archive_command=sidecar.archive_command())

            # Two uploads hanging at once: the one PostgreSQL asked for and at least one ahead.
            wait_for(lambda: target.proxy.held >= 2, "the requested segment and one ahead uploading")
            kill_9(sidecar)
            stalled = stall.injected
        restarted = sidecar_for(workdir, target, server)
        names += write_segments(server, 1)
        wait_for(lambda: archived_through(server, names[-1]), f"PostgreSQL archives up to {names[-1]}")
        _, failed, _ = archiver(server)
        done = acknowledged(server)
        missing = await not_in_bucket(target, server, done)
        ledger.record(
            "kill -9 of the sidecar during archive-ahead", "stalled uploads + kill -9", store,
            injected=stalled + 1, attempted=len(names), acknowledged=len([n for n in names if n in done]),
            missing=len(missing), failed=failed, recovered=failed,
        )  # fmt: skip
        assert set(names) <= set(done)
        assert missing == [], f"acknowledged to PostgreSQL but not in the bucket byte for byte: {missing}"
    finally:
        sidecar.process.stop()
        if restarted is not None:
            restarted.process.stop()
