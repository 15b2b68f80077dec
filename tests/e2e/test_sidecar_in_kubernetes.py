"""The instance sidecar as in a Pod: ObjectStores and Secrets read through the Kubernetes API
(kmock's KubernetesEmulator over real HTTP: it does not check schemas, RBAC or resourceVersions),
the store chosen from the Cluster JSON CloudNativePG sends and the Pod's role, and the end of the
WAL stream reported to standbys as OUT_OF_RANGE."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client

from barman_cloud.format.keys import ServerLayout
from barman_cloud.storage.factory import open_store
from barman_cloud.wal.archive import WalArchiver
from plugin_grpc.healthcheck import EXIT_SERVING, check_unix
from plugin_grpc.metadata import PLUGIN_NAME

CLI = str(Path(sys.executable).with_name("barman-cloud-plugin"))
SEG = "000000010000000000000003"


def object_store(name: str, bucket: Path) -> dict[str, Any]:
    return {
        "apiVersion": "barmancloud.cnpg.io/v1",
        "kind": "ObjectStore",
        "metadata": {"name": name, "namespace": "db"},
        "spec": {"configuration": {"destinationPath": f"file://{bucket}", "wal": {"maxParallel": 2}}},
    }


def cluster(current_primary: str) -> dict[str, Any]:
    return {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": {"name": "pg", "namespace": "db", "uid": "c-1"},
        "spec": {
            "plugins": [
                {"name": PLUGIN_NAME, "isWALArchiver": True, "parameters": {"barmanObjectName": "archive"}}
            ],
            "externalClusters": [
                {
                    "name": "origin",
                    "plugin": {
                        "name": PLUGIN_NAME,
                        "parameters": {"barmanObjectName": "origin", "serverName": "old"},
                    },
                }
            ],
            "bootstrap": {"recovery": {"source": "origin"}},
        },
        "status": {"currentPrimary": current_primary},
    }


@pytest.fixture
async def sidecar(kmock: Any, tmp_path: Path) -> AsyncIterator[Path]:
    kmock.resources["v1/secrets"] = {"kind": "Secret", "namespaced": True, "verbs": ["get", "list", "create"]}
    kmock.resources["barmancloud.cnpg.io/v1/objectstores"] = {
        "kind": "ObjectStore", "namespaced": True, "verbs": ["get", "list", "create"],
    }  # fmt: skip
    api = client.ApiClient(client.Configuration(host=str(kmock.url).rstrip("/")))
    objects = client.CustomObjectsApi(api)
    for name in ("archive", "origin"):
        body: Any = object_store(name, tmp_path / f"bucket-{name}")
        await objects.create_namespaced_custom_object("barmancloud.cnpg.io", "v1", "db", "objectstores", body)
    await api.close()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: k\n"
        f"clusters: [{{name: k, cluster: {{server: '{str(kmock.url).rstrip('/')}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: k, context: {cluster: k, user: u}}]\n"
    )
    socket = tmp_path / "plugins" / PLUGIN_NAME
    environment = {**os.environ, "KUBECONFIG": str(kubeconfig), "POD_NAME": "pg-1", "NAMESPACE": "db"}
    process = await asyncio.create_subprocess_exec(
        CLI, "instance", "--socket", str(socket), "--spool-dir", str(tmp_path / "spool"),
        env=environment, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        for _ in range(300):
            if (await check_unix(str(socket), timeout=2))[0] == EXIT_SERVING:
                break
            assert process.returncode is None, (await process.communicate())[1].decode()
            await asyncio.sleep(0.1)
        yield socket
    finally:
        process.terminate()
        await process.wait()


async def manager(socket: Path, tmp_path: Path, current_primary: str, *args: str) -> tuple[int, str]:
    cluster_file = tmp_path / f"cluster-{current_primary or 'none'}.json"
    cluster_file.write_text(json.dumps(cluster(current_primary)))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "plugin_grpc.cnpg_manager", "--socket", str(socket), *args,
        env={**os.environ, "CNPG_CLUSTER_JSON": str(cluster_file)}, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stderr.decode()


async def test_archive_goes_to_the_clusters_archive_store(sidecar: Path, tmp_path: Path) -> None:
    pg_wal = tmp_path / "pgdata/pg_wal"
    (pg_wal / "archive_status").mkdir(parents=True)
    (pg_wal / SEG).write_bytes(b"\x07" * 65536)
    code, stderr = await manager(sidecar, tmp_path, "pg-1", "wal-archive", str(pg_wal / SEG))
    assert code == 0, stderr
    assert (tmp_path / f"bucket-archive/pg/wals/0000000100000000/{SEG}").read_bytes() == b"\x07" * 65536


async def test_restore_picks_the_store_by_pod_role_and_reports_the_end_of_the_stream(
    sidecar: Path, tmp_path: Path
) -> None:
    # The recovery source's archive (server "old") and the cluster's own one hold different data.
    for bucket, server, fill in (("origin", "old", b"\x01"), ("archive", "pg", b"\x02")):
        store = open_store(f"file://{tmp_path / f'bucket-{bucket}'}")
        source = tmp_path / f"src-{bucket}"
        source.mkdir()
        (source / SEG).write_bytes(fill * 4096)
        await WalArchiver(store, ServerLayout("", server)).archive(source / SEG)

    # No current primary yet: a recovery Job, reading the recovery source's store.
    code, stderr = await manager(sidecar, tmp_path, "", "wal-restore", SEG, str(tmp_path / "a"))
    assert code == 0, stderr
    assert (tmp_path / "a").read_bytes() == b"\x01" * 4096

    # A standby (the primary is another Pod): the cluster's own archive.
    code, stderr = await manager(sidecar, tmp_path, "pg-2", "wal-restore", SEG, str(tmp_path / "b"))
    assert code == 0, stderr
    assert (tmp_path / "b").read_bytes() == b"\x02" * 4096

    # Prefetching found the next segment missing: a standby is told to stream (OUT_OF_RANGE, 11).
    following = "000000010000000000000004"
    for _ in range(50):
        code, stderr = await manager(sidecar, tmp_path, "pg-2", "wal-restore", following, str(tmp_path / "c"))
        if "code = 11" in stderr:
            break
        assert code == 1 and "code = 5" in stderr, stderr  # NOT_FOUND while prefetch had not finished
        await manager(sidecar, tmp_path, "pg-2", "wal-restore", SEG, str(tmp_path / "b"))
    assert "code = 11" in stderr and "end of WAL reached" in stderr


async def test_metrics_of_a_replica_cluster_that_archives_nothing(sidecar: Path) -> None:
    """A replica cluster fed from its source's archive names no ObjectStore of its own to archive
    to: the scrape still answers (queue empty, no recovery window), as upstream's does."""
    from grpclib.client import Channel

    from plugin_grpc.proto import metrics_grpc, metrics_pb2

    replica = cluster("pg-1")
    del replica["spec"]["plugins"]
    del replica["spec"]["bootstrap"]
    replica["spec"]["replica"] = {"enabled": True, "source": "origin"}
    channel = Channel(path=str(sidecar))
    try:
        result = await metrics_grpc.MetricsStub(channel).Collect(
            metrics_pb2.CollectMetricsRequest(cluster_definition=json.dumps(replica).encode())
        )
    finally:
        channel.close()
    values = {sample.fq_name: sample.value for sample in result.metrics if not sample.variable_labels}
    assert values["barman_cloud_cloudnative_pg_io_wal_archive_queue_depth"] == 0
    assert values["barman_cloud_cloudnative_pg_io_first_recoverability_point"] == 0
