"""The sidecars' small Kubernetes adapter: ObjectStores and Secrets read through the API server
(kubernetes-asyncio), with a short TTL cache like upstream's (10 s), so that a WAL archived every
few hundred milliseconds does not cost two API round trips each time."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from barman_cloud.config.object_store import ObjectStore, parse_object_store
from barman_cloud.errors import BarmanCloudError, Forbidden, NotFound, Unavailable

GROUP = "barmancloud.cnpg.io"
VERSION = "v1"
PLURAL = "objectstores"

# CloudNativePG's own API (Cluster, Backup, ScheduledBackup): another group for forks of CNPG, named
# by the same variables upstream reads (the chart sets them from rbac.cnpgGroup).
CNPG_GROUP = os.environ.get("CUSTOM_CNPG_GROUP") or "postgresql.cnpg.io"
CNPG_VERSION = os.environ.get("CUSTOM_CNPG_VERSION") or "v1"
DEFAULT_TTL = 10.0


def _translate(error: ApiException, what: str) -> BarmanCloudError:
    if error.status == 404:
        return NotFound(f"{what} does not exist")
    if error.status in (401, 403):
        return Forbidden(
            f"not allowed to read {what}",
            hint="the plugin's Role for this cluster must grant it (it is created by the operator side)",
        )
    return Unavailable(f"reading {what} failed: HTTP {error.status} {error.reason}")


class KubernetesReader:
    """Reads ObjectStores and Secrets; implements ``barman_cloud.config.secrets.SecretSource``."""

    def __init__(self, api: client.ApiClient, *, ttl: float = DEFAULT_TTL) -> None:
        self.api = api
        self.ttl = ttl
        self._cache: dict[tuple[str, str, str], tuple[float, Any]] = {}

    @classmethod
    async def connect(cls, *, ttl: float = DEFAULT_TTL) -> KubernetesReader:
        """In a Pod: the service account; elsewhere: the kubeconfig."""
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
            return cls(client.ApiClient(), ttl=ttl)
        except config.ConfigException:
            configuration = client.Configuration()
            await config.load_kube_config(client_configuration=configuration)
            return cls(client.ApiClient(configuration), ttl=ttl)

    async def close(self) -> None:
        await self.api.close()

    def forget(self, namespace: str, name: str) -> None:
        """Drop cached copies of objects called ``name`` (after we changed one)."""
        for key in [k for k in self._cache if k[1:] == (namespace, name)]:
            del self._cache[key]

    def _cached(self, key: tuple[str, str, str]) -> Any:
        hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        return None

    async def get_secret(self, namespace: str, name: str) -> Mapping[str, bytes]:
        key = ("Secret", namespace, name)
        if (cached := self._cached(key)) is not None:
            return dict(cached)
        try:
            secret = await client.CoreV1Api(self.api).read_namespaced_secret(name, namespace)
        except ApiException as error:
            raise _translate(error, f"Secret {namespace}/{name}") from None
        data = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
        self._cache[key] = (time.monotonic(), data)
        return dict(data)

    async def get_object_store(self, namespace: str, name: str) -> ObjectStore:
        key = ("ObjectStore", namespace, name)
        if (cached := self._cached(key)) is not None:
            assert isinstance(cached, ObjectStore)
            return cached
        try:
            document = await client.CustomObjectsApi(self.api).get_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name
            )
        except ApiException as error:
            raise _translate(error, f"ObjectStore {namespace}/{name}") from None
        store = parse_object_store(document)
        self._cache[key] = (time.monotonic(), store)
        return store
