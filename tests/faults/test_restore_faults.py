"""Restores under faults, a kill -9 of the restore sidecar in the middle of one, and a full disk
on the restore target.

Invariants: a restore that reported success gives a data directory PostgreSQL starts on with
every row; a restore that failed (store fault, killed sidecar, full disk) succeeds when retried
on the same directory once the fault is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from grpclib.client import Channel

from barman_cloud.backup.backup import BackupSettings, take_backup
from barman_cloud.errors import BarmanCloudError
from barman_cloud.restore.engine import restore_backup
from plugin_grpc.cnpg_caller import handshake
from plugin_grpc.metadata import PLUGIN_NAME
from plugin_grpc.proto import restore_job_grpc, restore_job_pb2
from tests.e2e.conftest import Sidecar, start_sidecar, store_manifest
from tests.faults import ledger
from tests.faults.backups import (
    ROWS,
    archiving_postgres,
    empty_data_directory,
    start_recovered,
    wait_for,
)
from tests.faults.conftest import STORES, Target
from tests.harness.fault_proxy import Fault, Rule
from tests.harness.postgres import PostgresServer, owned_by_postgres_tempdir
from tests.harness.processes import tail

FAST_RECOVERY = {(Fault.TRUNCATE, "gcs")}
FAST: set[tuple[Fault, str]] = set()  # restores under faults: WAL restores in the default run


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = owned_by_postgres_tempdir("bcp-faults-")
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=True)


@dataclass
class Backed:
    """A backup taken straight to the emulator, the manifest that reaches it directly, and the
    server it was taken of (still archiving)."""

    backup_id: str
    manifest: Path
    server: PostgresServer


@pytest.fixture
async def backed(
    target: Target, workdir: Path, postgres_factory: Callable[..., PostgresServer]
) -> AsyncIterator[Backed]:
    server, manifest = archiving_postgres(postgres_factory, target, workdir)
    result = await take_backup(
        target.store(via_proxy=False), target.layout, server.conninfo,
        BackupSettings(immediate_checkpoint=True, jobs=2),
    )  # fmt: skip
    yield Backed(result.backup_id, manifest, server)


@pytest.mark.parametrize(
    ("fault", "store"),
    [pytest.param(f, s, marks=() if (f, s) in FAST else pytest.mark.slow) for f in Fault for s in STORES],
)
async def test_restore_under_fault(
    fault: Fault,
    store: str,
    target: Target,
    backed: Backed,
    postgres_factory: Callable[..., PostgresServer],
) -> None:
    server = empty_data_directory(postgres_factory)
    seed = zlib.crc32(f"restore/{fault.name}/{store}".encode())
    budget = 3 if fault in (Fault.STALL, Fault.STALL_RESPONSE) else 8
    acknowledged = failed = recovered = 0
    # The archives' reads get the fault twice for sure, every request now and then.
    archives = Rule(fault, method="GET", path=r"\.tar", times=2)
    others = Rule(fault, probability=0.4, seed=seed, times=budget)
    with target.proxy.faults(archives, others):
        try:
            await restore_backup(target.store(), target.layout, backed.backup_id, server.datadir, jobs=2)
        except BarmanCloudError:
            failed = 1
        else:
            acknowledged = 1
    if failed:
        # The same directory, once the store answers again.
        await restore_backup(target.store(), target.layout, backed.backup_id, server.datadir, jobs=2)
        recovered = 1
    rows = start_recovered(server, backed.manifest, target)
    ledger.record(
        "restore of a base backup (engine)", fault.value, store, injected=archives.injected + others.injected,
        attempted=1,
        acknowledged=acknowledged, missing=int(rows != ROWS), failed=failed, recovered=recovered,
    )  # fmt: skip
    assert archives.injected + others.injected > 0
    assert rows == ROWS


def recovery_cluster() -> bytes:
    return json.dumps(
        {
            "apiVersion": "postgresql.cnpg.io/v1",
            "kind": "Cluster",
            "metadata": {"name": "restored", "namespace": "db", "uid": "u-2"},
            "spec": {
                "externalClusters": [
                    {
                        "name": "origin",
                        "plugin": {
                            "name": PLUGIN_NAME,
                            "parameters": {"barmanObjectName": "faulty", "serverName": "pg"},
                        },
                    }
                ],
                "bootstrap": {"recovery": {"source": "origin"}},
            },
        }
    ).encode()


async def restore_through(sidecar: Sidecar) -> None:
    channel = Channel(path=str(sidecar.socket))
    try:
        await handshake(channel)
        await restore_job_grpc.RestoreJobHooksStub(channel).Restore(
            restore_job_pb2.RestoreRequest(
                cluster_definition=recovery_cluster(), check_empty_wal_archive=False
            ),
            timeout=600,
        )
    finally:
        channel.close()


@pytest.mark.parametrize("store", [pytest.param(s, marks=pytest.mark.slow) for s in STORES])
async def test_kill_9_of_the_restore_sidecar_during_a_restore(
    store: str,
    target: Target,
    backed: Backed,
    workdir: Path,
    postgres_factory: Callable[..., PostgresServer],
) -> None:
    server = empty_data_directory(postgres_factory)
    manifest = store_manifest(
        workdir, target.manifest(extra='    data: {jobs: 2, additionalCommandArgs: ["--read-timeout=2"]}\n')
    )
    sidecar = start_sidecar(workdir, manifest, role="restore", pgdata=str(server.datadir))
    restarted: Sidecar | None = None
    # Reads of the archives hang (backup.info and listings go through): the kill lands mid-restore.
    stall = Rule(Fault.STALL, method="GET", path=r"data\.tar", times=None)
    try:
        with target.proxy.faults(stall):
            first = asyncio.create_task(restore_through(sidecar))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 240
            while stall.injected < 1 and not first.done():
                assert loop.time() < deadline, "no archive read started"
                await asyncio.sleep(0.2)
            assert not first.done(), (
                f"the restore ended before the kill:\n{tail(sidecar.process.log_path, 30)}"
            )
            os.killpg(sidecar.process.process.pid, signal.SIGKILL)
            await asyncio.to_thread(sidecar.process.process.wait)
            with contextlib.suppress(Exception):
                await first
        restarted = start_sidecar(workdir, manifest, role="restore", pgdata=str(server.datadir))
        await restore_through(restarted)  # the Job retried, on the same PGDATA
        rows = start_recovered(server, backed.manifest, target)
        ledger.record(
            "kill -9 of the restore sidecar during a restore", "stalled reads + kill -9", store,
            injected=stall.injected + 1, attempted=2, acknowledged=1, missing=int(rows != ROWS), failed=1,
            recovered=1,
        )  # fmt: skip
        assert rows == ROWS
    finally:
        sidecar.process.stop()
        if restarted is not None:
            restarted.process.stop()


def mount_tmpfs(path: Path, size: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)], check=True)
    subprocess.run(["chown", "postgres:postgres", str(path)], check=True)


@pytest.mark.parametrize(
    "store", [pytest.param(s, marks=() if s == "s3" else pytest.mark.slow) for s in STORES]
)
async def test_restore_onto_a_full_disk_then_retried(
    store: str, target: Target, backed: Backed, postgres_factory: Callable[..., PostgresServer]
) -> None:
    """The data directory is a tmpfs (mounted as root) smaller than the backup: the restore fails
    with an error that says so, and succeeds on the same directory once there is room."""
    server = empty_data_directory(postgres_factory)
    mount_tmpfs(server.datadir, "8m")
    try:
        with pytest.raises(BarmanCloudError) as failure:
            await restore_backup(
                target.store(via_proxy=False), target.layout, backed.backup_id, server.datadir
            )
        said_so = "no space left on device" in str(failure.value).lower()
        subprocess.run(["mount", "-o", "remount,size=1g", str(server.datadir)], check=True)
        await restore_backup(target.store(via_proxy=False), target.layout, backed.backup_id, server.datadir)
        rows = start_recovered(server, backed.manifest, target)
        ledger.record(
            "restore onto a full disk (tmpfs 8 MiB)", "ENOSPC", store, injected=1, attempted=1,
            acknowledged=0, missing=int(rows != ROWS), failed=1, recovered=1,
        )  # fmt: skip
        assert said_so, f"the error does not say the disk is full: {failure.value}"
        assert rows == ROWS
    finally:
        server.stop()
        subprocess.run(["umount", str(server.datadir)], check=False)


EXTRA_SEGMENTS = 4
EXTRA_ROWS = 5000


def write_after_backup(server: PostgresServer) -> int:
    """Rows written after the backup, over several segments, all archived; how many."""
    for _ in range(EXTRA_SEGMENTS):
        server.query(f"INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, {EXTRA_ROWS}) g")
        server.query("SELECT pg_switch_wal()")
    last = server.query("SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0]
    server.query("SELECT pg_switch_wal()")
    wait_for(
        lambda: (server.query("SELECT last_archived_wal FROM pg_stat_archiver")[0][0] or "") >= last,
        "the WAL written after the backup archived",
    )
    return EXTRA_SEGMENTS * EXTRA_ROWS


@pytest.mark.parametrize(
    ("fault", "store"),
    [
        pytest.param(f, s, marks=() if (f, s) in FAST_RECOVERY else pytest.mark.slow)
        for f in Fault
        for s in STORES
    ],
)
async def test_recovery_through_the_restore_sidecar_under_faults(
    fault: Fault,
    store: str,
    target: Target,
    backed: Backed,
    workdir: Path,
    postgres_factory: Callable[..., PostgresServer],
) -> None:
    """PostgreSQL replays the archive to its end through restore_command -> WAL.Restore (with the
    prefetch spool) while the store's reads fail now and then, fewer times in a row than the
    sidecar retries: PostgreSQL must see every row. A failure it saw would look like the end of
    the archive to it (restore_command failed = file not there), ending recovery early."""
    extra = write_after_backup(backed.server)
    server = empty_data_directory(postgres_factory)
    await restore_backup(
        target.store(via_proxy=False), target.layout, backed.backup_id, server.datadir, jobs=2
    )
    manifest = store_manifest(
        workdir,
        target.manifest(
            extra='    wal: {maxParallel: 4, archiveAdditionalCommandArgs: ["--read-timeout=2"]}\n'
        ),
    )
    sidecar = start_sidecar(workdir, manifest, role="restore", pgdata=str(server.datadir))
    seed = zlib.crc32(f"recovery/{fault.name}/{store}".encode())
    # Fewer faults in all than the sidecar's attempts per request (5): each is retried away.
    reads = Rule(fault, method="GET", first=1, probability=0.4, seed=seed, times=4)
    try:
        with target.proxy.faults(reads):
            rows = start_recovered(server, backed.manifest, target, restore_command=sidecar.restore_command())
        expected = ROWS + extra
        ledger.record(
            "PostgreSQL recovery via restore sidecar", fault.value, store, injected=reads.injected,
            attempted=EXTRA_SEGMENTS, acknowledged=EXTRA_SEGMENTS, missing=int(rows != expected),
        )  # fmt: skip
        assert reads.injected > 0
        assert rows == expected, (
            f"recovery ended early: {rows} rows instead of {expected}\n"
            f"restore sidecar:\n{tail(sidecar.process.log_path, 40)}\n"
            f"PostgreSQL:\n{tail(server.log_path, 40)}"
        )
    finally:
        sidecar.process.stop()
