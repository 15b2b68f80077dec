"""Will a ScheduledBackup's backups reach the bucket? What can be checked before the first run.

Only ScheduledBackups with ``method: plugin`` and our plugin name are looked at. Each problem is
a Warning Event on the ScheduledBackup, with a reason:

- ``InvalidScheduledBackup``: no ``spec.cluster.name``, a schedule CloudNativePG would not run,
  or a bad grace annotation;
- ``ClusterNotFound``: the Cluster does not exist (CloudNativePG waits for it);
- ``InvalidCluster``: the Cluster's plugin parameters cannot be read;
- ``PluginNotEnabled``: the Cluster has no enabled ``spec.plugins`` entry for this plugin with
  ``barmanObjectName``;
- ``ObjectStoreNotFound``: the ObjectStore the Cluster names does not exist.

A valid one gets a ``Validated`` Normal Event naming the ObjectStore, the server and the next run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from barman_cloud.config.object_store import ConfigurationError
from barman_cloud.errors import InvalidInput
from barman_cloud_operator.api import ControllerAPI
from barman_cloud_operator.conditions import timestamp
from barman_cloud_operator.freshness import parse_scheduled_backup
from plugin_grpc.metadata import PLUGIN_NAME
from plugin_grpc.operator_side.cluster import parse_cluster

Problem = tuple[str, str]


@dataclass(frozen=True)
class Validation:
    problems: tuple[Problem, ...] = ()
    summary: str = ""
    """For a valid ScheduledBackup: where its backups go and when the next run is."""


async def validate(calls: ControllerAPI, document: Mapping[str, Any]) -> Validation:
    """Check the ScheduledBackup, its Cluster and the Cluster's ObjectStore (two reads at most)."""
    try:
        scheduled = parse_scheduled_backup(document)
    except ConfigurationError as error:
        return Validation((("InvalidScheduledBackup", str(error)),))
    namespace = scheduled.namespace
    cluster_document = await calls.get_cluster(namespace, scheduled.cluster)
    if cluster_document is None:
        return Validation(
            (("ClusterNotFound", f"Cluster {namespace}/{scheduled.cluster} does not exist: no backup runs"),)
        )
    try:
        cluster = parse_cluster(cluster_document)
    except InvalidInput as error:
        return Validation((("InvalidCluster", str(error)),))
    archive = cluster.plugin.archive
    if archive is None:
        return Validation(
            (
                (
                    "PluginNotEnabled",
                    f"Cluster {namespace}/{scheduled.cluster} does not archive through {PLUGIN_NAME}: add an "
                    f"enabled spec.plugins entry named {PLUGIN_NAME} with the barmanObjectName parameter",
                ),
            )
        )
    if await calls.get_object_store(namespace, archive.object_name) is None:
        return Validation(
            (
                (
                    "ObjectStoreNotFound",
                    f"ObjectStore {namespace}/{archive.object_name} (named by {archive.field} of Cluster "
                    f"{scheduled.cluster}) does not exist: create it",
                ),
            )
        )
    upcoming = scheduled.schedule.next(datetime.now(UTC))
    when = f"next run at {timestamp(upcoming)}" if upcoming else "the schedule never runs"
    suspended = " (suspended)" if scheduled.suspended else ""
    return Validation(
        summary=f"backups of Cluster {scheduled.cluster} go to ObjectStore {archive.object_name} "
        f"(server {archive.server_name}); {when}{suspended}"
    )
