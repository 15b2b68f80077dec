"""Base backups under faults, multipart uploads included, and a kill -9 of the sidecar in the
middle of one.

Invariants: a backup listed DONE restores, and PostgreSQL started on it sees every row; a backup
that failed under a fault succeeds when taken again once the fault is gone; no multipart upload
(S3) or uncommitted block blob (Azure) is left behind after the next run's cleanup.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from grpclib.client import Channel

from barman_cloud.backup.backup import BackupSettings, take_backup
from barman_cloud.errors import BarmanCloudError
from plugin_grpc.cnpg_caller import handshake
from plugin_grpc.proto import backup_grpc, backup_pb2
from tests.e2e.conftest import Sidecar, start_sidecar, store_manifest
from tests.faults import ledger
from tests.faults.backups import (
    PART,
    ROWS,
    archiving_postgres,
    done_backups,
    leftover_uploads,
    restore_and_count,
    statuses,
)
from tests.faults.conftest import STORES, Target
from tests.harness.fault_proxy import Fault, Rule
from tests.harness.postgres import PostgresServer, owned_by_postgres_tempdir

# The requests that carry one part of a multipart upload (S3 UploadPart, Azure Put Block, a GCS
# resumable-session chunk), and the method that sends them.
PARTS = {
    "s3": ("PUT", r"partNumber="),
    "azure": ("PUT", r"comp=block(?!list)"),
    "gcs": ("PUT", r"upload_id="),
}
# The default run has the kill -9 scenario (stalled parts); every fault class with --run-slow.
FAST: set[tuple[Fault, str]] = set()


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = owned_by_postgres_tempdir("bcp-faults-")
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=True)


def settings() -> BackupSettings:
    return BackupSettings(immediate_checkpoint=True, jobs=2)


@pytest.mark.parametrize(
    ("fault", "store"),
    [pytest.param(f, s, marks=() if (f, s) in FAST else pytest.mark.slow) for f in Fault for s in STORES],
)
async def test_backup_under_fault(
    fault: Fault,
    store: str,
    target: Target,
    workdir: Path,
    postgres_factory: Callable[..., PostgresServer],
) -> None:
    server, manifest = archiving_postgres(postgres_factory, target, workdir)
    faulty = target.store(part_size=PART, single_put_max=PART, max_concurrency=2)
    seed = zlib.crc32(f"backup/{fault.name}/{store}".encode())
    method, path = PARTS[store]
    budget = 3 if fault in (Fault.STALL, Fault.STALL_RESPONSE) else 8
    # Parts get the fault half the time; every other request (backup.info, completing the upload,
    # listings) a quarter of the time.
    parts = Rule(fault, method=method, path=path, first=1, probability=0.5, seed=seed, times=budget)
    others = Rule(fault, probability=0.25, seed=seed + 1, times=budget)
    acknowledged = failed = recovered = 0
    with target.proxy.faults(parts, others):
        try:
            await take_backup(faulty, target.layout, server.conninfo, settings())
        except BarmanCloudError:
            failed = 1
        else:
            acknowledged = 1
    await faulty.close()  # what a process does before it exits: pending aborts finish
    if failed:
        await take_backup(target.store(part_size=PART, single_put_max=PART), target.layout, server.conninfo,
                          settings())  # fmt: skip
        recovered = 1
    done = await done_backups(target)
    rows = {
        backup_id: await restore_and_count(target, backup_id, postgres_factory, manifest)
        for backup_id in done
    }
    incomplete = [backup_id for backup_id, count in rows.items() if count != ROWS]
    leaked = await leftover_uploads(target)
    ledger.record(
        "base backup (engine)", fault.value, store, injected=parts.injected + others.injected, attempted=1,
        acknowledged=acknowledged, missing=len(incomplete), failed=failed, recovered=recovered, leaked=leaked,
    )  # fmt: skip
    assert parts.injected + others.injected > 0
    assert len(done) == 1, await statuses(target)
    assert incomplete == [], f"listed DONE but did not restore every row: {rows}"
    assert leaked == 0, "a multipart upload (or uncommitted blocks) was left behind"


async def backup_through(sidecar: Sidecar) -> str:
    channel = Channel(path=str(sidecar.socket))
    try:
        await handshake(channel)
        answer = await backup_grpc.BackupStub(channel).Backup(
            backup_pb2.BackupRequest(
                cluster_definition=json.dumps(
                    {"metadata": {"name": "pg", "namespace": "db", "uid": "u"}}
                ).encode(),
                backup_definition=json.dumps(
                    {"metadata": {"name": "b"}, "spec": {"method": "plugin"}}
                ).encode(),
            ),
            timeout=600,
        )
    finally:
        channel.close()
    return str(answer.backup_id)


async def wait_async(predicate: Callable[[], bool], what: str, timeout: float = 240) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, f"gave up waiting: {what}"
        await asyncio.sleep(0.2)


SIDECAR_DATA = (
    "    data:\n      immediateCheckpoint: true\n      jobs: 2\n      additionalCommandArgs:\n"
    f'        ["--max-block-size={PART}", "--max-single-put-size={PART}", "--read-timeout=2"]\n'
)


@pytest.mark.parametrize(
    "store", [pytest.param(s, marks=() if s == "s3" else pytest.mark.slow) for s in STORES]
)
async def test_kill_9_of_the_sidecar_during_a_multipart_backup(
    store: str, target: Target, workdir: Path, postgres_factory: Callable[..., PostgresServer]
) -> None:
    server, manifest = archiving_postgres(postgres_factory, target, workdir)
    sidecar_manifest = store_manifest(workdir, target.manifest(extra=SIDECAR_DATA))
    sidecar = start_sidecar(workdir, sidecar_manifest, postgres_conninfo=server.conninfo)
    restarted: Sidecar | None = None
    method, path = PARTS[store]
    # The first part goes through, the next ones hang: the upload is in progress when we kill.
    stall = Rule(Fault.STALL, method=method, path=path, skip=1, times=None)
    try:
        with target.proxy.faults(stall):
            first = asyncio.create_task(backup_through(sidecar))
            mark = target.proxy.mark()

            def in_progress() -> bool:
                # One part stored (answered; GCS says 308 to a chunk), the next one hanging.
                stored = any(
                    e.fault is None and e.status is not None and e.status < 400 and re.search(path, e.target)
                    for e in target.proxy.since(mark)
                )
                return stored and stall.injected >= 1

            await wait_async(lambda: in_progress() or first.done(), "a part stored and the next in flight")
            assert not first.done(), "the backup ended before the kill"
            os.killpg(sidecar.process.process.pid, signal.SIGKILL)
            await asyncio.to_thread(sidecar.process.process.wait)
            with contextlib.suppress(Exception):
                await first
        leaked_before = await leftover_uploads(target)
        restarted = start_sidecar(workdir, sidecar_manifest, postgres_conninfo=server.conninfo)
        second = await backup_through(restarted)  # the next run
        leaked = await leftover_uploads(target)
        done = await done_backups(target)
        rows = {b: await restore_and_count(target, b, postgres_factory, manifest) for b in done}
        incomplete = [b for b, count in rows.items() if count != ROWS]
        ledger.record(
            "kill -9 of the sidecar during a multipart backup", "stalled parts + kill -9", store,
            injected=stall.injected + 1, attempted=2, acknowledged=1, missing=len(incomplete), failed=1,
            recovered=1, leaked=leaked,
        )  # fmt: skip
        assert done == [second], await statuses(target)
        assert incomplete == []
        if store != "gcs":  # fake-gcs-server does not list resumable sessions
            assert leaked_before >= 1, "the kill left no upload in progress: the scenario tested nothing"
        assert leaked == 0, f"{leaked} upload(s) of the killed backup left behind after the next backup"
    finally:
        sidecar.process.stop()
        if restarted is not None:
            restarted.process.stop()
