"""``make demo``: the whole path on one machine, no Kubernetes.

A local PostgreSQL archives its WAL the way it does in a CloudNativePG Pod: archive_command runs
the instance manager's call sequence (``plugin_grpc.cnpg_manager``: CNPG-I handshake, then
``WAL.Archive``) against our instance sidecar on a unix socket, which archives ahead into the
embedded default object store, a directory (``file://``). Then a WAL file is restored through the
sidecar (``WAL.Restore``) and compared with the original.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from grpclib.client import Channel

from barman_cloud_cli.local_postgres import LocalPostgres, as_postgres, find_bindir, owned_by_postgres_tempdir
from plugin_grpc.cnpg_caller import handshake
from plugin_grpc.healthcheck import EXIT_SERVING, check_unix
from plugin_grpc.metadata import PLUGIN_NAME

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
"""


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


async def _wait_healthy(socket_path: Path, process: asyncio.subprocess.Process, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (await check_unix(str(socket_path), timeout=2))[0] != EXIT_SERVING:
        if process.returncode is not None:
            raise RuntimeError(f"the sidecar exited with status {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the sidecar did not answer on {socket_path} within {timeout:.0f}s")
        await asyncio.sleep(0.1)


def _archive_through_postgres(postgres: LocalPostgres) -> list[str]:
    postgres.query("CREATE TABLE demo (id serial PRIMARY KEY, note text)")
    switched = []
    for round_number in range(4):
        postgres.query("INSERT INTO demo (note) SELECT md5(g::text) FROM generate_series(1, 20000) g")
        switched.append(postgres.query("SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0])
        postgres.query("SELECT pg_switch_wal()")
        print(f"  round {round_number + 1}: wrote 20000 rows, switched away from {switched[-1]}")
    deadline = time.monotonic() + 120
    while True:
        archived, failed, last = postgres.query(
            "SELECT archived_count, failed_count, last_archived_wal FROM pg_stat_archiver"
        )[0]
        if last and last >= switched[-1]:
            print(f"  pg_stat_archiver: {archived} archived, {failed} failed, last {last}")
            return switched
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"PostgreSQL did not archive {switched[-1]} ({failed} failures): see {postgres.log_path}"
            )
        time.sleep(0.2)


class QuickStart:
    """The quick start's steps, each printing what it did."""

    def __init__(self, log_level: str) -> None:
        self.workdir = owned_by_postgres_tempdir("barman-cloud-plugin-demo-")
        self.bucket = self.workdir / "bucket"
        self.socket = self.workdir / "plugins" / PLUGIN_NAME
        manifest = self.workdir / "objectstore.yaml"
        manifest.write_text(MANIFEST.format(bucket=self.bucket))
        manifest.chmod(0o644)
        self.command = [
            _console_script(), "--log-level", log_level, "instance", "--socket", str(self.socket),
            "-f", str(manifest), "--server-name", "demo", "--spool-dir", str(self.workdir / "spool"),
        ]  # fmt: skip
        self.manager = [sys.executable, "-m", "plugin_grpc.cnpg_manager", "--socket", str(self.socket)]
        self.loop = asyncio.new_event_loop()
        self.sidecar: asyncio.subprocess.Process | None = None
        self.postgres: LocalPostgres | None = None

    def start_sidecar(self) -> None:
        print(f"1. the instance sidecar: {' '.join(self.command)}")
        self.loop.run_until_complete(self._start())

    async def _start(self) -> None:
        # As PostgreSQL's user, which must be able to connect to the socket (uid 26 for both in a Pod).
        user = "postgres" if os.geteuid() == 0 else None
        self.sidecar = await asyncio.create_subprocess_exec(*self.command, user=user, group=user)
        await _wait_healthy(self.socket, self.sidecar)
        channel = Channel(path=str(self.socket))
        try:
            result = await handshake(channel)
        finally:
            channel.close()
        meta = result.metadata
        print(
            f"2. CloudNativePG's handshake: {meta.name} {meta.version} ({meta.display_name}, {meta.maturity})"
        )
        print(f"   capabilities {', '.join(result.capabilities)}")
        for service, rpcs in result.services.items():
            print(f"   {service:<9} {', '.join(rpcs)}")

    def archive(self, bindir: Path) -> list[str]:
        archive_command = " ".join([*self.manager, "wal-archive", "%p"])
        self.postgres = LocalPostgres(bindir, {"archive_command": archive_command}, name="demo")
        print(f"3. PostgreSQL from {bindir}, archive_command = {archive_command}")
        switched = _archive_through_postgres(self.postgres)
        objects = sorted(p for p in self.bucket.rglob("*") if p.is_file())
        stored = sum(p.stat().st_size for p in objects)
        print(f"4. the object store {self.bucket}: {len(objects)} objects, {stored / 1e6:.1f} MB (lz4)")
        for path in objects[:6]:
            print(f"   {path.relative_to(self.bucket)}")
        return switched

    def restore(self, name: str) -> bool:
        assert self.postgres is not None
        restored = self.workdir / "RECOVERYXLOG"
        command = as_postgres([*self.manager, "wal-restore", name, str(restored)])
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        same = result.returncode == 0 and restored.read_bytes() == (self.postgres.pg_wal / name).read_bytes()
        print(f"5. restore_command through the sidecar: {name} restored, identical to pg_wal's: {same}")
        if not same:
            print(result.stderr, file=sys.stderr)
        return same

    def close(self) -> None:
        if self.postgres is not None:
            self.postgres.destroy()
        if self.sidecar is not None:
            with contextlib.suppress(ProcessLookupError):
                self.sidecar.send_signal(signal.SIGTERM)
            self.loop.run_until_complete(self.sidecar.wait())
        self.loop.close()
        subprocess.run(["rm", "-rf", str(self.workdir)], check=False)


def run(log_level: str) -> int:
    bindir = find_bindir()
    if not _reachable_by_postgres(Path(sys.executable).parent):
        print(
            f"the postgres user cannot reach {Path(sys.executable).parent}, and PostgreSQL's archive_command"
        )
        print("runs as that user: clone the project outside /root (or run as another user).")
        return 1
    demo = QuickStart(log_level)
    try:
        demo.start_sidecar()
        if bindir is None:
            print("3. no PostgreSQL server found (apt-get install postgresql): stopping after the handshake")
            return 0
        switched = demo.archive(bindir)
        if not demo.restore(switched[0]):
            return 1
        print("\nbase backups and point-in-time recovery join this quick start with issue #5.")
        return 0
    finally:
        demo.close()
