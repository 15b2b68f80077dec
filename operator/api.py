"""The controller's Kubernetes calls (kubernetes-asyncio), each failure an engine error that says
what was attempted.

What the controller reads and writes, for the operator's ClusterRole:

| resource | verbs |
| --- | --- |
| ``barmancloud.cnpg.io`` ``objectstores`` | get, list, watch |
| ``barmancloud.cnpg.io`` ``objectstores/status`` | patch |
| ``postgresql.cnpg.io`` ``clusters``, ``scheduledbackups`` | get, list, watch |
| ``postgresql.cnpg.io`` ``backups`` | list, delete |
| core ``secrets`` | get |
| core ``events`` | create, get, patch |
| ``rbac.authorization.k8s.io`` ``roles`` | list, get, patch |
| ``kopf.dev`` ``clusterkopfpeerings`` (with ``--leader-elect``) | create, get, list, watch, patch |
| ``apiextensions.k8s.io`` ``customresourcedefinitions`` | list, watch (Kopf's discovery) |
| core ``namespaces`` | list, watch (Kopf's discovery) |
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from plugin_grpc.kube import CNPG_GROUP, CNPG_VERSION
from plugin_grpc.kube import GROUP as STORE_GROUP
from plugin_grpc.kube import PLURAL as STORE_PLURAL
from plugin_grpc.kube import VERSION as STORE_VERSION
from plugin_grpc.operator_side.api_errors import from_api_exception, from_transport_error

log = logging.getLogger(__name__)

PEERING_GROUP = "kopf.dev"
PEERING_VERSION = "v1"
PEERING_PLURAL = "clusterkopfpeerings"
MERGE_PATCH = "application/merge-patch+json"

Call = Callable[..., Awaitable[Any]]


async def _call(action: str, call: Call, *args: Any, **kwargs: Any) -> Any:
    try:
        return await call(*args, **kwargs)
    except ApiException as error:
        raise from_api_exception(error, action) from None
    except (aiohttp.ClientError, OSError) as error:
        raise from_transport_error(error, action) from None


async def _get_or_none(action: str, call: Call, *args: Any) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = await call(*args)
    except ApiException as error:
        if error.status == 404:
            return None
        raise from_api_exception(error, action) from None
    except (aiohttp.ClientError, OSError) as error:
        raise from_transport_error(error, action) from None
    return result


def _items(result: Any) -> list[dict[str, Any]]:
    items = result.get("items") if isinstance(result, Mapping) else None
    return [item for item in items or [] if isinstance(item, dict)]


def _labelled(items: list[dict[str, Any]], labels: Mapping[str, str | None]) -> list[dict[str, Any]]:
    """Items carrying ``labels`` (None: any value). Filtered here too, whatever the server did."""

    def matches(item: Mapping[str, Any]) -> bool:
        present = (item.get("metadata") or {}).get("labels") or {}
        return all(
            key in present and (value is None or present[key] == value) for key, value in labels.items()
        )

    return [item for item in items if matches(item)]


def _selector(labels: Mapping[str, str | None]) -> str:
    return ",".join(key if value is None else f"{key}={value}" for key, value in labels.items())


class ControllerAPI:
    """The calls, bound to one API client."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.rbac = client.RbacAuthorizationV1Api(api)

    # --- ObjectStores ---------------------------------------------------------------------------

    async def get_object_store(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await _get_or_none(
            f"read ObjectStore {namespace}/{name}",
            self.custom.get_namespaced_custom_object,
            STORE_GROUP, STORE_VERSION, namespace, STORE_PLURAL, name,
        )  # fmt: skip

    async def patch_object_store_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        """A JSON merge patch of ``status`` on the status subresource."""
        await _call(
            f"update the status of ObjectStore {namespace}/{name}",
            self.custom.patch_namespaced_custom_object_status,
            STORE_GROUP, STORE_VERSION, namespace, STORE_PLURAL, name, {"status": dict(patch)},
            _content_type=MERGE_PATCH,
        )  # fmt: skip

    # --- CloudNativePG objects ------------------------------------------------------------------

    async def _list_cnpg(
        self, namespace: str, plural: str, labels: Mapping[str, str | None]
    ) -> list[dict[str, Any]]:
        kwargs = {"label_selector": _selector(labels)} if labels else {}
        result = await _call(
            f"list {plural} in namespace {namespace}",
            self.custom.list_namespaced_custom_object,
            CNPG_GROUP, CNPG_VERSION, namespace, plural,
            **kwargs,
        )  # fmt: skip
        return _labelled(_items(result), labels)

    async def get_cluster(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await _get_or_none(
            f"read Cluster {namespace}/{name}",
            self.custom.get_namespaced_custom_object,
            CNPG_GROUP, CNPG_VERSION, namespace, "clusters", name,
        )  # fmt: skip

    async def list_clusters(self, namespace: str) -> list[dict[str, Any]]:
        return await self._list_cnpg(namespace, "clusters", {})

    async def list_scheduled_backups(self, namespace: str) -> list[dict[str, Any]]:
        return await self._list_cnpg(namespace, "scheduledbackups", {})

    async def list_backups(self, namespace: str, labels: Mapping[str, str | None]) -> list[dict[str, Any]]:
        return await self._list_cnpg(namespace, "backups", labels)

    async def delete_backup(self, namespace: str, name: str, uid: str | None) -> bool:
        """Delete a Backup object (only the one we looked at: uid precondition); False if gone."""
        options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid) if uid else None)
        try:
            await self.custom.delete_namespaced_custom_object(
                CNPG_GROUP, CNPG_VERSION, namespace, "backups", name, body=options
            )
        except ApiException as error:
            if error.status in (404, 409):
                return False
            raise from_api_exception(error, f"delete Backup {namespace}/{name}") from None
        except (aiohttp.ClientError, OSError) as error:
            raise from_transport_error(error, f"delete Backup {namespace}/{name}") from None
        return True

    # --- RBAC -------------------------------------------------------------------------------------

    async def list_roles(self, namespace: str, labels: Mapping[str, str | None]) -> list[dict[str, Any]]:
        result = await _call(
            f"list Roles in namespace {namespace}",
            self.rbac.list_namespaced_role,
            namespace,
            label_selector=_selector(labels),
        )
        return _labelled(_items(self.api.sanitize_for_serialization(result)), labels)

    # --- peering ----------------------------------------------------------------------------------

    async def ensure_peering(self, name: str) -> bool:
        """Create the ClusterKopfPeering object replicas coordinate through; True once it exists."""
        body = {"apiVersion": f"{PEERING_GROUP}/{PEERING_VERSION}", "kind": "ClusterKopfPeering",
                "metadata": {"name": name}}  # fmt: skip
        try:
            await self.custom.create_cluster_custom_object(
                PEERING_GROUP, PEERING_VERSION, PEERING_PLURAL, body
            )
        except ApiException as error:
            if error.status == 409:
                return True
            log.error(
                "cannot create the ClusterKopfPeering object; the controller stays paused until it exists",
                extra={"peering": name, "status": error.status,
                       "hint": "install the clusterkopfpeerings.kopf.dev CustomResourceDefinition (the Helm "
                       "chart does) and grant create on it, or run without --leader-elect"},
            )  # fmt: skip
            return False
        except (aiohttp.ClientError, OSError) as error:
            log.error(
                "cannot create the ClusterKopfPeering object", extra={"peering": name, "error": str(error)}
            )
            return False
        log.info("created the ClusterKopfPeering object", extra={"peering": name})
        return True
