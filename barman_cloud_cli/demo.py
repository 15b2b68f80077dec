"""``make demo``: the whole path on one machine, no Kubernetes.

A local PostgreSQL archives its WAL the way it does in a CloudNativePG Pod: archive_command runs
the instance manager's call sequence (``plugin_grpc.cnpg_manager``: CNPG-I handshake, then
``WAL.Archive``) against our instance sidecar, which archives ahead into the object store (by
default the embedded one, a directory). A base backup goes through ``Backup.Backup``; after more
writes, the recovery Job's part is played: ``RestoreJobHooks.Restore`` through the restore sidecar
into a second data directory, then PostgreSQL started there with the configuration it returned and
a recovery target time, its restore_command going through ``WAL.Restore``. The restored rows are
counted: everything before the target, nothing after.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from grpclib.client import Channel

from barman_cloud_cli.local_postgres import LocalPostgres, as_postgres, find_bindir, owned_by_postgres_tempdir
from plugin_grpc.cnpg_caller import Handshake, handshake
from plugin_grpc.healthcheck import EXIT_SERVING, check_unix
from plugin_grpc.metadata import PLUGIN_NAME
from plugin_grpc.proto import backup_grpc, backup_pb2, restore_job_grpc, restore_job_pb2
from plugin_grpc.services.restore_job import RESTORE_COMMAND

MANIFEST = """apiVersion: barmancloud.cnpg.io/v1
kind: ObjectStore
metadata:
  name: local
spec:
  configuration:
    destinationPath: file://{bucket}
    wal:
      compression: lz4
      maxParallel: 4
    data:
      compression: lz4
      jobs: 2
      immediateCheckpoint: true
"""
ROWS = 20000


def _console_script() -> str:
    beside = Path(sys.executable).with_name("barman-cloud-plugin")
    return str(beside) if beside.exists() else "barman-cloud-plugin"


def _reachable_by_postgres(path: Path) -> bool:
    if os.geteuid() != 0:
        return True
    return (
        subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(path)], check=False).returncode
        == 0
    )


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    started = time.monotonic()
    print(f"\n{title}")
    yield
    print(f"   ({time.monotonic() - started:.1f} s)")


def _recovery_cluster(target_time: str) -> bytes:
    plugin = {"name": PLUGIN_NAME, "parameters": {"barmanObjectName": "local", "serverName": "demo"}}
    return json.dumps(
        {
            "apiVersion": "postgresql.cnpg.io/v1",
            "kind": "Cluster",
            "metadata": {"name": "demo-restored", "namespace": "demo"},
            "spec": {
                "externalClusters": [{"name": "origin", "plugin": plugin}],
                "bootstrap": {
                    "recovery": {"source": "origin", "recoveryTarget": {"targetTime": target_time}}
                },
            },
        }
    ).encode()


class QuickStart:
    """The quick start's steps, each printing what it did and how long it took."""

    def __init__(self, log_level: str, manifest: Path | None, bindir: Path) -> None:
        self.log_level = log_level
        self.bindir = bindir
        self.workdir = owned_by_postgres_tempdir("barman-cloud-plugin-demo-")
        self.bucket = self.workdir / "bucket"
        self.manifest = self.workdir / "objectstore.yaml"
        self.manifest.write_text(manifest.read_text() if manifest else MANIFEST.format(bucket=self.bucket))
        self.manifest.chmod(0o644)
        self.loop = asyncio.new_event_loop()
        self.sidecars: list[asyncio.subprocess.Process] = []
        self.servers: list[LocalPostgres] = []

    def socket(self, role: str) -> Path:
        return self.workdir / f"plugins-{role}" / PLUGIN_NAME

    def manager(self, role: str) -> str:
        return f"{sys.executable} -m plugin_grpc.cnpg_manager --socket {self.socket(role)}"

    def start_sidecar(self, role: str, *extra: str, environment: dict[str, str] | None = None) -> None:
        spool = str(self.workdir / f"spool-{role}")
        command = [
            _console_script(), "--log-level", self.log_level, role, "--socket", str(self.socket(role)),
            "-f", str(self.manifest), "--server-name", "demo", "--spool-dir", spool, *extra,
        ]  # fmt: skip
        print(f"   {' '.join(command)}")
        # As PostgreSQL's user, which must be able to connect to the socket (uid 26 for both in a Pod).
        user = "postgres" if os.geteuid() == 0 else None
        env = {**os.environ, **(environment or {})}
        process = self.loop.run_until_complete(
            asyncio.create_subprocess_exec(*command, user=user, group=user, env=env)
        )
        self.sidecars.append(process)
        self.loop.run_until_complete(self._wait_healthy(role, process))

    async def _wait_healthy(self, role: str, process: asyncio.subprocess.Process) -> None:
        deadline = time.monotonic() + 30
        while (await check_unix(str(self.socket(role)), timeout=2))[0] != EXIT_SERVING:
            if process.returncode is not None:
                raise RuntimeError(f"the {role} sidecar exited with status {process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {role} sidecar did not answer within 30 s")
            await asyncio.sleep(0.1)

    async def _handshake(self, role: str) -> Handshake:
        channel = Channel(path=str(self.socket(role)))
        try:
            return await handshake(channel)
        finally:
            channel.close()

    async def _backup(self, request: backup_pb2.BackupRequest) -> backup_pb2.BackupResult:
        channel = Channel(path=str(self.socket("instance")))
        try:
            await handshake(channel)  # what the instance manager does on every new connection
            return await backup_grpc.BackupStub(channel).Backup(request, timeout=3600)
        finally:
            channel.close()

    async def _restore(self, request: restore_job_pb2.RestoreRequest) -> restore_job_pb2.RestoreResponse:
        channel = Channel(path=str(self.socket("restore")))
        try:
            await handshake(channel)
            return await restore_job_grpc.RestoreJobHooksStub(channel).Restore(request, timeout=3600)
        finally:
            channel.close()

    def write(self, server: LocalPostgres, phase: str) -> None:
        server.query("INSERT INTO demo (phase) SELECT %s FROM generate_series(1, %s)", [phase, ROWS])

    def wait_archived(self, server: LocalPostgres) -> str:
        last = server.query("SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0]
        server.query("SELECT pg_switch_wal()")
        deadline = time.monotonic() + 180
        while True:
            archived, failed, done = server.query(
                "SELECT archived_count, failed_count, last_archived_wal >= %s FROM pg_stat_archiver", [last]
            )[0]
            if done:
                print(f"   pg_stat_archiver: {archived} archived, {failed} failed, up to {last}")
                return str(last)
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"PostgreSQL did not archive {last} ({failed} failures): see {server.log_path}"
                )
            time.sleep(0.2)

    def run(self) -> bool:
        with step("1. a local PostgreSQL whose archive_command goes through CNPG-I to the instance sidecar"):
            archive_command = f"{self.manager('instance')} wal-archive %p"
            source = LocalPostgres(self.bindir, {"archive_command": archive_command}, name="demo")
            self.servers.append(source)
            print(f"   PostgreSQL from {self.bindir}, data in {source.datadir}")
            self.start_sidecar("instance", "--postgres-conninfo", source.conninfo)
            result = self.loop.run_until_complete(self._handshake("instance"))
            meta = result.metadata
            print(
                f"   CloudNativePG's handshake: {meta.name} {meta.version}, {', '.join(result.capabilities)}"
            )
        with step(f"2. a workload: {ROWS} rows, WAL archived as it is written"):
            source.query(
                "CREATE TABLE demo (id serial PRIMARY KEY, phase text, at timestamptz DEFAULT now())"
            )
            self.write(source, "before the backup")
            self.wait_archived(source)
        with step("3. a base backup through Backup.Backup"):
            request = backup_pb2.BackupRequest(
                backup_definition=json.dumps({"metadata": {"name": "demo"}}).encode()
            )
            backup = self.loop.run_until_complete(self._backup(request))
            print(f"   backup {backup.backup_id} ({backup.backup_name}): WAL from {backup.begin_wal}")
        with step("4. more writes, a recovery target time between them"):
            self.write(source, "after the backup")
            target = str(source.query("SELECT now()::text")[0][0])
            time.sleep(1.1)
            self.write(source, "after the target")
            self.wait_archived(source)
            print(f"   recovery target time: {target}")
        with step("5. the recovery Job: RestoreJobHooks.Restore through the restore sidecar"):
            restored = LocalPostgres(self.bindir, name="demo-restored")
            self.servers.append(restored)
            restored.stop()
            subprocess.run(as_postgres(["rm", "-rf", str(restored.datadir)]), check=True)
            subprocess.run(as_postgres(["mkdir", "-m", "700", str(restored.datadir)]), check=True)
            self.start_sidecar("restore", environment={"PGDATA": str(restored.datadir)})
            job = restore_job_pb2.RestoreRequest(
                cluster_definition=_recovery_cluster(target), check_empty_wal_archive=False
            )
            answer = self.loop.run_until_complete(self._restore(job))
            print(f"   restored into {restored.datadir}")
        with step("6. PostgreSQL recovers to the target, its restore_command through WAL.Restore"):
            restore_command = f"{self.manager('restore')} wal-restore %f %p"
            lines = [
                answer.restore_config.replace(RESTORE_COMMAND, restore_command),
                f"recovery_target_time = '{target}'",
                f"port = {restored.port}",
                f"unix_socket_directories = '{restored.socket_dir}'",
                "archive_command = ''",
            ]
            conf = f"{restored.datadir}/postgresql.auto.conf"
            subprocess.run(
                as_postgres(["tee", "-a", conf]),
                input="\n".join(lines) + "\n",
                text=True,
                stdout=subprocess.DEVNULL,
                check=True,
            )
            subprocess.run(as_postgres(["touch", f"{restored.datadir}/recovery.signal"]), check=True)
            restored.start()
            deadline = time.monotonic() + 300
            while restored.query("SELECT pg_is_in_recovery()")[0][0]:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"recovery did not finish: see {restored.log_path}")
                time.sleep(0.2)
            counts = dict(restored.query("SELECT phase, count(*) FROM demo GROUP BY phase"))
            for phase in ("before the backup", "after the backup", "after the target"):
                print(f"   rows {phase:<18} {counts.get(phase, 0):>6}")
        ok = counts == {"before the backup": ROWS, "after the backup": ROWS}
        print(f"\npoint-in-time recovery {'succeeded' if ok else 'FAILED'}")
        return ok

    def close(self) -> None:
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.destroy()
        for process in self.sidecars:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            self.loop.run_until_complete(process.wait())
        self.loop.close()
        subprocess.run(["rm", "-rf", str(self.workdir)], check=False)


def run(log_level: str, manifest: Path | None = None) -> int:
    bindir = find_bindir()
    if bindir is None:
        print("no PostgreSQL server found: apt-get install postgresql (the quick start needs one)")
        return 1
    if not _reachable_by_postgres(Path(sys.executable).parent):
        print(
            f"the postgres user cannot reach {Path(sys.executable).parent}, and PostgreSQL's archive_command"
        )
        print("runs as that user: clone the project outside /root (or run as another user).")
        return 1
    demo = QuickStart(log_level, manifest, bindir)
    try:
        return 0 if demo.run() else 1
    finally:
        demo.close()
