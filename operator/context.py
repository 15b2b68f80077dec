"""What the controller's handlers share in one process: the API client and what was last seen.

Handlers get it as ``memo.controller`` (Kopf copies the operator's memo for every object, so
this one object is shared). Nothing here is persisted: after a restart (or when a passive replica
takes over) every ObjectStore is checked again at once and every ScheduledBackup re-validated.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from kubernetes_asyncio import client

from barman_cloud_operator.api import ControllerAPI
from plugin_grpc.kube import KubernetesReader

NOT_READY_RECHECK = 60.0
"""Most seconds between two checks of an ObjectStore that is not Ready (Secrets are not
watched: a fixed Secret is noticed at the next check)."""
ERROR_RETRY = 60.0
"""Most seconds before a cycle that failed unexpectedly is tried again."""


@dataclass
class StoreState:
    """One ObjectStore's maintenance loop (its Kopf daemon) and what it last did."""

    namespace: str
    name: str
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the spec changed (or a ScheduledBackup of the namespace did): check at once."""
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the ObjectStore was deleted: its loop ends."""
    checked_generation: int | None = None
    rbac_generation: int | None = None
    """The generation whose credentials the per-cluster Roles were last updated for."""
    cycles: int = 0
    written: tuple[str, dict[str, Any]] | None = None
    """(resourceVersion the last status patch was based on, the status it produced): when the
    next cycle still sees that resourceVersion, our own write has not come back through the
    watch yet, and the status we wrote is the one to compare with."""


@dataclass(frozen=True)
class ScheduledBackupSeen:
    """What was last reported about a ScheduledBackup (Events are recorded on changes only)."""

    generation: int | None
    problems: tuple[tuple[str, str], ...]


class ControllerContext:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.calls = ControllerAPI(api)
        self.secrets = KubernetesReader(api, ttl=0)
        """ObjectStores' Secrets, read afresh at every check."""
        self.stores: dict[str, StoreState] = {}
        self.scheduled_backups: dict[str, ScheduledBackupSeen] = {}

    def store(self, uid: str, namespace: str, name: str) -> StoreState:
        state = self.stores.get(uid)
        if state is None:
            state = self.stores[uid] = StoreState(namespace, name)
        return state

    def forget_store(self, uid: str) -> None:
        state = self.stores.pop(uid, None)
        if state is not None:
            state.gone.set()
            state.wakeup.set()

    def wake_namespace(self, namespace: str) -> None:
        """Check every ObjectStore of a namespace now (a ScheduledBackup there changed)."""
        for state in self.stores.values():
            if state.namespace == namespace:
                state.wakeup.set()
