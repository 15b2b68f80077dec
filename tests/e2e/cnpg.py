"""What CloudNativePG does around our sidecars, for the e2e scenarios (b)-(e): the ObjectStore on
each emulator, the Pod's sidecar reading it through the Kubernetes API (kmock), a standby cloned
with pg_basebackup (its ``join`` Job) and fed through ``restore_command``, the ``full-recovery``
Job (``RestoreJobHooks.Restore``, then PostgreSQL started with the configuration it returned).

Kubernetes-mode sidecars ask kmock, which is served by the test's own event loop: while one runs,
the test must never block the loop (PostgreSQL's commands reach the sidecar, which reaches kmock),
so everything that waits here is ``async`` and blocking work goes through ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shlex
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from grpclib.client import Channel
from kubernetes_asyncio import client

from barman_cloud.config.manifests import parse_manifests
from barman_cloud.config.secrets import ResolvedStore, resolve
from barman_cloud.format.keys import ServerLayout
from barman_cloud.format.wal import WalName
from barman_cloud.storage import ObjectInfo, Store
from barman_cloud.storage.factory import open_store
from barman_cloud.storage.location import parse_destination
from barman_cloud.wal.prefetch import spool_key
from plugin_grpc.cnpg_caller import handshake
from plugin_grpc.healthcheck import EXIT_SERVING, check_unix
from plugin_grpc.metadata import PLUGIN_NAME
from plugin_grpc.proto import backup_grpc, backup_pb2, restore_job_grpc, restore_job_pb2
from tests.compat.conftest import _azure, _ensure_container, _gcs, _s3
from tests.e2e.conftest import CLI, Sidecar, store_manifest
from tests.harness.postgres import PostgresServer, as_postgres
from tests.harness.processes import ManagedProcess, tail

NAMESPACE = "db"
STORE_NAME = "shared"  # the ObjectStore of tests.compat's manifests
SERVER = "pg"
PROVIDERS = ["s3", "azure", "gcs"]
TUNING = (
    "    wal: {compression: gzip, maxParallel: 4}\n"
    "    data: {compression: lz4, jobs: 2, immediateCheckpoint: true}\n"
)
CNPG_RESTORE_COMMAND = "/controller/manager wal-restore --log-destination /controller/log/postgres.json %f %p"


# --- the object store ---------------------------------------------------------------------------


async def provider_bucket(
    request: pytest.FixtureRequest, provider: str
) -> tuple[str, list[str], dict[str, str], str]:
    """A fresh prefix on ``provider``'s emulator: destination, barman-cloud's provider options and
    environment, and the ObjectStore manifest (with its Secrets) a user applies for it."""
    prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    if provider == "s3":
        return _s3(request.getfixturevalue("moto_s3"), prefix)
    if provider == "azure":
        azurite = request.getfixturevalue("azurite")
        await _ensure_container(azurite)
        return _azure(azurite, prefix)
    if provider == "gcs":
        return _gcs(request.getfixturevalue("fake_gcs"), prefix)
    raise ValueError(f"unknown provider {provider}")


def with_tuning(manifest: str, tuning: str = TUNING) -> str:
    # The ObjectStore's configuration block ends the first document: add the tuning there.
    head, _, secrets = manifest.partition("---")
    return head.rstrip() + "\n" + tuning + ("---" + secrets if secrets else "")


async def provider_store(
    request: pytest.FixtureRequest, provider: str, workdir: Path, tuning: str = TUNING
) -> Path:
    """The manifest file (ObjectStore + Secrets) of a fresh prefix on ``provider``."""
    _, _, _, manifest = await provider_bucket(request, provider)
    return store_manifest(workdir, with_tuning(manifest, tuning))


async def resolved_store(manifest: Path) -> tuple[ResolvedStore, Store, ServerLayout]:
    """What the sidecars see, for the test to look into the bucket itself (close the Store)."""
    manifests = parse_manifests(manifest.read_text())
    resolved = await resolve(manifests.object_store(), manifests, environ={})
    store = open_store(resolved.destination, resolved.credentials, resolved.options)
    return resolved, store, ServerLayout(parse_destination(resolved.destination).prefix, SERVER)


async def wal_keys(store: Store, layout: ServerLayout, name: str) -> list[str]:
    """The bucket keys holding WAL file ``name`` (any compression suffix)."""
    wal = WalName.parse(name)
    keys = []
    async for info in store.list(layout.wal_dir(wal)):
        assert isinstance(info, ObjectInfo)  # no delimiter: objects only
        parsed = layout.parse_wal_key(info.key)
        if parsed is not None and parsed[0].name == name:
            keys.append(info.key)
    return keys


# --- sidecars in Kubernetes mode ----------------------------------------------------------------


async def load_into_kubernetes(kmock: Any, manifest: Path) -> None:
    """Apply the ObjectStore and its Secrets to kmock's emulator, in namespace ``db``."""
    kmock.resources["v1/secrets"] = {"kind": "Secret", "namespaced": True, "verbs": ["get", "list", "create"]}
    kmock.resources["barmancloud.cnpg.io/v1/objectstores"] = {
        "kind": "ObjectStore", "namespaced": True, "verbs": ["get", "list", "create"],
    }  # fmt: skip
    api = client.ApiClient(client.Configuration(host=str(kmock.url).rstrip("/")))
    try:
        for document in yaml.safe_load_all(manifest.read_text()):
            if not document:
                continue
            document.setdefault("metadata", {})["namespace"] = NAMESPACE
            if document["kind"] == "Secret":
                # What the API server does with stringData.
                data = {k: str(v) for k, v in (document.pop("stringData", None) or {}).items()}
                document["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
                await client.CoreV1Api(api).create_namespaced_secret(NAMESPACE, document)
            else:
                await client.CustomObjectsApi(api).create_namespaced_custom_object(
                    "barmancloud.cnpg.io", "v1", NAMESPACE, "objectstores", document
                )
    finally:
        await api.close()


def cluster_file(workdir: Path, name: str, cluster: Mapping[str, Any]) -> Path:
    path = workdir / f"cluster-{name}.json"
    path.write_text(json.dumps(cluster))
    path.chmod(0o644)
    return path


async def start_kubernetes_sidecar(
    kmock: Any,
    workdir: Path,
    pod: str,
    cluster: Mapping[str, Any],
    role: str = "instance",
    pgdata: Path | None = None,
) -> Sidecar:
    """The ``role`` sidecar (instance, or restore in a recovery Job) of Pod ``pod``, reading
    ObjectStores and Secrets through kmock; the instance manager sends ``cluster`` with every call."""
    kubeconfig = workdir / "kubeconfig"
    if not kubeconfig.exists():
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\ncurrent-context: k\n"
            f"clusters: [{{name: k, cluster: {{server: '{str(kmock.url).rstrip('/')}'}}}}]\n"
            "users: [{name: u, user: {token: t}}]\ncontexts: [{name: k, context: {cluster: k, user: u}}]\n"
        )
        kubeconfig.chmod(0o644)
    socket = workdir / f"plugins-{pod}" / PLUGIN_NAME
    spool = workdir / f"spool-{pod}"
    environment = {
        "PYTHONUNBUFFERED": "1", "KUBECONFIG": str(kubeconfig), "POD_NAME": pod, "NAMESPACE": NAMESPACE,
        **({"PGDATA": str(pgdata)} if pgdata else {}),
    }  # fmt: skip
    command = [CLI, "--log-level", "debug", role, "--socket", str(socket), "--spool-dir", str(spool)]
    log = workdir / f"{pod}.log"
    process = ManagedProcess(
        f"{pod} sidecar", as_postgres(["env", *(f"{k}={v}" for k, v in environment.items()), *command]), log
    )
    deadline = time.monotonic() + 60
    while not (socket.exists() and (await check_unix(str(socket), timeout=2))[0] == EXIT_SERVING):
        assert process.process.poll() is None, tail(log)
        assert time.monotonic() < deadline, tail(log)
        await asyncio.sleep(0.1)
    return Sidecar(process, socket, workdir, cluster_file(workdir, pod, cluster), spool)


async def manager(sidecar: Sidecar, *args: str) -> tuple[int, str]:
    """``/controller/manager wal-restore|wal-archive ...`` against ``sidecar``, without blocking
    the loop: (exit status, stderr)."""
    result = await asyncio.to_thread(sidecar.manager, *args)
    return result.returncode, result.stderr


# --- PostgreSQL ---------------------------------------------------------------------------------


def current_wal(server: PostgresServer) -> str:
    return str(server.query("SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0])


async def wait_archived(server: PostgresServer, wal: str, timeout: float = 120) -> str:
    """Wait until ``wal`` (or a later one) is archived; returns the last archived WAL."""
    deadline = time.monotonic() + timeout
    while True:
        last, failed = server.query("SELECT last_archived_wal, failed_count FROM pg_stat_archiver")[0]
        if last and last >= wal:
            return str(last)
        assert time.monotonic() < deadline, f"{wal} not archived ({failed} failures)\n{tail(server.log_path)}"
        await asyncio.sleep(0.2)


async def switch_and_archive(server: PostgresServer) -> str:
    """Close the current segment and wait for its archiving; returns its name."""
    wal = current_wal(server)
    server.query("SELECT pg_switch_wal()")
    return await wait_archived(server, wal)


async def wait_for(
    what: str, check: Callable[[], bool], server: PostgresServer | None = None, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what}: not after {timeout:.0f}s\n" + (
            tail(server.log_path) if server else ""
        )
        await asyncio.sleep(0.2)


def phases(server: PostgresServer) -> dict[str, int]:
    return {str(k): int(v) for k, v in server.query("SELECT phase, count(*) FROM events GROUP BY phase")}


def append_configuration(server: PostgresServer, lines: list[str], signal: str | None = None) -> None:
    """Append to postgresql.auto.conf (read last) and create ``signal`` (standby/recovery.signal)."""
    script = f"cat >> {server.datadir}/postgresql.auto.conf"
    if signal:
        script += f" && touch {server.datadir}/{signal}"
    subprocess.run(as_postgres(["sh", "-c", script]), input="\n".join(lines) + "\n", text=True, check=True)


def own_settings(server: PostgresServer) -> list[str]:
    return [f"port = {server.port}", f"unix_socket_directories = '{server.socket_dir}'"]


def empty_datadir(server: PostgresServer) -> None:
    server.stop()
    subprocess.run(
        as_postgres(["sh", "-c", f"rm -rf {server.datadir} && mkdir -m 700 {server.datadir}"]), check=True
    )


def clone_standby(primary: PostgresServer, standby: PostgresServer, wal: str, settings: list[str]) -> None:
    """CloudNativePG's ``join``: pg_basebackup of the primary into the standby's (emptied) PGDATA,
    with ``settings`` appended and ``standby.signal``. Not started. ``wal``: pg_basebackup -X
    (``none``: every WAL from the archive, as the server waits for the backup's WAL to be archived)."""
    empty_datadir(standby)
    subprocess.run(
        as_postgres([str(standby.bindir / "pg_basebackup"), "-D", str(standby.datadir), "-h", "127.0.0.1",
                     "-p", str(primary.port), "-U", "postgres", "-X", wal, "-c", "fast"]),
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    append_configuration(standby, [*own_settings(standby), *settings], "standby.signal")


async def take_backup(instance: Sidecar, cluster: str = "pg") -> backup_pb2.BackupResult:
    """A ``Backup`` with ``method: plugin``: the instance manager's ``Backup.Backup`` call."""
    channel = Channel(path=str(instance.socket))
    try:
        await handshake(channel)
        result: backup_pb2.BackupResult = await backup_grpc.BackupStub(channel).Backup(
            backup_pb2.BackupRequest(
                cluster_definition=json.dumps(
                    {"metadata": {"name": cluster, "namespace": NAMESPACE, "uid": f"u-{cluster}"}}
                ).encode(),
                backup_definition=json.dumps(
                    {"metadata": {"name": "on-demand"}, "spec": {"method": "plugin"}}
                ).encode(),
            ),
            timeout=600,
        )
    finally:
        channel.close()
    assert result.backup_id and result.end_wal
    return result


def barman_backup(
    args: list[str], env: Mapping[str, str], destination: str, server: PostgresServer, tmp: Path
) -> None:
    """``barman-cloud-backup`` of ``server`` (what the in-tree barmanObjectStore runs); ``tmp`` must
    be a short path (its multiprocessing manager binds a unix socket there)."""
    from tests.harness.tools import barman_cloud_bin

    result = subprocess.run(
        [str(barman_cloud_bin("barman-cloud-backup")), *args, "--immediate-checkpoint", "-h", "127.0.0.1",
         "-p", str(server.port), "-U", "postgres", destination, SERVER],
        env={"PATH": "/usr/bin:/bin", **env, "TMPDIR": str(tmp)},
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"barman-cloud-backup: {result.stderr[-3000:]}"


async def restore_job(
    job: Sidecar, cluster: Mapping[str, Any], pgdata: PostgresServer, recovery_settings: list[str]
) -> PostgresServer:
    """The ``full-recovery`` Job: RestoreJobHooks.Restore through ``job`` (the restore sidecar of
    an emptied ``pgdata``), then CloudNativePG's configuration (our answer, its manager swapped for
    the CNPG-I client, then its recovery target), recovery.signal, PostgreSQL started and waited
    for until it promoted."""
    channel = Channel(path=str(job.socket))
    try:
        result = await handshake(channel)
        assert result.services["RestoreJobHooks"] == ["KIND_RESTORE"]
        answer = await restore_job_grpc.RestoreJobHooksStub(channel).Restore(
            restore_job_pb2.RestoreRequest(
                cluster_definition=json.dumps(cluster).encode(), check_empty_wal_archive=False
            ),
            timeout=600,
        )
    finally:
        channel.close()
    assert "recovery_target_action = promote" in answer.restore_config
    assert f"restore_command = '{CNPG_RESTORE_COMMAND}'" in answer.restore_config
    ours = job.restore_command()
    lines = [
        answer.restore_config.replace(CNPG_RESTORE_COMMAND, ours),
        *recovery_settings,
        *own_settings(pgdata),
        "archive_command = ''",
    ]
    append_configuration(pgdata, lines, "recovery.signal")
    await asyncio.to_thread(pgdata.start)
    await wait_for("recovery", lambda: not pgdata.query("SELECT pg_is_in_recovery()")[0][0], pgdata)
    return pgdata


def recovery_cluster(
    recovery_target: Mapping[str, Any] | None = None, object_name: str = STORE_NAME
) -> dict[str, Any]:
    """A Cluster bootstrapped by recovery from the ObjectStore's server ``pg``."""
    recovery: dict[str, Any] = {"source": "origin"}
    if recovery_target:
        recovery["recoveryTarget"] = dict(recovery_target)
    return {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": {"name": "restored", "namespace": NAMESPACE, "uid": "u-restored"},
        "spec": {
            "externalClusters": [
                {
                    "name": "origin",
                    "plugin": {
                        "name": PLUGIN_NAME,
                        "parameters": {"barmanObjectName": object_name, "serverName": SERVER},
                    },
                }
            ],
            "bootstrap": {"recovery": recovery},
        },
    }


def barman_wal_archive_command(args: list[str], env: Mapping[str, str], destination: str) -> str:
    """``barman-cloud-wal-archive`` as the in-tree barmanObjectStore's archive_command (as the
    postgres user)."""
    from tests.harness.tools import barman_cloud_bin

    program = str(barman_cloud_bin("barman-cloud-wal-archive"))
    command = ["env", *(f"{k}={v}" for k, v in env.items()), program, *args, destination, SERVER]
    return shlex.join(command) + " %p"


def spool_of(sidecar: Sidecar, resolved: ResolvedStore) -> Path:
    """Where ``sidecar`` prefetches segments of server ``pg`` of ``resolved``."""
    assert sidecar.spool is not None
    return sidecar.spool / spool_key(resolved.destination, SERVER)


def spooled(spool: Path) -> set[str]:
    """Complete files in a spool (temporary files start with a dot)."""
    try:
        return {p.name for p in spool.iterdir() if not p.name.startswith(".")}
    except FileNotFoundError:
        return set()
