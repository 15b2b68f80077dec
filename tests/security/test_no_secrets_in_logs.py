"""No secret value in any log line, stderr, exception message or repr, even at DEBUG.

Representative flows run with recognisable credentials (moto accepts any): WAL archive and
restore through the served sidecar, a base backup of a real PostgreSQL and its restore, failures
on the way (their messages included), and the command-line tools given ``-f FILE`` with the
Secrets, at ``--log-level debug``. Every captured line is searched for every secret value, raw
and as JSON or ``repr`` would escape it.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from grpclib.client import Channel
from grpclib.exceptions import GRPCError

from barman_cloud import logs
from barman_cloud.backup.backup import settings_from, take_backup
from barman_cloud.config.manifests import Manifests, parse_manifests
from barman_cloud.config.secrets import ResolvedStore, resolve
from barman_cloud.errors import BarmanCloudError
from barman_cloud.format.keys import ServerLayout
from barman_cloud.restore import restore_backup
from barman_cloud.storage.factory import open_store
from barman_cloud.storage.location import parse_destination
from plugin_grpc.metadata import PLUGIN_NAME
from plugin_grpc.proto import wal_grpc, wal_pb2
from plugin_grpc.roles import Role, assemble
from plugin_grpc.server import PluginServer
from plugin_grpc.wal_targets import StaticWalTargets
from tests.harness.object_stores import MotoS3
from tests.harness.postgres import PostgresServer

CLI = str(Path(sys.executable).with_name("barman-cloud-plugin"))
MARK = uuid.uuid4().hex[:12]
ACCESS_KEY_ID = f"AKIAKEYID{MARK.upper()}"
SECRET_ACCESS_KEY = f"s3cr3t/Acc3ss+Key={MARK}"
SESSION_TOKEN = f"Sess10n-T0ken/{MARK}=="
SECRETS = (ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN)
SEGMENT = "000000010000000000000001"


def manifest(moto: MotoS3, prefix: str) -> str:
    return f"""
apiVersion: barmancloud.cnpg.io/v1
kind: ObjectStore
metadata: {{name: store, namespace: db}}
spec:
  configuration:
    destinationPath: s3://{moto.bucket}/{prefix}
    endpointURL: {moto.endpoint}
    s3Credentials:
      accessKeyId: {{name: aws, key: ACCESS_KEY_ID}}
      secretAccessKey: {{name: aws, key: ACCESS_SECRET_KEY}}
      sessionToken: {{name: aws, key: SESSION_TOKEN}}
      region: {{name: aws, key: REGION}}
    wal: {{compression: gzip}}
    data: {{compression: lz4, jobs: 2}}
---
apiVersion: v1
kind: Secret
metadata: {{name: aws, namespace: db}}
stringData:
  ACCESS_KEY_ID: {ACCESS_KEY_ID}
  ACCESS_SECRET_KEY: "{SECRET_ACCESS_KEY}"
  SESSION_TOKEN: "{SESSION_TOKEN}"
  REGION: {moto.region}
"""


def leaks(text: str) -> list[str]:
    """The secrets found in ``text``, in any of the forms a log line or a message would hold."""
    found = []
    for secret in SECRETS:
        forms = {secret, json.dumps(secret)[1:-1], repr(secret)[1:-1], secret.replace("/", "%2F")}
        if any(form in text for form in forms):
            found.append(secret)
    return found


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """Everything logged, by us and by the libraries, at DEBUG, as the sidecar writes it."""
    stream = io.StringIO()
    root = logging.getLogger()
    previous = root.handlers[:], root.level
    logs.configure("debug", stream)
    yield stream
    root.handlers[:] = previous[0]
    root.setLevel(previous[1])


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="bcp-sec-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def resolved(moto_s3: MotoS3) -> AsyncIterator[tuple[Manifests, ResolvedStore]]:
    manifests = parse_manifests(manifest(moto_s3, f"secrets-{uuid.uuid4().hex[:8]}"))
    yield manifests, await resolve(manifests.object_store(), manifests, environ={})


async def test_config_objects_and_errors_never_show_a_secret(
    resolved: tuple[Manifests, ResolvedStore], moto_s3: MotoS3
) -> None:
    manifests, store = resolved
    shown = [
        repr(manifests),
        str(manifests),
        repr(store),
        repr(store.credentials),
        repr(store.options),
        repr(store.object_store),
    ]
    opened = open_store(store.destination, store.credentials, store.options)
    try:
        shown.append(repr(opened))
        # Refusals by the store: their messages go to CloudNativePG and the logs.
        with pytest.raises(BarmanCloudError) as missing:
            await opened.head("no/such/object")
        shown += [str(missing.value), repr(missing.value)]
        elsewhere = open_store(f"s3://no-such-bucket-{MARK}/p", store.credentials, store.options)
        try:
            with pytest.raises(BarmanCloudError) as refused:
                await elsewhere.put("object", b"x")
            shown += [str(refused.value), repr(refused.value)]
        finally:
            await elsewhere.close()
    finally:
        await opened.close()
    assert not leaks("\n".join(shown)), shown


async def test_wal_through_the_sidecar_at_debug(
    resolved: tuple[Manifests, ResolvedStore], workdir: Path, debug_log: io.StringIO
) -> None:
    _, store = resolved
    targets = StaticWalTargets(store, "pg", workdir / "spool")
    server = PluginServer(assemble(Role.INSTANCE, wal_targets=targets))
    await server.start_unix(workdir / PLUGIN_NAME)
    channel = Channel(path=str(workdir / PLUGIN_NAME))
    errors: list[str] = []
    try:
        wal = wal_grpc.WALStub(channel)
        (workdir / "pg_wal").mkdir()
        segment = workdir / "pg_wal" / SEGMENT
        segment.write_bytes(b"\x07" * 1024 * 1024)
        await wal.Archive(wal_pb2.WALArchiveRequest(source_file_name=str(segment)))
        await wal.Restore(
            wal_pb2.WALRestoreRequest(
                source_wal_name=SEGMENT, destination_file_name=str(workdir / "RECOVERYXLOG")
            )
        )
        for request in (
            wal_pb2.WALRestoreRequest(
                source_wal_name="0000000100000000000000FF", destination_file_name=str(workdir / "X")
            ),
            wal_pb2.WALRestoreRequest(source_wal_name="../x", destination_file_name=str(workdir / "X")),
        ):
            with pytest.raises(GRPCError) as failed:
                await wal.Restore(request)
            errors.append(str(failed.value))
    finally:
        channel.close()
        await server.stop()
        await targets.close()
    assert (workdir / "RECOVERYXLOG").read_bytes() == segment.read_bytes()
    captured = debug_log.getvalue()
    assert '"level": "debug"' in captured  # DEBUG was on
    assert not leaks(captured + "\n".join(errors)), [line for line in captured.splitlines() if leaks(line)][
        :5
    ]


async def test_backup_and_restore_on_s3_at_debug(
    resolved: tuple[Manifests, ResolvedStore],
    postgres_factory: Callable[..., PostgresServer],
    workdir: Path,
    debug_log: io.StringIO,
) -> None:
    _, store = resolved
    server = postgres_factory(15)
    layout = ServerLayout(parse_destination(store.destination).prefix, "pg")
    s3 = open_store(store.destination, store.credentials, store.options)
    try:
        settings = settings_from(
            store.object_store.spec.configuration, wait_for_archive=False, immediate_checkpoint=True
        )
        done = await take_backup(s3, layout, server.conninfo, settings)
        result = await restore_backup(s3, layout, done.backup_id, workdir / "restored")
        with pytest.raises(BarmanCloudError) as failed:
            await restore_backup(s3, layout, "20000101T000000", workdir / "other")
    finally:
        await s3.close()
    assert (result.destination / "PG_VERSION").exists()
    captured = debug_log.getvalue()
    assert '"level": "debug"' in captured
    assert not leaks(captured + str(failed.value)), [line for line in captured.splitlines() if leaks(line)][
        :5
    ]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "--log-level", "debug", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_tools_with_secrets_in_their_file(moto_s3: MotoS3, workdir: Path) -> None:
    path = workdir / "store.yaml"
    path.write_text(manifest(moto_s3, f"secrets-cli-{uuid.uuid4().hex[:8]}"))
    source = ["-f", str(path), "--server-name", "pg"]
    segment = workdir / SEGMENT
    segment.write_bytes(b"\x05" * 65536)
    results = [
        _cli("wal-archive", *source, str(segment)),
        _cli("wal-restore", *source, SEGMENT, str(workdir / "back")),
        _cli("wal-restore", *source, "0000000100000000000000AA", str(workdir / "missing")),
        _cli("backup-list", *source),
    ]
    assert [r.returncode for r in results] == [0, 0, 1, 0], [r.stderr[-2000:] for r in results]
    assert (workdir / "back").read_bytes() == segment.read_bytes()
    output = "\n".join(r.stdout + r.stderr for r in results)
    assert '"level": "debug"' in output
    assert not leaks(output), [line for line in output.splitlines() if leaks(line)][:5]

    # A manifests file the tool refuses: its messages quote the file, never the values.
    broken = workdir / "broken.yaml"
    broken.write_text(
        path.read_text().replace(f'SESSION_TOKEN: "{SESSION_TOKEN}"', f'SESSION_TOKEN: "{SESSION_TOKEN}')
    )
    refused = _cli("wal-restore", "-f", str(broken), "--server-name", "pg", SEGMENT, str(workdir / "x"))
    assert refused.returncode == 3 and "not valid YAML" in refused.stderr
    assert not leaks(refused.stdout + refused.stderr), refused.stderr


async def test_library_request_dumps_at_trace_are_scrubbed(
    resolved: tuple[Manifests, ResolvedStore], workdir: Path, debug_log: io.StringIO
) -> None:
    """At ``trace`` botocore's own DEBUG output is let through, except the loggers that print
    credentials (signed canonical requests with the session token, STS answers: values that are
    not in a Secret, so scrubbing could not catch them); the Secret's values are replaced in every
    line anyway."""
    logs.configure("trace", debug_log)
    _, store = resolved
    s3 = open_store(store.destination, store.credentials, store.options)
    try:
        await s3.put("probe/object", b"payload")
        assert [chunk async for chunk in s3.get("probe/object")] == [b"payload"]
    finally:
        await s3.close()
    captured = debug_log.getvalue()
    assert '"logger": "botocore' in captured
    assert "x-amz-security-token" not in captured.lower() and "authorization" not in captured.lower()
    for name in logs.CREDENTIAL_LOGGERS:
        assert f'"logger": "{name}"' not in captured, name
    assert not leaks(captured), [line for line in captured.splitlines() if leaks(line)][:5]
