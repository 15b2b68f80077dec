"""Scenario (a) of CloudNativePG's part, played end to end on the filesystem store: WAL archived
through the instance sidecar while rows are written, a base backup through ``Backup.Backup``, more
writes, then the recovery Job: ``RestoreJobHooks.Restore`` through the restore sidecar and
PostgreSQL started with the configuration it returned plus CloudNativePG's recovery target, its
``restore_command`` going through ``WAL.Restore``. The rows before the target are there, none after.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from grpclib.client import Channel

from plugin_grpc.cnpg_caller import handshake
from plugin_grpc.metadata import PLUGIN_NAME
from plugin_grpc.proto import backup_grpc, backup_pb2, restore_job_grpc, restore_job_pb2
from tests.compat.conftest import provider_manifest
from tests.e2e.conftest import MANAGER, Sidecar, store_manifest
from tests.harness.postgres import PostgresServer, as_postgres


def wait_archived(server: PostgresServer, wal: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        last, failed = server.query("SELECT last_archived_wal, failed_count FROM pg_stat_archiver")[0]
        if last and last >= wal:
            return
        assert time.monotonic() < deadline, f"{wal} not archived ({failed} failures)"
        time.sleep(0.2)


def cluster_json(target_time: str) -> bytes:
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
                            "parameters": {"barmanObjectName": "local", "serverName": "pg"},
                        },
                    }
                ],
                "bootstrap": {
                    "recovery": {"source": "origin", "recoveryTarget": {"targetTime": target_time}}
                },
            },
        }
    ).encode()


TUNING = (
    "    wal: {compression: gzip, maxParallel: 4}\n"
    "    data: {compression: lz4, jobs: 2, immediateCheckpoint: true}\n"
)


@pytest.mark.parametrize("provider", ["filesystem", "s3", "azure", "gcs"])
async def test_archive_backup_then_point_in_time_recovery(
    provider: str,
    request: pytest.FixtureRequest,
    postgres_factory: Callable[..., PostgresServer],
    sidecar_factory: Callable[..., Sidecar],
    e2e_workdir: Path,
) -> None:
    if provider == "filesystem":
        body = (
            "apiVersion: barmancloud.cnpg.io/v1\nkind: ObjectStore\nmetadata: {name: local}\n"
            f"spec:\n  configuration:\n    destinationPath: file://{e2e_workdir}/bucket\n{TUNING}"
        )
    else:
        _, body = await provider_manifest(request, provider, f"e2e-{uuid.uuid4().hex[:8]}")
        # The ObjectStore's configuration block ends the first document: add the tuning there.
        head, _, secrets = body.partition("---")
        body = head.rstrip() + "\n" + TUNING + ("---" + secrets if secrets else "")
    manifest = store_manifest(e2e_workdir, body)
    source = postgres_factory(15)
    instance = sidecar_factory(manifest, postgres_conninfo=source.conninfo)
    source.set(archive_command=instance.archive_command())
    source.query("CREATE TABLE events (id int PRIMARY KEY, phase text)")
    source.query("INSERT INTO events SELECT g, 'before backup' FROM generate_series(1, 1000) g")

    channel = Channel(path=str(instance.socket))
    try:
        await handshake(channel)
        backup = await backup_grpc.BackupStub(channel).Backup(
            backup_pb2.BackupRequest(
                cluster_definition=json.dumps(
                    {"metadata": {"name": "pg", "namespace": "db", "uid": "u-1"}}
                ).encode(),
                backup_definition=json.dumps(
                    {"metadata": {"name": "nightly"}, "spec": {"method": "plugin"}}
                ).encode(),
            ),
            timeout=600,
        )
    finally:
        channel.close()
    assert backup.backup_name == "nightly" and backup.online
    assert backup.begin_wal and backup.end_wal and backup.begin_lsn and backup.end_lsn
    assert backup.started_at <= backup.stopped_at
    assert b"START WAL LOCATION" in backup.backup_label_file
    assert backup.metadata["pluginName"] == PLUGIN_NAME and backup.metadata["clusterUID"] == "u-1"
    if provider == "filesystem":
        info = (e2e_workdir / f"bucket/pg/base/{backup.backup_id}/backup.info").read_text()
        assert "status=DONE" in info.splitlines()

    source.query("INSERT INTO events SELECT g, 'after backup' FROM generate_series(1001, 2000) g")
    target = source.query("SELECT now()::text")[0][0]
    time.sleep(1.1)
    source.query("INSERT INTO events SELECT g, 'after target' FROM generate_series(2001, 3000) g")
    last = source.query("SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0]
    source.query("SELECT pg_switch_wal()")
    wait_archived(source, last)

    # The recovery Job: an empty PGDATA, the restore sidecar, RestoreJobHooks.Restore.
    restored = postgres_factory(15)
    restored.stop()
    subprocess.run(
        as_postgres(["sh", "-c", f"rm -rf {restored.datadir} && mkdir -m 700 {restored.datadir}"]), check=True
    )
    job = sidecar_factory(manifest, role="restore", pgdata=str(restored.datadir))
    channel = Channel(path=str(job.socket))
    try:
        result = await handshake(channel)
        assert result.services["RestoreJobHooks"] == ["KIND_RESTORE"]
        answer = await restore_job_grpc.RestoreJobHooksStub(channel).Restore(
            restore_job_pb2.RestoreRequest(
                cluster_definition=cluster_json(target), check_empty_wal_archive=False
            ),
            timeout=600,
        )
    finally:
        channel.close()
    assert "recovery_target_action = promote" in answer.restore_config
    assert "restore_command = '/controller/manager wal-restore" in answer.restore_config

    # CloudNativePG's part: its configuration (our answer, its manager swapped for the CNPG-I
    # client, then its recovery target), recovery.signal, and PostgreSQL started.
    manager = f"{MANAGER} --socket {job.socket} wal-restore %f %p"
    cnpg_manager = "/controller/manager wal-restore --log-destination /controller/log/postgres.json %f %p"
    lines = [
        answer.restore_config.replace(cnpg_manager, manager),
        f"recovery_target_time = '{target}'",
        f"port = {restored.port}",
        f"unix_socket_directories = '{restored.socket_dir}'",
        "archive_command = ''",
    ]
    script = f"cat >> {restored.datadir}/postgresql.auto.conf && touch {restored.datadir}/recovery.signal"
    subprocess.run(as_postgres(["sh", "-c", script]), input="\n".join(lines) + "\n", text=True, check=True)
    restored.start()
    deadline = time.monotonic() + 120
    while restored.query("SELECT pg_is_in_recovery()")[0][0]:
        assert time.monotonic() < deadline, "recovery did not finish"
        time.sleep(0.2)
    phases = dict(restored.query("SELECT phase, count(*) FROM events GROUP BY phase"))
    assert phases == {"before backup": 1000, "after backup": 1000}
