"""Operator.SetStatusInCluster replayed as CloudNativePG calls it at the end of each reconciliation:
the status object is answered once, then nothing until it changes (any answer makes CloudNativePG
requeue the Cluster after 5 s).

The archive ObjectStore's status is served by kmock's KubernetesEmulator over HTTP (no schema
validation, no RBAC)."""

from __future__ import annotations

import json
from typing import Any

from plugin_grpc.metadata import PLUGIN_NAME
from tests.plugin_grpc.operator_side.conftest import CloudNativePG, Kube, load, minio_store

EXPECTED = {
    "archive": {
        "objectStore": "minio-store",
        "serverName": "pg1",
        "recoveryWindow": {
            "firstRecoverabilityPoint": "2026-08-20T10:00:00Z",
            "lastSuccessfulBackupTime": "2026-08-21T10:00:00Z",
        },
    },
    "walArchiver": True,
    "continuousArchiving": {
        "status": "True",
        "reason": "ContinuousArchivingSuccess",
        "message": "Continuous archiving is working",
        "lastTransitionTime": "2026-08-20T09:19:12Z",
    },
}


def _stored(cluster: dict[str, Any], status: bytes) -> dict[str, Any]:
    """The Cluster as CloudNativePG leaves it: our answer stored verbatim as a string."""
    entry = next(e for e in cluster["status"]["pluginStatus"] if e["name"] == PLUGIN_NAME)
    entry["status"] = status.decode()
    return cluster


async def test_the_status_is_answered_once_then_empty(cnpg: CloudNativePG) -> None:
    cluster = load("cluster.json")
    status = await cnpg.set_status(cluster)
    assert json.loads(status) == EXPECTED
    cluster = _stored(cluster, status)
    assert await cnpg.set_status(cluster) == b""
    assert await cnpg.set_status(cluster) == b""


async def test_a_change_is_answered_again(cnpg: CloudNativePG, kube: Kube) -> None:
    cluster = _stored(load("cluster.json"), await cnpg.set_status(load("cluster.json")))
    store = minio_store()
    store["status"]["serverRecoveryWindow"]["pg1"]["lastFailedBackupTime"] = "2026-08-22T01:00:00Z"
    await kube.put_store(store)
    answer = json.loads(await cnpg.set_status(cluster))
    assert answer["archive"]["recoveryWindow"]["lastFailedBackupTime"] == "2026-08-22T01:00:00Z"

    failing = _stored(load("cluster.json"), json.dumps(answer).encode())
    condition = failing["status"]["conditions"][1]
    condition.update(status="False", reason="ContinuousArchivingFailing", message="unexpected failure")
    assert json.loads(await cnpg.set_status(failing))["continuousArchiving"]["status"] == "False"


async def test_key_order_and_spacing_of_the_stored_string_do_not_matter(cnpg: CloudNativePG) -> None:
    cluster = _stored(load("cluster.json"), json.dumps(EXPECTED, indent=2).encode())
    assert await cnpg.set_status(cluster) == b""


async def test_a_cluster_that_does_not_archive_through_the_plugin_gets_nothing(cnpg: CloudNativePG) -> None:
    cluster = load("cluster.json")
    del cluster["spec"]["plugins"]
    assert await cnpg.set_status(cluster) == b""


async def test_a_missing_archive_store_is_reported_in_the_status(cnpg: CloudNativePG, kube: Kube) -> None:
    await kube.delete_store("minio-store")
    answer = json.loads(await cnpg.set_status(load("cluster.json")))
    assert "recoveryWindow" not in answer["archive"]
    assert "ObjectStore db/minio-store does not exist" in answer["archive"]["problem"]
