"""The sidecar's writes to ``ObjectStore.status.serverRecoveryWindow`` (what `kubectl cnpg status`
and the metrics show): merge patches on the status subresource, so that the entries of other
servers and the fields other writers own stay as they are (upstream sends full updates, which
lose to concurrent writers)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Protocol

from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from barman_cloud.config.object_store import ObjectStore, RecoveryWindow
from plugin_grpc.kube import GROUP, PLURAL, VERSION, KubernetesReader

log = logging.getLogger(__name__)


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class StatusWriter(Protocol):
    async def recovery_window(self, store: ObjectStore, server: str, window: RecoveryWindow) -> None: ...

    async def backup_failed(self, store: ObjectStore, server: str, when: datetime) -> None: ...


class NoStatus:
    """Local runs: the ObjectStore lives in a file; its status is only logged."""

    async def recovery_window(self, store: ObjectStore, server: str, window: RecoveryWindow) -> None:
        log.info("recovery window", extra={"object_store": store.name, "server": server, **window.to_json()})

    async def backup_failed(self, store: ObjectStore, server: str, when: datetime) -> None:
        log.info("backup failed", extra={"object_store": store.name, "server": server, "at": _rfc3339(when)})


class KubernetesStatus:
    """Merge patches on ``objectstores/status`` through the API server."""

    def __init__(self, reader: KubernetesReader) -> None:
        self.reader = reader

    async def _patch(self, store: ObjectStore, server: str, fields: dict[str, Any]) -> None:
        body = {"status": {"serverRecoveryWindow": {server: fields}}}
        # Loosely typed: the stubs do not list `_content_type`, which selects the merge patch.
        api: Any = client.CustomObjectsApi(self.reader.api)
        try:
            await api.patch_namespaced_custom_object_status(
                GROUP, VERSION, store.namespace, PLURAL, store.name, body,
                _content_type="application/merge-patch+json",
            )  # fmt: skip
        except ApiException as error:
            # The backup itself is what matters: a status we could not write is retried later.
            log.warning(
                "could not update the ObjectStore status",
                extra={"object_store": f"{store.namespace}/{store.name}", "status": error.status},
            )
        self.reader.forget(store.namespace, store.name)

    async def recovery_window(self, store: ObjectStore, server: str, window: RecoveryWindow) -> None:
        fields: dict[str, Any] = {
            "firstRecoverabilityPoint": None,
            "lastSuccessfulBackupTime": None,
            **window.to_json(),
        }
        if window.last_failed_backup_time is None:
            fields.pop("lastFailedBackupTime", None)  # never erase a failure we did not see
        await self._patch(store, server, fields)

    async def backup_failed(self, store: ObjectStore, server: str, when: datetime) -> None:
        await self._patch(store, server, {"lastFailedBackupTime": _rfc3339(when)})
