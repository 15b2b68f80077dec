"""A real instance sidecar served on a unix socket, over a real store, for the bad-input tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from grpclib.client import Channel

from barman_cloud.config.manifests import parse_manifests
from barman_cloud.config.secrets import resolve
from plugin_grpc.metadata import PLUGIN_NAME
from plugin_grpc.proto import wal_grpc
from plugin_grpc.roles import Role, assemble
from plugin_grpc.server import PluginServer
from plugin_grpc.wal_targets import StaticWalTargets

# The operator-side endpoint over mutual TLS, with its emulated Kubernetes API.
from tests.plugin_grpc.operator_side.conftest import connect, kmock_options, kube  # noqa: F401

SERVER_NAME = "pg"


def file_store_manifest(bucket: Path) -> str:
    return f"""
apiVersion: barmancloud.cnpg.io/v1
kind: ObjectStore
metadata: {{name: local, namespace: db}}
spec:
  configuration:
    destinationPath: file://{bucket}
    wal: {{compression: gzip, maxParallel: 2}}
"""


def tree(root: Path) -> set[str]:
    """Every path under ``root``, relative to it."""
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


@dataclass
class Sidecar:
    """The instance sidecar's endpoint and the directories around it."""

    server: PluginServer
    channel: Channel
    root: Path
    """Holds everything the test creates: bucket/, spool/, pgdata/pg_wal/, the socket."""

    @property
    def bucket(self) -> Path:
        return self.root / "bucket"

    @property
    def pg_wal(self) -> Path:
        return self.root / "pgdata" / "pg_wal"

    @property
    def wal(self) -> wal_grpc.WALStub:
        return wal_grpc.WALStub(self.channel)


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A directory with a short path: unix socket paths are limited to about 100 bytes."""
    path = Path(tempfile.mkdtemp(prefix="bcp-bad-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def sidecar(short_tmp: Path) -> AsyncIterator[Sidecar]:
    """The instance role (WAL, Backup, Metrics) archiving to a filesystem bucket."""
    (short_tmp / "bucket").mkdir()
    (short_tmp / "pgdata" / "pg_wal" / "archive_status").mkdir(parents=True)
    manifests = parse_manifests(file_store_manifest(short_tmp / "bucket"))
    resolved = await resolve(manifests.object_store(), manifests, environ={})
    targets = StaticWalTargets(resolved, SERVER_NAME, short_tmp / "spool")
    server = PluginServer(assemble(Role.INSTANCE, wal_targets=targets))
    await server.start_unix(short_tmp / PLUGIN_NAME)
    channel = Channel(path=str(short_tmp / PLUGIN_NAME))
    try:
        yield Sidecar(server, channel, short_tmp)
    finally:
        channel.close()
        await server.stop()
        await targets.close()
