"""kmock's KubernetesEmulator made enough like an API server for a real Kopf operator.

What :class:`ClusterEmulator` adds (docs/testing.md, "Running Kopf against kmock's emulator"):

- ``metadata.uid``, ``creationTimestamp``, ``generation`` (1) and ``resourceVersion`` on create;
- a new ``resourceVersion`` on every write, and 409 Conflict for a merge patch carrying an
  outdated one (optimistic locking);
- ``generation`` bumped when a write changes ``spec``;
- the ``status`` subresource of resources registered with it: a patch of ``.../status`` changes
  only ``status``, a patch of the object leaves ``status`` alone.

What it still does **not** do, so the tests built on it cannot check it: schema validation and
pruning of unknown fields (the CRDs are not applied), admission (CloudNativePG's webhooks, CEL
rules), RBAC (every request is allowed), label and field selectors (lists return everything: our
code filters again), ``timeoutSeconds`` on watches, resourceVersion-based watch resumption (a
re-watch replays every object as ADDED), owner-reference garbage collection, and Event
aggregation by the server.
"""

from __future__ import annotations

import base64
import copy
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import jsonpatch
import kmock
import yaml

# resource: (kind, namespaced, has a status subresource)
RESOURCES: dict[str, tuple[str, bool, bool]] = {
    "barmancloud.cnpg.io/v1/objectstores": ("ObjectStore", True, True),
    "postgresql.cnpg.io/v1/clusters": ("Cluster", True, True),
    "postgresql.cnpg.io/v1/scheduledbackups": ("ScheduledBackup", True, True),
    "postgresql.cnpg.io/v1/backups": ("Backup", True, True),
    "rbac.authorization.k8s.io/v1/roles": ("Role", True, False),
    "rbac.authorization.k8s.io/v1/rolebindings": ("RoleBinding", True, False),
    "v1/secrets": ("Secret", True, False),
    "v1/events": ("Event", True, False),
    "v1/namespaces": ("Namespace", False, False),
    "apiextensions.k8s.io/v1/customresourcedefinitions": ("CustomResourceDefinition", False, False),
    "kopf.dev/v1/clusterkopfpeerings": ("ClusterKopfPeering", False, False),
    # A fork of CloudNativePG under its own API group (CUSTOM_CNPG_GROUP).
    "postgresql.example.com/v1/clusters": ("Cluster", True, True),
    "postgresql.example.com/v1/scheduledbackups": ("ScheduledBackup", True, True),
    "postgresql.example.com/v1/backups": ("Backup", True, True),
}
VERBS = ["get", "list", "watch", "create", "patch", "update", "delete"]
CUSTOM_GROUPS = ("barmancloud.cnpg.io", "postgresql.cnpg.io", "postgresql.example.com", "kopf.dev")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@attrs.define(kw_only=True)
class ClusterEmulator(kmock.KubernetesEmulator):
    version: int = 0

    def bump(self) -> str:
        self.version += 1
        return str(self.version)

    def _has_status_subresource(self, resource: Any) -> bool:
        for name, (_, _, status) in RESOURCES.items():
            if kmock.resource(name) == resource:
                return status
        return False

    def stored(self, resource: Any, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = (resource, namespace, name)
        if key in self.objects and not self.objects[key].deleted:
            return dict(self.objects[key].raw)
        return None

    def _prepare_update(self, request: kmock.Request) -> None:
        stored = self.stored(request.resource, request.namespace, str(request.name))
        if stored is None:
            return  # the emulator answers 404
        metadata = stored.get("metadata") or {}
        if isinstance(request.data, dict):
            data: dict[str, Any] = request.data
            sent = (data.get("metadata") or {}).get("resourceVersion")
            if sent is not None and sent != metadata.get("resourceVersion"):
                raise kmock.KubernetesError(
                    status=409, reason="Conflict", message="the object has been modified"
                )
            if request.subresource == "status":
                kept = {"status": data.get("status")}
                data.clear()
                data.update(kept)
            elif self._has_status_subresource(request.resource):
                data.pop("status", None)
            changes = data.setdefault("metadata", {})
            changes["resourceVersion"] = self.bump()
            if "spec" in data and merge_patch(stored.get("spec"), data["spec"]) != stored.get("spec"):
                changes["generation"] = int(metadata.get("generation") or 1) + 1
        elif isinstance(request.data, list):
            patched = jsonpatch.apply_patch(stored, request.data)
            request.data.append({"op": "add", "path": "/metadata/resourceVersion", "value": self.bump()})
            if patched.get("spec") != stored.get("spec"):
                generation = int(metadata.get("generation") or 1) + 1
                request.data.append({"op": "add", "path": "/metadata/generation", "value": generation})

    async def _handle(self, request: kmock.Request) -> Any:
        if request.resource is not None:
            if request.action == kmock.action.CREATE and isinstance(request.data, dict):
                metadata = request.data.setdefault("metadata", {})
                metadata.setdefault("uid", str(uuid.uuid4()))
                metadata.setdefault("creationTimestamp", _now())
                metadata.setdefault("generation", 1)
                metadata["resourceVersion"] = self.bump()
                if request.namespace and not metadata.get("namespace"):
                    metadata["namespace"] = request.namespace
            elif request.action == kmock.action.UPDATE and request.name is not None:
                self._prepare_update(request)
        return await super()._handle(request)


def register_resources(emulator: kmock.KubernetesEmulator) -> None:
    """Every resource the operator touches, and the CRD objects Kopf discovers them by."""
    for name, (kind, namespaced, status) in RESOURCES.items():
        emulator.resources[name] = kmock.ResourceInfo(
            kind=kind, namespaced=namespaced, verbs=VERBS, subresources=["status"] if status else []
        )


def crd(resource: str) -> dict[str, Any]:
    group, version, plural = resource.split("/")
    kind, namespaced, status = RESOURCES[resource]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "scope": "Namespaced" if namespaced else "Cluster",
            "versions": [
                {"name": version, "served": True, "storage": True,
                 **({"subresources": {"status": {}}} if status else {})}
            ],
        },
    }  # fmt: skip


def custom_resources() -> list[str]:
    return [name for name in RESOURCES if name.split("/")[0] in CUSTOM_GROUPS]


def secret(namespace: str, name: str, data: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
    }


def write_kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "kmock", "cluster": {"server": server}}],
                "users": [{"name": "kmock", "user": {"token": "unused"}}],
                "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock"}}],
                "current-context": "kmock",
            }
        )
    )
    return path
