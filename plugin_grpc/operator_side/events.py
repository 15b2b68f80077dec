"""Kubernetes Events, so that ``kubectl describe`` says what the plugin saw: on Clusters (from the
operator-side hooks) and on ObjectStores and ScheduledBackups (from the controller).

A problem is seen again at every requeue or maintenance cycle, so Events are aggregated like
client-go's event recorder does: one Event per (object, reason, key), named after them, whose
``count`` and ``lastTimestamp`` grow. Recording is best effort: a failure is logged and never
fails what wanted to record it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from plugin_grpc.operator_side.cluster import ClusterIdentity

log = logging.getLogger(__name__)

COMPONENT = "barman-cloud-plugin"
MERGE_PATCH = "application/merge-patch+json"
EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class Subject:
    """The object an Event is about."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str | None = None

    @classmethod
    def cluster(cls, cluster: ClusterIdentity) -> Subject:
        return cls(cluster.api_version, cluster.kind, cluster.namespace, cluster.name, cluster.uid)

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "namespace": self.namespace,
            **({"uid": self.uid} if self.uid else {}),
        }


def event_name(subject: Subject, reason: str, key: str) -> str:
    """Stable per (object, reason, key): the same thing seen again updates one Event."""
    digest = hashlib.sha256(f"{subject.kind}/{subject.uid or subject.name}/{reason}/{key}".encode())
    return f"{subject.name}.{digest.hexdigest()[:16]}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def record(
    api: client.ApiClient,
    subject: Subject,
    kind: EventType,
    reason: str,
    message: str,
    *,
    key: str = "",
) -> None:
    """Record (or count again) an Event; ``key`` tells apart Events of one reason."""
    core = client.CoreV1Api(api)
    # Loosely typed: the stubs want model objects and do not list `_content_type`, both of which
    # kubernetes-asyncio accepts.
    create: Callable[..., Awaitable[Any]] = core.create_namespaced_event
    patch: Callable[..., Awaitable[Any]] = core.patch_namespaced_event
    name = event_name(subject, reason, key)
    now = _now()
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": subject.namespace},
        "involvedObject": subject.reference(),
        "reason": reason,
        "message": message,
        "type": kind,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        try:
            await create(subject.namespace, body)
        except ApiException as error:
            if error.status != 409:
                raise
            existing = await core.read_namespaced_event(name, subject.namespace)
            await patch(
                name,
                subject.namespace,
                {"count": (existing.count or 1) + 1, "lastTimestamp": now, "message": message, "type": kind},
                _content_type=MERGE_PATCH,
            )
    except (ApiException, aiohttp.ClientError, OSError) as error:
        log.warning(
            "could not record an Event",
            extra={"namespace": subject.namespace, "object": f"{subject.kind}/{subject.name}",
                   "reason": reason, "error": str(getattr(error, "reason", None) or error)},
        )  # fmt: skip


async def warn(
    api: client.ApiClient, cluster: ClusterIdentity, reason: str, message: str, *, subject: str
) -> None:
    """A Warning Event on the Cluster (``subject`` tells apart Events of one reason)."""
    await record(api, Subject.cluster(cluster), "Warning", reason, message, key=subject)
