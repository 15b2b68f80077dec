"""The periodic work on one reachable ObjectStore, server by server.

For each server name found under the destination:

1. apply the retention policy (REDUNDANCY or RECOVERY WINDOW, :mod:`barman_cloud.retention`):
   obsolete backups are deleted, then the WAL only they needed;
2. read the catalog again and compute the recovery window (:mod:`barman_cloud.catalog`), which
   goes to ``status.serverRecoveryWindow`` with upstream's field names;
3. (by the caller, per Cluster) delete the CloudNativePG ``Backup`` objects of completed plugin
   backups that are no longer in that catalog (:func:`obsolete_backup_objects`).

A failure on one server never stops the others.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from barman_cloud.catalog.listing import Catalog, load_catalog
from barman_cloud.catalog.recovery_window import recovery_window
from barman_cloud.config.object_store import RecoveryWindow, RetentionPolicy
from barman_cloud.errors import BarmanCloudError
from barman_cloud.format.keys import ServerLayout
from barman_cloud.retention.delete import RetentionRun, apply_retention_policy
from barman_cloud.storage import Store
from plugin_grpc.metadata import PLUGIN_NAME

log = logging.getLogger(__name__)

COMPLETED = "completed"
PLUGIN_METHOD = "plugin"


@dataclass
class ServerResult:
    server: str
    retention: RetentionRun | None = None
    retention_error: str | None = None
    catalog: Catalog | None = None
    window: RecoveryWindow | None = None
    catalog_error: str | None = None

    @property
    def deleted(self) -> list[str]:
        return [d.backup_id for d in self.retention.deletions] if self.retention else []


async def maintain_server(
    store: Store, prefix: str, server: str, policy: RetentionPolicy | None
) -> ServerResult:
    layout = ServerLayout(prefix, server)
    result = ServerResult(server)
    if policy is not None:
        try:
            result.retention = await apply_retention_policy(store, layout, policy)
        except BarmanCloudError as error:
            result.retention_error = str(error)
            where = {"server": server, "policy": str(policy), "error": str(error)}
            log.warning("retention policy failed", extra=where)
    try:
        result.catalog = await load_catalog(store, layout)
        result.window = await recovery_window(store, layout, result.catalog)
    except BarmanCloudError as error:
        result.catalog_error = str(error)
        log.warning("cannot read the backup catalog", extra={"server": server, "error": str(error)})
    return result


# --- status.serverRecoveryWindow --------------------------------------------------------------


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def window_entry(window: RecoveryWindow, current: Mapping[str, Any] | None) -> dict[str, Any]:
    """The desired ``serverRecoveryWindow[server]`` (None removes a field).

    The catalog is the truth for the first recoverability point and the last successful backup.
    ``lastFailedBackupTime`` is also written by the sidecar when a backup fails before leaving a
    ``backup.info``: the newer of the two wins.
    """
    computed = window.to_json()
    entry: dict[str, Any] = {
        "firstRecoverabilityPoint": computed.get("firstRecoverabilityPoint"),
        "lastSuccessfulBackupTime": computed.get("lastSuccessfulBackupTime"),
    }
    failed = computed.get("lastFailedBackupTime")
    previous = (current or {}).get("lastFailedBackupTime")
    if failed is None or (
        (before := _time(previous)) is not None and (now := _time(failed)) is not None and before > now
    ):
        failed = previous if isinstance(previous, str) else None
    entry["lastFailedBackupTime"] = failed
    return entry


# --- CloudNativePG Backup objects no longer in the catalog --------------------------------------


def obsolete_backup_objects(
    backups: Sequence[Mapping[str, Any]], cluster_name: str, cluster_uid: str | None, catalog: Catalog
) -> list[Mapping[str, Any]]:
    """Upstream's rule (retention.go): Backups of this Cluster that are completed plugin backups
    made for this Cluster (``pluginMetadata.clusterUID``) by this plugin, whose backup ID is not
    in the catalog any more.

    Ours adds one guard: nothing is deleted while the catalog is empty (a destination that was
    just changed, or emptied by hand, must not erase the Backup history), nor for a backup ID
    whose ``backup.info`` exists but cannot be read.
    """
    if not cluster_uid or len(catalog) == 0:
        return []
    present = set(catalog.ids) | {item.backup_id for item in catalog.unreadable}
    obsolete = []
    for backup in backups:
        spec = backup.get("spec") or {}
        status = backup.get("status") or {}
        metadata = status.get("pluginMetadata") or {}
        method = status.get("method") or spec.get("method")
        backup_id = status.get("backupId")
        if (
            (spec.get("cluster") or {}).get("name") == cluster_name
            and status.get("phase") == COMPLETED
            and method == PLUGIN_METHOD
            and metadata.get("clusterUID") == cluster_uid
            and metadata.get("pluginName") == PLUGIN_NAME
            and isinstance(backup_id, str)
            and backup_id
            and backup_id not in present
        ):
            obsolete.append(backup)
    return obsolete
