"""The Kopf controller (ObjectStore and ScheduledBackup), embedded in the operator's event loop.

Kopf runs cluster-wide with our registry only (:mod:`.handlers`) and settings that keep it
from writing anything of its own on the objects: no finalizers, no annotations, no Events of
its own (ours are aggregated, :mod:`.events`). It logs in with the same Kubernetes configuration
as the CNPG-I side (``--kubeconfig``, else the Pod's service account, else ``$KUBECONFIG``).

**One active replica** (``--leader-elect``, upstream's flag). Kopf peering coordinates replicas
through the cluster-scoped ``ClusterKopfPeering`` named ``barman-cloud.cloudnative-pg.io`` (the
CRD ``clusterkopfpeerings.kopf.dev`` is installed by the Helm chart; the object is created here
if missing). Each replica announces a priority there and pauses while a live replica with a
higher one exists; Kopf pauses *every* replica of equal priority, so priorities must differ:
ours is derived from the start time, older first (with random low digits so that two replicas
started in the same millisecond still differ). A newer replica (a rolling update) thus stays
passive until the older one leaves: on a clean stop at once (Kopf removes its entry), after a
crash within the peering lifetime (60 s). A paused replica stops its maintenance loops and
watches; it keeps serving CNPG-I, which needs no coordination. Without ``--leader-elect`` the
controller runs standalone, as upstream does without the flag.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import kopf
from kubernetes_asyncio import client

from barman_cloud.errors import InvalidInput
from barman_cloud_operator import handlers
from barman_cloud_operator.context import ControllerContext

log = logging.getLogger(__name__)

PEERING_NAME = "barman-cloud.cloudnative-pg.io"
ANNOTATIONS_PREFIX = "barmancloud.cnpg.io"
PEERING_RETRY = 30.0
"""Seconds between attempts to create the peering object when it cannot be created."""

ConfigurationLoader = Callable[[], Awaitable[client.Configuration]]


@dataclass(frozen=True)
class ControllerOptions:
    leader_elect: bool = False
    """Coordinate with other replicas through Kopf peering (only one active)."""
    identity: str | None = None
    """This replica's name in the peering object; default ``$POD_NAME``, else Kopf's (user@host/time)."""
    priority: int | None = None
    """Peering priority (higher wins); default: older replicas first (see the module docstring)."""


def start_priority(now_ns: int | None = None) -> int:
    """Older is higher: minus the start time in milliseconds, with three random low digits."""
    millis = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    return -(millis * 1000 + random.randrange(1000))  # noqa: S311 - a tie-breaker, not a secret


class _TerseKopfRecords(logging.Filter):
    """Kopf attaches its whole settings object to every per-object record: our JSON log would
    print it on each line. Keep the object reference, drop the rest."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name in ("settings", "k8s_skip"):
            record.__dict__.pop(name, None)
        return True


def operator_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False  # our Events are recorded (and aggregated) by the handlers
    settings.peering.stealth = True  # no log line per keep-alive
    settings.persistence.finalizer = f"{ANNOTATIONS_PREFIX}/controller"  # never added: see handlers
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATIONS_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATIONS_PREFIX, key="last-handled-configuration"
    )
    # A real API server ends watches on its own schedule; ask for it explicitly so that a
    # half-dead connection is replaced within minutes.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    return settings


async def connection_info(configuration: client.Configuration) -> kopf.ConnectionInfo:
    """Kopf's credentials from a kubernetes-asyncio configuration (token refreshed if it rotates)."""
    found: Any = configuration.get_api_key_with_prefix("BearerToken")
    header = await found if inspect.isawaitable(found) else found
    parts = header.split(" ", 1) if isinstance(header, str) and header else []
    scheme: str | None = parts[0] if len(parts) == 2 else None
    token: str | None = parts[-1] if parts else None
    if not configuration.host:
        raise InvalidInput("the Kubernetes configuration names no API server")
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        username=configuration.username or None,
        password=configuration.password or None,
        scheme=scheme,
        token=token,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
    )


class Controller:
    """Kopf's tasks in the current event loop, started and stopped by the operator process."""

    def __init__(
        self, api: client.ApiClient, load_configuration: ConfigurationLoader, options: ControllerOptions
    ) -> None:
        self.options = options
        self.context = ControllerContext(api)
        self.registry = handlers.register(kopf.OperatorRegistry())
        self.settings = operator_settings()
        self.started = asyncio.Event()
        """Set once Kopf has started (its startup activities ran)."""
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._peering: asyncio.Task[None] | None = None

        async def login(**_: Any) -> kopf.ConnectionInfo:
            return await connection_info(await load_configuration())

        kopf.on.login(registry=self.registry)(login)
        objects_logger = logging.getLogger("kopf.objects")
        if not any(isinstance(f, _TerseKopfRecords) for f in objects_logger.filters):
            objects_logger.addFilter(_TerseKopfRecords())

    @property
    def task(self) -> asyncio.Task[None] | None:
        return self._task

    async def start(self) -> None:
        """Spawn Kopf's tasks. Kopf installs SIGINT/SIGTERM handlers of its own when it runs in
        the main thread: the caller installs its own again after this returns."""
        existing = asyncio.all_tasks()
        if self.options.leader_elect and not await self.context.calls.ensure_peering(PEERING_NAME):
            self._peering = asyncio.create_task(self._create_peering_later(), name="peering object")
        identity = self.options.identity or os.environ.get("POD_NAME") or None
        priority = self.options.priority if self.options.priority is not None else start_priority()
        tasks = await kopf.spawn_tasks(
            registry=self.registry,
            settings=self.settings,
            clusterwide=True,
            standalone=not self.options.leader_elect,
            peering_name=PEERING_NAME if self.options.leader_elect else None,
            priority=priority,
            identity=cast(Any, identity),  # kopf's Identity is a NewType of str it does not export
            stop_flag=self._stop,
            ready_flag=self.started,
            memo=kopf.Memo(controller=self.context),
        )
        self._task = asyncio.create_task(kopf.run_tasks(tasks, ignored=existing), name="kopf")
        log.info(
            "controller started",
            extra={"leader_elect": self.options.leader_elect, "identity": identity, "priority": priority,
                   "peering": PEERING_NAME if self.options.leader_elect else None},
        )  # fmt: skip

    async def _create_peering_later(self) -> None:
        created = False
        while not created:
            await asyncio.sleep(PEERING_RETRY)
            created = await self.context.calls.ensure_peering(PEERING_NAME)

    async def stop(self, timeout: float) -> None:
        """Ask Kopf to stop (handlers finish, daemons stop, the peering entry is removed)."""
        self._stop.set()
        if self._peering is not None:
            self._peering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._peering
        if self._task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except TimeoutError:
            log.warning("the controller did not stop in time; cancelling it", extra={"seconds": timeout})
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        except Exception:
            log.exception("the controller failed while stopping")
