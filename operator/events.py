"""Kubernetes Events on ObjectStores and ScheduledBackups (``kubectl describe`` shows them).

Aggregated like client-go's recorder and like the operator side's Events on Clusters
(:mod:`plugin_grpc.operator_side.events`): one Event per (object, reason, subject), whose
``count`` and ``lastTimestamp`` grow when the same thing is seen again, so a problem found at
every maintenance cycle does not flood the namespace. Recording is best effort: a failure is
logged, never raised.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from barman_cloud_operator.conditions import timestamp
from plugin_grpc.operator_side.events import COMPONENT

log = logging.getLogger(__name__)

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

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "namespace": self.namespace,
            **({"uid": self.uid} if self.uid else {}),
        }


def event_name(subject: Subject, reason: str, key: str) -> str:
    digest = hashlib.sha256(f"{subject.kind}/{subject.uid or subject.name}/{reason}/{key}".encode())
    return f"{subject.name}.{digest.hexdigest()[:16]}"


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
    create: Callable[..., Awaitable[Any]] = core.create_namespaced_event
    patch: Callable[..., Awaitable[Any]] = core.patch_namespaced_event
    name = event_name(subject, reason, key)
    now = timestamp()
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
