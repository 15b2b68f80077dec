"""The per-cluster Role and RoleBinding that let the sidecar read its ObjectStores and Secrets.

``<cluster>-barman-cloud`` in the Cluster's namespace, owned by the Cluster (so Kubernetes deletes
them with it), bound to the Cluster's ServiceAccount (``<cluster>``, which CloudNativePG creates
for its Pods). The Role grants, on the named objects only:

1. ``barmancloud.cnpg.io`` ``objectstores``: get, watch, list;
2. ``barmancloud.cnpg.io`` ``objectstores/status``: patch, update (the sidecar merge-patches the
   recovery window);
3. core ``secrets``: get, watch, list, on every Secret the ObjectStores reference, ``endpointCA``
   included because our sidecar reads it through the API.

A rule whose ``resourceNames`` list is empty means *every* object of that kind to Kubernetes, so no
such rule is ever written: an ObjectStore authenticating with IAM roles or workload identity
gets no secrets rule at all (upstream grants every Secret of the namespace then, #892).

Writes are merge patches carrying the ``resourceVersion`` read just before (optimistic locking):
if someone else changed the object in between, the API server answers 409 and we read and try
again. Labels we do not own are kept; RoleBinding subjects are only ever added; ``roleRef`` is
immutable in Kubernetes, so a RoleBinding pointing elsewhere is reported, not replaced.

:func:`ensure_rbac` is what ``ReconcilerHooks.Pre`` calls; :func:`refresh_role_rules` is for the
ObjectStore controller, which has the Roles (label ``barmancloud.cnpg.io/cluster``) and the
ObjectStores but not the Cluster.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from barman_cloud import __version__
from barman_cloud.config.object_store import ObjectStore
from barman_cloud.errors import Conflict, FailedPrecondition, InvalidInput
from plugin_grpc.operator_side.api_errors import from_api_exception, from_transport_error
from plugin_grpc.operator_side.cluster import ClusterIdentity, cluster_identity

log = logging.getLogger(__name__)

GROUP = "barmancloud.cnpg.io"
RBAC_GROUP = "rbac.authorization.k8s.io"
NAME_SUFFIX = "-barman-cloud"
CLUSTER_LABEL = "barmancloud.cnpg.io/cluster"
MANAGED_BY = "plugin-barman-cloud"
"""Upstream's value, kept so that Roles made by the upstream plugin are recognised as ours."""
MERGE_PATCH = "application/merge-patch+json"
ATTEMPTS = 5
"""Read-modify-write rounds before giving up on an object that keeps changing under us."""


def object_name(cluster_name: str) -> str:
    """Name of the Role and of the RoleBinding of a Cluster."""
    return f"{cluster_name}{NAME_SUFFIX}"


def labels(cluster: ClusterIdentity) -> dict[str, str]:
    return {
        CLUSTER_LABEL: cluster.name,
        "app.kubernetes.io/name": "barman-cloud-plugin",
        "app.kubernetes.io/instance": cluster.name,
        "app.kubernetes.io/version": __version__,
        "app.kubernetes.io/component": "database",
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def owner_reference(cluster: ClusterIdentity) -> dict[str, Any]:
    """A controller reference to the Cluster, with the API group and version it was sent with
    (CloudNativePG forks run under their own group)."""
    if cluster.uid is None:
        raise InvalidInput(
            f"the JSON of Cluster {cluster.namespace}/{cluster.name} has no metadata.uid",
            hint="the Role and RoleBinding must be owned by the Cluster; send the object as stored",
        )
    return {
        "apiVersion": cluster.api_version,
        "kind": cluster.kind,
        "name": cluster.name,
        "uid": cluster.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def secret_names(stores: Iterable[ObjectStore]) -> list[str]:
    """Every Secret the stores reference, once each, sorted."""
    return sorted({ref.name for store in stores for ref in store.spec.configuration.secret_references()})


def role_rules(stores: Iterable[ObjectStore]) -> list[dict[str, Any]]:
    """The Role's rules for these ObjectStores; never a rule without resource names."""
    stores = list(stores)
    names = sorted({store.name for store in stores})
    rules: list[dict[str, Any]] = []
    if names:
        rules.append(
            {"apiGroups": [GROUP], "resources": ["objectstores"], "verbs": ["get", "watch", "list"],
             "resourceNames": names}
        )  # fmt: skip
        rules.append(
            {"apiGroups": [GROUP], "resources": ["objectstores/status"], "verbs": ["patch", "update"],
             "resourceNames": names}
        )  # fmt: skip
    if secrets := secret_names(stores):
        rules.append(
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "watch", "list"],
             "resourceNames": secrets}
        )  # fmt: skip
    return rules


def role_spec(cluster: ClusterIdentity, stores: Iterable[ObjectStore]) -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "Role",
        "metadata": {
            "name": object_name(cluster.name),
            "namespace": cluster.namespace,
            "labels": labels(cluster),
            "ownerReferences": [owner_reference(cluster)],
        },
        "rules": role_rules(stores),
    }


def role_binding_spec(cluster: ClusterIdentity) -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "RoleBinding",
        "metadata": {
            "name": object_name(cluster.name),
            "namespace": cluster.namespace,
            "labels": labels(cluster),
            "ownerReferences": [owner_reference(cluster)],
        },
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": object_name(cluster.name)},
        # The ServiceAccount CloudNativePG creates for the Cluster's Pods and Jobs.
        "subjects": [{"kind": "ServiceAccount", "name": cluster.name, "namespace": cluster.namespace}],
    }


def object_store_names(role: Mapping[str, Any]) -> list[str]:
    """The ObjectStores a Role of ours grants (what the ObjectStore controller looks for)."""
    names: set[str] = set()
    for rule in role.get("rules") or []:
        if GROUP in (rule.get("apiGroups") or []) and "objectstores" in (rule.get("resources") or []):
            names.update(rule.get("resourceNames") or [])
    return sorted(names)


# --- reading and writing with optimistic locking ----------------------------------------------


@dataclass(frozen=True)
class _Kind:
    """The kubernetes-asyncio calls for one kind of namespaced object."""

    name: str
    read: Callable[..., Awaitable[Any]]
    create: Callable[..., Awaitable[Any]]
    patch: Callable[..., Awaitable[Any]]


def _kind(api: client.ApiClient, name: str) -> _Kind:
    rbac = client.RbacAuthorizationV1Api(api)
    if name == "Role":
        return _Kind(name, rbac.read_namespaced_role, rbac.create_namespaced_role, rbac.patch_namespaced_role)
    return _Kind(
        name,
        rbac.read_namespaced_role_binding,
        rbac.create_namespaced_role_binding,
        rbac.patch_namespaced_role_binding,
    )


def _label_changes(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, str]:
    mine = desired["metadata"]["labels"]
    theirs = (current.get("metadata") or {}).get("labels") or {}
    return {key: value for key, value in mine.items() if theirs.get(key) != value}


def _normal_rules(rules: Any) -> list[dict[str, Any]]:
    return [{key: value for key, value in rule.items() if value not in (None, [])} for rule in rules or []]


Changes = Callable[[Mapping[str, Any]], dict[str, Any] | None]


Outcome = tuple[dict[str, Any] | None, str]
RETRY = None
"""What one read-modify-write round returns when the object changed under it."""


async def _round(
    api: client.ApiClient,
    kind: _Kind,
    namespace: str,
    name: str,
    changes: Changes,
    create: Mapping[str, Any] | None,
) -> Outcome | None:
    """One read, then one create or patch; :data:`RETRY` on a conflict."""
    what = f"{kind.name} {namespace}/{name}"
    try:
        current = api.sanitize_for_serialization(await kind.read(name, namespace))
    except ApiException as error:
        if error.status != 404:
            raise from_api_exception(error, f"read {what}") from None
        if create is None:
            return None, "absent"
        try:
            created = await kind.create(namespace, dict(create))
        except ApiException as error:
            if error.status == 409:
                return RETRY  # created by someone else meanwhile: read it and update it
            raise from_api_exception(error, f"create {what}") from None
        return api.sanitize_for_serialization(created), "created"
    patch = changes(current)
    if not patch:
        return current, "unchanged"
    version = (current.get("metadata") or {}).get("resourceVersion")
    if version:
        patch.setdefault("metadata", {})["resourceVersion"] = version
    try:
        patched = await kind.patch(name, namespace, patch, _content_type=MERGE_PATCH)
    except ApiException as error:
        if error.status in (404, 409):
            return RETRY  # changed or deleted since we read it
        raise from_api_exception(error, f"update {what}") from None
    return api.sanitize_for_serialization(patched), "updated"


async def _converge(
    api: client.ApiClient,
    kind: _Kind,
    namespace: str,
    name: str,
    changes: Changes,
    *,
    create: Mapping[str, Any] | None,
) -> Outcome:
    """Read, then create (``create`` given) or patch with ``changes(current)``; retry on 409.

    Returns the object as the API server answered and what was done: "created", "updated",
    "unchanged" or "absent".
    """
    what = f"{kind.name} {namespace}/{name}"
    for attempt in range(ATTEMPTS):
        if attempt:
            await asyncio.sleep(0.05 * 2**attempt)
        try:
            outcome = await _round(api, kind, namespace, name, changes, create)
        except (aiohttp.ClientError, OSError) as error:
            raise from_transport_error(error, f"reconcile {what}") from None
        if outcome is not RETRY:
            return outcome
    raise Conflict(
        f"{what} kept changing while the barman-cloud plugin updated it ({ATTEMPTS} attempts)",
        hint="another controller may be rewriting it; CloudNativePG retries the reconciliation",
    )


def _role_changes(desired: Mapping[str, Any], *, with_labels: bool = True) -> Changes:
    def changes(current: Mapping[str, Any]) -> dict[str, Any] | None:
        patch: dict[str, Any] = {}
        if _normal_rules(current.get("rules")) != _normal_rules(desired["rules"]):
            patch["rules"] = desired["rules"]
        if with_labels and (changed := _label_changes(current, desired)):
            patch["metadata"] = {"labels": changed}
        return patch or None

    return changes


def _same_subject(subject: Mapping[str, Any], wanted: Mapping[str, Any], namespace: str) -> bool:
    return bool(
        subject.get("kind") == wanted["kind"]
        and subject.get("name") == wanted["name"]
        and (subject.get("namespace") or namespace) == wanted["namespace"]
    )


def _binding_changes(desired: Mapping[str, Any]) -> Changes:
    namespace = desired["metadata"]["namespace"]
    name = desired["metadata"]["name"]

    def changes(current: Mapping[str, Any]) -> dict[str, Any] | None:
        ref = current.get("roleRef") or {}
        wanted = desired["roleRef"]
        if (ref.get("apiGroup"), ref.get("kind"), ref.get("name")) != (
            wanted["apiGroup"],
            wanted["kind"],
            wanted["name"],
        ):
            raise FailedPrecondition(
                f"RoleBinding {namespace}/{name} refers to {ref.get('kind')} {ref.get('name')!r} "
                f"instead of the plugin's Role {wanted['name']!r}",
                hint="a roleRef cannot be changed: delete the RoleBinding and the plugin creates it "
                "again at the next reconciliation",
            )
        patch: dict[str, Any] = {}
        subjects = list(current.get("subjects") or [])
        subject = desired["subjects"][0]
        if not any(_same_subject(s, subject, namespace) for s in subjects):
            patch["subjects"] = [*subjects, subject]  # added, never removed
        if changed := _label_changes(current, desired):
            patch["metadata"] = {"labels": changed}
        return patch or None

    return changes


async def ensure_role(
    api: client.ApiClient, cluster: ClusterIdentity, stores: Iterable[ObjectStore]
) -> dict[str, Any]:
    """Create or update the Cluster's Role for ``stores``; returns it as stored."""
    desired = role_spec(cluster, stores)
    name = object_name(cluster.name)
    role, done = await _converge(
        api, _kind(api, "Role"), cluster.namespace, name, _role_changes(desired), create=desired
    )
    if done != "unchanged":
        log.info(f"{done} the plugin's Role", extra={"namespace": cluster.namespace, "role": name})
    assert role is not None
    return role


async def ensure_role_binding(api: client.ApiClient, cluster: ClusterIdentity) -> dict[str, Any]:
    """Create the Cluster's RoleBinding, or add the Cluster's ServiceAccount to its subjects."""
    desired = role_binding_spec(cluster)
    name = object_name(cluster.name)
    binding, done = await _converge(
        api, _kind(api, "RoleBinding"), cluster.namespace, name, _binding_changes(desired), create=desired
    )
    if done != "unchanged":
        log.info(f"{done} the plugin's RoleBinding", extra={"namespace": cluster.namespace, "binding": name})
    assert binding is not None
    return binding


async def ensure_rbac(
    api: client.ApiClient,
    cluster: bytes | Mapping[str, Any] | ClusterIdentity,
    stores: Iterable[ObjectStore],
) -> None:
    """Role and RoleBinding of a Cluster (its JSON, or its identity) for the ObjectStores it uses."""
    identity = cluster if isinstance(cluster, ClusterIdentity) else cluster_identity(cluster)
    await ensure_role(api, identity, list(stores))
    await ensure_role_binding(api, identity)


async def refresh_role_rules(
    api: client.ApiClient, namespace: str, role: str, stores: Iterable[ObjectStore]
) -> dict[str, Any] | None:
    """Rewrite only the rules of an existing Role for ``stores`` (e.g. after an ObjectStore's
    credentials moved to another Secret). Never creates the Role, never touches its labels or
    owners; returns the Role, or None when it does not exist."""
    desired = {"metadata": {"labels": {}}, "rules": role_rules(stores)}
    updated, done = await _converge(
        api, _kind(api, "Role"), namespace, role, _role_changes(desired, with_labels=False), create=None
    )
    if done == "updated":
        log.info("updated the rules of the plugin's Role", extra={"namespace": namespace, "role": role})
    return updated
