"""``Operator.SetStatusInCluster``: the plugin's entry in ``Cluster.status.pluginStatus``.

A small JSON object: the archive ObjectStore and server name, its recovery window as the sidecar
last wrote it in the ObjectStore's status, and what CloudNativePG reports about archiving (its
``ContinuousArchiving`` condition). Every non-empty answer makes CloudNativePG patch the Cluster
status and reconcile it again 5 s later, so we answer only when the object differs from the one
the Cluster already holds, and the object holds nothing that changes by itself (no clock).
"""

from __future__ import annotations

import json
from typing import Any

from barman_cloud.config.object_store import ObjectStore
from barman_cloud.errors import NotFound
from plugin_grpc.operator_side.cluster import Cluster, parse_cluster
from plugin_grpc.operator_side.settings import OperatorSide
from plugin_grpc.operator_side.stores import missing_message

CONDITION_FIELDS = ("status", "reason", "message", "lastTransitionTime")


def plugin_status(
    cluster: Cluster, archive: ObjectStore | None, problem: str | None = None
) -> dict[str, Any]:
    """The status object; ``{}`` for a Cluster that does not archive through the plugin."""
    reference = cluster.plugin.archive
    if reference is None:
        return {}
    store: dict[str, Any] = {"objectStore": reference.object_name, "serverName": reference.server_name}
    if archive is not None:
        window = archive.status.server_recovery_window.get(reference.server_name)
        if window is not None and (recovery_window := window.to_json()):
            store["recoveryWindow"] = recovery_window
    if problem:
        store["problem"] = problem
    result: dict[str, Any] = {"archive": store, "walArchiver": cluster.plugin.wal_archiver}
    condition = cluster.continuous_archiving
    if condition:
        result["continuousArchiving"] = {
            key: condition[key] for key in CONDITION_FIELDS if isinstance(condition.get(key), str)
        }
    return result


def answer(cluster: Cluster, desired: dict[str, Any]) -> bytes:
    """``desired`` as JSON bytes, or empty bytes when the Cluster already holds an equal object."""
    current: Any = None
    if cluster.plugin_status:
        try:
            current = json.loads(cluster.plugin_status)
        except ValueError:
            current = None  # not ours, or damaged: replace it
    if current == desired or (current is None and not desired):
        return b""
    return json.dumps(desired, sort_keys=True, separators=(",", ":")).encode()


async def cluster_status(side: OperatorSide, cluster_json: bytes) -> bytes:
    cluster = parse_cluster(cluster_json)
    archive = None
    problem = None
    if (reference := cluster.plugin.archive) is not None:
        try:
            archive = await side.kubernetes.get_object_store(
                cluster.identity.namespace, reference.object_name
            )
        except NotFound:
            problem = missing_message(cluster, reference)
    return answer(cluster, plugin_status(cluster, archive, problem))
