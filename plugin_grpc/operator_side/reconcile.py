"""``ReconcilerHooks.Pre`` for a Cluster: its ObjectStores exist, and its sidecar may read them.

Before CloudNativePG reconciles a Cluster that uses the plugin, every ObjectStore it names is
read. A missing one stops the reconciliation with a requeue and a Warning Event on the Cluster
naming the ObjectStore and the parameter (upstream requeues silently, #337); CloudNativePG
would otherwise create Pods whose sidecar cannot start. When all exist, the Role and RoleBinding
of :mod:`.rbac` are brought up to date.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from plugin_grpc.operator_side import events, rbac
from plugin_grpc.operator_side.cluster import parse_cluster
from plugin_grpc.operator_side.settings import OperatorSide
from plugin_grpc.operator_side.stores import missing_message, read_stores

log = logging.getLogger(__name__)

MISSING_OBJECT_STORE = "ObjectStoreNotFound"
"""Reason of the Event recorded when a Cluster names an ObjectStore that does not exist."""


@dataclass(frozen=True)
class Decision:
    """Go on (``requeue_after`` None), or stop this loop and come back in ``requeue_after`` s."""

    requeue_after: int | None = None


async def before_cluster_reconcile(side: OperatorSide, cluster_json: bytes) -> Decision:
    cluster = parse_cluster(cluster_json)
    if not cluster.plugin.uses_plugin:
        return Decision()
    stores = await read_stores(side.kubernetes, cluster)
    if stores.missing:
        reported: set[str] = set()
        for reference in stores.missing:
            if reference.object_name in reported:
                continue  # named twice (recovery and replica source): one Event is enough
            reported.add(reference.object_name)
            message = missing_message(cluster, reference)
            log.warning(
                "a Cluster names an ObjectStore that does not exist; requeued",
                extra={"namespace": cluster.identity.namespace, "cluster": cluster.identity.name,
                       "object_store": reference.object_name, "parameter": reference.field},
            )  # fmt: skip
            await events.warn(
                side.api,
                cluster.identity,
                MISSING_OBJECT_STORE,
                f"{message}: create it, or correct the parameter; checking again in {side.requeue_after}s",
                subject=reference.object_name,
            )
        return Decision(requeue_after=side.requeue_after)
    await rbac.ensure_rbac(side.api, cluster.identity, stores.found.values())
    return Decision()
