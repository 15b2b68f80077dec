"""Kubernetes Events on the Cluster, so that ``kubectl describe cluster`` says what is wrong.

Events are repeated every time the problem is seen (every requeue), so they are aggregated like
client-go's event recorder does: one Event per (Cluster, reason, subject), named after them, whose
``count`` and ``lastTimestamp`` grow. Recording is best effort: a failure is logged and never
fails the hook that wanted to record it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from plugin_grpc.operator_side.cluster import ClusterIdentity

log = logging.getLogger(__name__)

COMPONENT = "barman-cloud-plugin"
MERGE_PATCH = "application/merge-patch+json"


def event_name(cluster: ClusterIdentity, reason: str, subject: str) -> str:
    """Stable per (Cluster, reason, subject): the same problem seen again updates one Event."""
    digest = hashlib.sha256(f"{cluster.uid}/{reason}/{subject}".encode()).hexdigest()[:16]
    return f"{cluster.name}.{digest}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def warn(
    api: client.ApiClient, cluster: ClusterIdentity, reason: str, message: str, *, subject: str
) -> None:
    """Record a Warning Event on the Cluster (``subject`` tells apart events of one reason)."""
    events = client.CoreV1Api(api)
    # Loosely typed: the stubs want model objects and do not list `_content_type`, both of which
    # kubernetes-asyncio accepts.
    create: Callable[..., Awaitable[Any]] = events.create_namespaced_event
    patch: Callable[..., Awaitable[Any]] = events.patch_namespaced_event
    name = event_name(cluster, reason, subject)
    now = _now()
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": cluster.namespace},
        "involvedObject": {
            "apiVersion": cluster.api_version,
            "kind": cluster.kind,
            "name": cluster.name,
            "namespace": cluster.namespace,
            **({"uid": cluster.uid} if cluster.uid else {}),
        },
        "reason": reason,
        "message": message,
        "type": "Warning",
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        try:
            await create(cluster.namespace, body)
        except ApiException as error:
            if error.status != 409:
                raise
            existing = await events.read_namespaced_event(name, cluster.namespace)
            await patch(
                name,
                cluster.namespace,
                {"count": (existing.count or 1) + 1, "lastTimestamp": now, "message": message},
                _content_type=MERGE_PATCH,
            )
    except (ApiException, aiohttp.ClientError, OSError) as error:
        log.warning(
            "could not record an Event on the Cluster",
            extra={"namespace": cluster.namespace, "cluster": cluster.name, "reason": reason,
                   "error": str(getattr(error, "reason", None) or error)},
        )  # fmt: skip
