"""CloudNativePG played end to end: our sidecar as a process (as the `postgres` user, like the
sidecar and PostgreSQL share uid 26 in a Pod), PostgreSQL calling it through the instance manager's
sequence of CNPG-I calls (plugin_grpc/cnpg_manager.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness.postgres import as_postgres, owned_by_postgres_tempdir
from tests.harness.processes import ManagedProcess, tail

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("barman-cloud-plugin"))
MANAGER = f"{sys.executable} -m plugin_grpc.cnpg_manager"


@dataclass
class Sidecar:
    process: ManagedProcess
    socket: Path
    workdir: Path
    cluster_json: Path | None = None
    """The Cluster JSON the instance manager sends with every call ($CNPG_CLUSTER_JSON; "{}" if None)."""
    spool: Path | None = None

    def _env(self) -> str:
        return f"env CNPG_CLUSTER_JSON={self.cluster_json} " if self.cluster_json else ""

    def archive_command(self) -> str:
        return f"{self._env()}{MANAGER} --socket {self.socket} wal-archive %p"

    def restore_command(self) -> str:
        return f"{self._env()}{MANAGER} --socket {self.socket} wal-restore %f %p"

    def stop(self) -> None:
        """SIGTERM to the sidecar itself, as the kubelet does. (runuser, signalled, would sleep 2 s
        and then SIGKILL it; signalled directly, the sidecar shuts down and runuser exits with it.)"""
        pid = self.process.process.pid
        with contextlib.suppress(OSError, ValueError):
            for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
                os.kill(int(child), signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.process.wait(10)
        self.process.stop()

    def manager(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "plugin_grpc.cnpg_manager", "--socket", str(self.socket), *args]
        if self.cluster_json:
            command = ["env", f"CNPG_CLUSTER_JSON={self.cluster_json}", *command]
        return subprocess.run(as_postgres(command), capture_output=True, text=True, timeout=120, check=False)


def store_manifest(workdir: Path, body: str) -> Path:
    path = workdir / "store.yaml"
    path.write_text(body)
    path.chmod(0o644)
    return path


def start_sidecar(
    workdir: Path,
    manifest: Path,
    role: str = "instance",
    server_name: str = "pg",
    postgres_conninfo: str | None = None,
    pgdata: str | None = None,
    name: str | None = None,
) -> Sidecar:
    """``name`` (default: the role) tells apart several sidecars of one role (several Pods)."""
    name = name or role
    socket = workdir / f"plugins-{name}" / "barman-cloud.cloudnative-pg.io"
    spool = workdir / f"spool-{name}"
    command = [
        CLI, "--log-level", "debug", role, "--socket", str(socket), "-f", str(manifest),
        "--server-name", server_name, "--spool-dir", str(spool),
    ]  # fmt: skip
    if postgres_conninfo:
        command += ["--postgres-conninfo", postgres_conninfo]
    environment = {"PYTHONUNBUFFERED": "1", **({"PGDATA": pgdata} if pgdata else {})}
    log = workdir / f"{name}.log"
    process = ManagedProcess(
        f"{name} sidecar", as_postgres(["env", *(f"{k}={v}" for k, v in environment.items()), *command]), log
    )
    process.wait_until(lambda: socket.exists() and os.access(socket, os.F_OK), timeout=60)
    health = [CLI, "healthcheck", "unix", "--socket", str(socket)]
    deadline = time.monotonic() + 60
    while subprocess.run(health, capture_output=True, check=False).returncode != 0:
        assert time.monotonic() < deadline, tail(log)
        time.sleep(0.1)
    return Sidecar(process, socket, workdir, spool=spool)


@pytest.fixture
def e2e_workdir() -> Iterator[Path]:
    path = owned_by_postgres_tempdir("bcp-e2e-")
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=True)


@pytest.fixture
def sidecar_factory(e2e_workdir: Path) -> Iterator[Callable[..., Sidecar]]:
    started: list[Sidecar] = []

    def make(manifest: Path, **kwargs: str | None) -> Sidecar:
        started.append(start_sidecar(e2e_workdir, manifest, **kwargs))  # type: ignore[arg-type]
        return started[-1]

    yield make
    for sidecar in started:
        sidecar.stop()


@pytest.fixture
async def kubernetes_sidecar_factory(kmock: Any, e2e_workdir: Path) -> AsyncIterator[Callable[..., Any]]:
    """Sidecars as in a Pod: ObjectStores and Secrets read through kmock (apply them with
    ``tests.e2e.cnpg.load_into_kubernetes``); ``await make(pod, cluster, role=..., pgdata=...)``."""
    from tests.e2e.cnpg import start_kubernetes_sidecar

    started: list[Sidecar] = []

    async def make(pod: str, cluster: dict[str, Any], **kwargs: Any) -> Sidecar:
        started.append(await start_kubernetes_sidecar(kmock, e2e_workdir, pod, cluster, **kwargs))
        return started[-1]

    yield make
    for sidecar in started:
        sidecar.stop()
