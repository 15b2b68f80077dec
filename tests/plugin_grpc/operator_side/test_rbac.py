"""ReconcilerHooks.Pre and Post replayed as CloudNativePG calls them: the per-cluster Role and
RoleBinding written to a Kubernetes API, and the requeue (with an Event) while an ObjectStore
is missing.

The API is kmock's KubernetesEmulator over real HTTP. It does not validate schemas and does not
enforce RBAC (a Role here grants nothing; what is checked is what we write). Its resourceVersion
handling is conftest's addition (a new version per write, 409 for a stale one), so the
optimistic-locking retry is exercised, but not every conflict a real API server can produce.
"""

from __future__ import annotations

from typing import Any

import kmock
import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from kubernetes_asyncio import client

from barman_cloud import __version__
from barman_cloud.config.object_store import parse_object_store
from plugin_grpc.operator_side import rbac
from plugin_grpc.operator_side.cluster import cluster_identity
from plugin_grpc.proto import reconciler_pb2
from tests.plugin_grpc.operator_side.conftest import (
    NAMESPACE,
    ROLE_BINDINGS,
    ROLES,
    CloudNativePG,
    Kube,
    VersionedEmulator,
    iam_store,
    load,
    minio_store,
    origin_store,
    plugin_entry,
)

Result = reconciler_pb2.ReconcilerHooksResult
UID = "2b9f6c3e-6f3a-4c1e-9d41-7c0a5e1b8d20"
LABELS = {
    "barmancloud.cnpg.io/cluster": "pg1",
    "app.kubernetes.io/name": "barman-cloud-plugin",
    "app.kubernetes.io/instance": "pg1",
    "app.kubernetes.io/version": __version__,
    "app.kubernetes.io/component": "database",
    "app.kubernetes.io/managed-by": "plugin-barman-cloud",
}
OWNER = {
    "apiVersion": "postgresql.cnpg.io/v1",
    "kind": "Cluster",
    "name": "pg1",
    "uid": UID,
    "controller": True,
    "blockOwnerDeletion": True,
}


def _store_rules(*names: str) -> list[dict[str, Any]]:
    group = ["barmancloud.cnpg.io"]
    return [
        {"apiGroups": group, "resources": ["objectstores"], "verbs": ["get", "watch", "list"],
         "resourceNames": list(names)},
        {"apiGroups": group, "resources": ["objectstores/status"], "verbs": ["patch", "update"],
         "resourceNames": list(names)},
    ]  # fmt: skip


def _secret_rule(*names: str) -> dict[str, Any]:
    return {
        "apiGroups": [""],
        "resources": ["secrets"],
        "verbs": ["get", "watch", "list"],
        "resourceNames": list(names),
    }


def _role(kube: Kube) -> dict[str, Any]:
    role = kube.get(ROLES, "pg1-barman-cloud")
    assert role is not None
    return role


def _binding(kube: Kube) -> dict[str, Any]:
    binding = kube.get(ROLE_BINDINGS, "pg1-barman-cloud")
    assert binding is not None
    return binding


async def test_pre_creates_the_role_and_the_binding(cnpg: CloudNativePG, kube: Kube) -> None:
    result = await cnpg.pre(load("cluster.json"))
    assert result.behavior == Result.BEHAVIOR_CONTINUE
    role = _role(kube)
    assert role["metadata"]["labels"] == LABELS
    assert role["metadata"]["ownerReferences"] == [OWNER]
    # Archive and recovery stores, sorted; every Secret they reference (endpointCA included:
    # our sidecar reads it through the API), sorted.
    assert role["rules"] == [
        *_store_rules("minio-store", "origin-store"),
        _secret_rule("minio", "minio-server-tls", "origin-aws", "origin-region"),
    ]
    binding = _binding(kube)
    assert binding["metadata"]["labels"] == LABELS
    assert binding["metadata"]["ownerReferences"] == [OWNER]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "pg1-barman-cloud",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "pg1", "namespace": NAMESPACE}]


async def test_pre_is_a_no_op_once_everything_is_in_place(cnpg: CloudNativePG, kube: Kube) -> None:
    await cnpg.pre(load("cluster.json"))
    writes = len(kube.requests())
    assert (await cnpg.pre(load("cluster.json"))).behavior == Result.BEHAVIOR_CONTINUE
    methods = [request.method for request in kube.requests()[writes:]]
    assert set(methods) == {kmock.method.GET}


async def test_the_owner_reference_follows_the_request_api_group(cnpg: CloudNativePG, kube: Kube) -> None:
    cluster = load("cluster.json")
    cluster["apiVersion"] = "postgresql.example.com/v1"
    await cnpg.pre(cluster)
    assert _role(kube)["metadata"]["ownerReferences"] == [
        {**OWNER, "apiVersion": "postgresql.example.com/v1"}
    ]


async def test_no_secrets_rule_when_no_secret_is_referenced(cnpg: CloudNativePG, kube: Kube) -> None:
    # Upstream writes a secrets rule without names then: every Secret of the namespace (#892).
    await kube.put_store(iam_store())
    cluster = load("cluster.json")
    plugin_entry(cluster)["parameters"]["barmanObjectName"] = "iam-store"
    del cluster["spec"]["bootstrap"]
    assert (await cnpg.pre(cluster)).behavior == Result.BEHAVIOR_CONTINUE
    rules = _role(kube)["rules"]
    assert rules == _store_rules("iam-store")
    assert all(rule["resourceNames"] for rule in rules)


async def test_changed_credentials_update_the_rules_and_keep_foreign_labels(
    cnpg: CloudNativePG, kube: Kube
) -> None:
    await cnpg.pre(load("cluster.json"))
    key = (ROLES, NAMESPACE, "pg1-barman-cloud")
    kube.emulator.objects[key].patch({"metadata": {"labels": {"team": "dba"}}})
    rotated = minio_store()
    credentials = rotated["spec"]["configuration"]["s3Credentials"]
    credentials["accessKeyId"]["name"] = credentials["secretAccessKey"]["name"] = "minio-2026"
    await kube.put_store(rotated)
    await cnpg.pre(load("cluster.json"))
    role = _role(kube)
    assert role["rules"][-1] == _secret_rule("minio-2026", "minio-server-tls", "origin-aws", "origin-region")
    assert role["metadata"]["labels"] == {**LABELS, "team": "dba"}


async def test_the_object_store_controller_can_refresh_the_rules(cnpg: CloudNativePG, kube: Kube) -> None:
    # What the ObjectStore controller (issue #8) calls when an ObjectStore changes.
    await cnpg.pre(load("cluster.json"))
    names = rbac.object_store_names(_role(kube))
    assert names == ["minio-store", "origin-store"]
    stores = [parse_object_store(iam_store(name)) for name in names]
    updated = await rbac.refresh_role_rules(kube.api, NAMESPACE, "pg1-barman-cloud", stores)
    assert updated is not None
    assert _role(kube)["rules"] == _store_rules("minio-store", "origin-store")
    assert _role(kube)["metadata"]["labels"] == LABELS
    assert await rbac.refresh_role_rules(kube.api, NAMESPACE, "absent-barman-cloud", stores) is None
    assert kube.get(ROLES, "absent-barman-cloud") is None


async def test_a_concurrent_change_is_retried_not_overwritten(cnpg: CloudNativePG, kube: Kube) -> None:
    await cnpg.pre(load("cluster.json"))
    await kube.put_store(iam_store("minio-store"))

    def someone_else(emulator: VersionedEmulator, request: kmock.Request) -> None:
        # Between our read and our write, another client labels the Role.
        role = emulator.objects[ROLES, NAMESPACE, "pg1-barman-cloud"]
        role.patch({"metadata": {"labels": {"team": "dba"}, "resourceVersion": emulator.bump()}})

    kube.emulator.before_update.append(someone_else)
    assert (await cnpg.pre(load("cluster.json"))).behavior == Result.BEHAVIOR_CONTINUE
    role = _role(kube)
    assert role["metadata"]["labels"]["team"] == "dba"
    assert role["rules"][-1] == _secret_rule("origin-aws", "origin-region")
    patches = [r for r in kube.requests() if r.method == kmock.method.PATCH]
    assert len(patches) == 2  # the refused one, then the one made after reading again


async def test_subjects_are_only_added(cnpg: CloudNativePG, kube: Kube) -> None:
    binding = rbac.role_binding_spec(cluster_identity(load("cluster.json")))
    binding["subjects"] = [{"kind": "ServiceAccount", "name": "backup-auditor", "namespace": "audit"}]
    await _create_binding(kube, binding)
    await cnpg.pre(load("cluster.json"))
    assert _binding(kube)["subjects"] == [
        {"kind": "ServiceAccount", "name": "backup-auditor", "namespace": "audit"},
        {"kind": "ServiceAccount", "name": "pg1", "namespace": NAMESPACE},
    ]


async def test_a_binding_to_another_role_is_a_clear_error(cnpg: CloudNativePG, kube: Kube) -> None:
    binding = rbac.role_binding_spec(cluster_identity(load("cluster.json")))
    binding["roleRef"] = {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"}
    await _create_binding(kube, binding)
    with pytest.raises(GRPCError) as failure:
        await cnpg.pre(load("cluster.json"))
    assert failure.value.status is Status.FAILED_PRECONDITION
    message = str(failure.value.message)
    assert "RoleBinding db/pg1-barman-cloud refers to ClusterRole 'edit'" in message
    assert "delete the RoleBinding" in message
    assert _binding(kube)["roleRef"]["name"] == "edit"  # left as it was


async def _create_binding(kube: Kube, binding: dict[str, Any]) -> None:
    await client.RbacAuthorizationV1Api(kube.api).create_namespaced_role_binding(NAMESPACE, binding)  # type: ignore[arg-type]


async def test_a_missing_object_store_requeues_with_an_event(cnpg: CloudNativePG, kube: Kube) -> None:
    await kube.delete_store("origin-store")
    for _ in range(2):
        result = await cnpg.pre(load("cluster.json"))
        assert result.behavior == Result.BEHAVIOR_REQUEUE
        assert result.requeue_after == 10
    assert kube.get(ROLES, "pg1-barman-cloud") is None  # nothing granted for a half-configured Cluster
    events = kube.events()
    assert len(events) == 1  # seen twice, recorded once with a count
    event = events[0]
    assert event["type"] == "Warning"
    assert event["reason"] == "ObjectStoreNotFound"
    assert event["count"] == 2
    assert event["involvedObject"] == {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "name": "pg1",
        "namespace": NAMESPACE,
        "uid": UID,
    }
    assert "ObjectStore db/origin-store does not exist" in event["message"]
    assert "spec.externalClusters[0].plugin.parameters.barmanObjectName" in event["message"]
    # Once it exists, the reconciliation goes on.
    await kube.put_store(origin_store())
    assert (await cnpg.pre(load("cluster.json"))).behavior == Result.BEHAVIOR_CONTINUE


async def test_clusters_without_the_plugin_continue_and_get_nothing(cnpg: CloudNativePG, kube: Kube) -> None:
    cluster = load("cluster.json")
    del cluster["spec"]["plugins"], cluster["spec"]["bootstrap"]
    assert (await cnpg.pre(cluster)).behavior == Result.BEHAVIOR_CONTINUE
    assert kube.get(ROLES, "pg1-barman-cloud") is None


async def test_backups_pass_through(cnpg: CloudNativePG, kube: Kube) -> None:
    backup = {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Backup",
        "metadata": {"name": "pg1-nightly", "namespace": NAMESPACE, "uid": "0d6c2a8e-backup"},
        "spec": {"cluster": {"name": "pg1"}, "method": "plugin", "pluginConfiguration": {"name": "x"}},
    }
    assert (await cnpg.pre(load("cluster.json"), backup)).behavior == Result.BEHAVIOR_CONTINUE
    assert kube.get(ROLES, "pg1-barman-cloud") is None


async def test_post_continues(cnpg: CloudNativePG) -> None:
    assert (await cnpg.post(load("cluster.json"))).behavior == Result.BEHAVIOR_CONTINUE


async def test_malformed_parameters_fail_pre_clearly(cnpg: CloudNativePG) -> None:
    cluster = load("cluster.json")
    plugin_entry(cluster)["parameters"] = {"serverName": "pg1"}
    with pytest.raises(GRPCError) as failure:
        await cnpg.pre(cluster)
    assert failure.value.status is Status.INVALID_ARGUMENT
    assert "spec.plugins[0].parameters.barmanObjectName: required" in str(failure.value.message)
