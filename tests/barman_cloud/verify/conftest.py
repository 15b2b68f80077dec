"""A real PostgreSQL archiving through our ``wal-archive`` into a real store (moto, Azurite,
fake-gcs-server or a directory), backed up by our engine: the bucket ``verify`` is run on."""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from barman_cloud.backup.backup import BackupResult, BackupSettings, take_backup
from barman_cloud.config.manifests import parse_manifests
from barman_cloud.config.secrets import resolve
from barman_cloud.format import compression
from barman_cloud.format.keys import ServerLayout
from barman_cloud.storage import Store
from barman_cloud.storage.factory import open_store
from barman_cloud.storage.location import parse_destination
from tests.compat.conftest import provider_manifest
from tests.harness.postgres import PostgresServer, as_postgres, owned_by_postgres_tempdir

CLI = str(Path(sys.executable).with_name("barman-cloud-plugin"))


@dataclass
class Bucket:
    provider: str
    store: Store
    layout: ServerLayout
    manifest: Path
    """The ObjectStore (and its Secrets) in a file the postgres user can read."""
    backend: ModuleType
    """tests/storage/backends/<provider>.py: ``overwrite_keeping_metadata`` damages an object."""

    @property
    def source(self) -> list[str]:
        return ["-f", str(self.manifest), "--server-name", self.layout.server]


def cli(*args: str, user_postgres: bool = False, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    command = [CLI, *args]
    return subprocess.run(
        as_postgres(command) if user_postgres else command,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def shared_directories(root: Path) -> None:
    """A filesystem bucket written by two users: PostgreSQL's archive_command (postgres) and the
    test (root). The store's staging directory and the server's folder must be postgres's."""
    folders = [str(root / ".incoming"), str(root / "pg" / "wals")]
    subprocess.run(as_postgres(["mkdir", "-p", *folders]), check=True)


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = owned_by_postgres_tempdir("bcp-verify-")
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=True)


async def open_bucket(request: pytest.FixtureRequest, provider: str, workdir: Path) -> Bucket:
    if provider == "filesystem":
        shared_directories(workdir / "bucket")
        destination = f"file://{workdir}/bucket"
        text = f"""
apiVersion: barmancloud.cnpg.io/v1
kind: ObjectStore
metadata: {{name: local}}
spec:
  configuration:
    destinationPath: {destination}
"""
    else:
        destination, text = await provider_manifest(request, provider, f"verify-{uuid.uuid4().hex[:10]}")
    manifests = parse_manifests(text)
    resolved = await resolve(manifests.object_store(), manifests, environ={})
    store = open_store(resolved.destination, resolved.credentials, resolved.options)
    manifest = workdir / "store.yaml"
    manifest.write_text(text)
    manifest.chmod(0o644)
    layout = ServerLayout(parse_destination(destination).prefix, "pg")
    backend = importlib.import_module(f"tests.storage.backends.{provider}")
    return Bucket(provider, store, layout, manifest, backend)


@pytest.fixture(params=["filesystem", "s3", "azure", "gcs"])
async def bucket(request: pytest.FixtureRequest, workdir: Path) -> AsyncIterator[Bucket]:
    opened = await open_bucket(request, request.param, workdir)
    try:
        yield opened
    finally:
        await opened.store.close()


def wait_archived(server: PostgresServer, timeout: float = 120) -> str:
    """Switch WAL, wait until everything written so far is archived; the last segment's name."""
    segment = str(server.query("SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0])
    server.query("SELECT pg_switch_wal()")
    deadline = time.monotonic() + timeout
    while True:
        last, failed = server.query("SELECT last_archived_wal, failed_count FROM pg_stat_archiver")[0]
        if last is not None and last >= segment:
            return segment
        assert time.monotonic() < deadline, f"{segment} not archived (failed {failed} times)"
        time.sleep(0.1)


async def archived_cluster(
    bucket: Bucket, make: Callable[..., PostgresServer], *, segments_after: int = 4
) -> tuple[PostgresServer, BackupResult]:
    """A server archiving into ``bucket`` (uncompressed WAL), a gzip backup of it, and
    ``segments_after`` more segments of WAL archived after the backup."""
    archive = f"{CLI} wal-archive -f {bucket.manifest} --server-name {bucket.layout.server} %p"
    server = make(15, archive_command=archive)
    server.query("CREATE TABLE t AS SELECT generate_series(1, 50000) AS n")
    settings = BackupSettings(compression=compression.GZIP, immediate_checkpoint=True)
    result = await take_backup(bucket.store, bucket.layout, server.conninfo, settings)
    for _ in range(segments_after):
        server.query("INSERT INTO t SELECT generate_series(1, 1000)")
        server.query("SELECT pg_switch_wal()")
    wait_archived(server)
    return server, result
