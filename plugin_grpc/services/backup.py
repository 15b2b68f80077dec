"""``cnpgi.backup.v1.Backup``: a base backup taken by the instance sidecar.

CloudNativePG's instance manager calls ``Backup.Backup`` for a ``Backup`` with ``method: plugin``
and waits (no deadline) for the result, which it copies into the Backup's status. The backup goes
to the Cluster's archive ObjectStore, or to the one the Backup names in
``spec.pluginConfiguration.parameters.barmanObjectName`` (upstream ignores those parameters, #611).
After it, the recovery window of the ObjectStore's status is refreshed; after a failure,
``lastFailedBackupTime`` is set there.
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import UTC, datetime
from typing import Any, ClassVar

from grpclib.server import Stream

from barman_cloud.backup.backup import backup_store_options, settings_from, take_backup
from barman_cloud.catalog.listing import load_catalog
from barman_cloud.catalog.recovery_window import recovery_window
from barman_cloud.errors import BarmanCloudError, InvalidInput
from barman_cloud.format.backup_id import RESERVED_NAMES, is_backup_id
from barman_cloud.format.keys import ServerLayout
from barman_cloud.storage.factory import open_store
from barman_cloud.storage.location import parse_destination
from plugin_grpc.errors import not_implemented, to_grpc_error
from plugin_grpc.metadata import PLUGIN_NAME
from plugin_grpc.operator_side.cluster import decode_object, parse_cluster
from plugin_grpc.proto import backup_grpc, backup_pb2, identity_pb2
from plugin_grpc.stats import SidecarStats
from plugin_grpc.status_writer import NoStatus, StatusWriter
from plugin_grpc.wal_targets import WalTargets

RPC = backup_pb2.BackupCapability.RPC
log = logging.getLogger(__name__)


def _backup_name(backup: dict[str, Any]) -> str:
    """The Backup object's name (unique in its namespace), unless barman would read it as an ID
    or a shortcut; then upstream's ``backup-YYYYMMDDHHMMSS``."""
    metadata = backup.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    name = name if isinstance(name, str) else ""
    if name and not is_backup_id(name) and name not in RESERVED_NAMES:
        return name
    return datetime.now(UTC).strftime("backup-%Y%m%d%H%M%S")


def _immediate_checkpoint(backup: dict[str, Any]) -> bool | None:
    spec = backup.get("spec")
    online = spec.get("onlineConfiguration") if isinstance(spec, dict) else None
    value = online.get("immediateCheckpoint") if isinstance(online, dict) else None
    return value if isinstance(value, bool) else None


def _unix(moment: datetime | None) -> int:
    return int(moment.timestamp()) if moment else 0


class BackupService(backup_grpc.BackupBase):
    """Physical base backups (``Backup`` objects with ``method: plugin``)."""

    capability: ClassVar = identity_pb2.PluginCapability.Service.TYPE_BACKUP_SERVICE

    def __init__(
        self,
        targets: WalTargets | None = None,
        *,
        stats: SidecarStats | None = None,
        status: StatusWriter | None = None,
        postgres_conninfo: str | None = None,
    ) -> None:
        self.targets = targets
        self.stats = stats or SidecarStats()
        self.status = status or NoStatus()
        self.postgres_conninfo = postgres_conninfo
        """libpq conninfo; None: libpq's environment (the sidecar inherits PostgreSQL's container's)."""

    async def GetCapabilities(
        self, stream: Stream[backup_pb2.BackupCapabilitiesRequest, backup_pb2.BackupCapabilitiesResult]
    ) -> None:
        await stream.recv_message()
        # TYPE_BACKUP is mandatory: CloudNativePG refuses a backup without it.
        await stream.send_message(
            backup_pb2.BackupCapabilitiesResult(
                capabilities=[backup_pb2.BackupCapability(rpc=RPC(type=RPC.TYPE_BACKUP))]
            )
        )

    async def Backup(self, stream: Stream[backup_pb2.BackupRequest, backup_pb2.BackupResult]) -> None:
        request = await stream.recv_message()
        assert request is not None
        if self.targets is None:
            raise not_implemented(
                "Backup.Backup", arrives_with="the sidecar's configuration (-f FILE or Kubernetes)"
            )
        started = time.monotonic()
        try:
            result = await self._backup(request)
        except BarmanCloudError as error:
            self.stats.record("backup", time.monotonic() - started, ok=False)
            log.error("backup failed", extra={"error": str(error)})
            raise to_grpc_error(error) from None
        self.stats.record(
            "backup", time.monotonic() - started, int(result.metadata.get("uploadedBytes", "0"))
        )
        await stream.send_message(result)

    async def _backup(self, request: backup_pb2.BackupRequest) -> backup_pb2.BackupResult:
        assert self.targets is not None
        backup = dict(decode_object(request.backup_definition or b"{}", "the Backup JSON"))
        # Checked before the backup, not after hours of uploads.
        cluster = parse_cluster(request.cluster_definition) if request.cluster_definition else None
        parameters = dict(request.parameters)
        resolved, server = await self.targets.backup_store(
            request.cluster_definition, parameters.get("barmanObjectName")
        )
        configuration = resolved.object_store.spec.configuration
        overrides: dict[str, Any] = {"backup_name": _backup_name(backup)}
        if (immediate := _immediate_checkpoint(backup)) is not None:
            overrides["immediate_checkpoint"] = immediate
        try:
            settings = settings_from(configuration, **overrides)
        except InvalidInput as error:
            raise InvalidInput(
                f"invalid backup settings in ObjectStore {resolved.object_store.name}: {error}"
            ) from None
        options = backup_store_options(resolved.options, configuration, settings.jobs)
        layout = ServerLayout(parse_destination(resolved.destination).prefix, server)
        store = open_store(resolved.destination, resolved.credentials, options)
        try:
            try:
                done = await take_backup(store, layout, self.postgres_conninfo, settings)
            except BarmanCloudError:
                await self.status.backup_failed(resolved.object_store, server, datetime.now(UTC))
                raise
            try:
                catalog = await load_catalog(store, layout)
                window = await recovery_window(store, layout, catalog)
                await self.status.recovery_window(resolved.object_store, server, window)
            except BarmanCloudError as error:
                log.warning(
                    "backup done, but the recovery window could not be refreshed", extra={"error": str(error)}
                )
        finally:
            await store.close()
        info = done.info
        log.info("backup done", extra={"backup_id": done.backup_id, "seconds": round(done.seconds, 1)})
        return backup_pb2.BackupResult(
            backup_id=done.backup_id,
            backup_name=info.backup_name or "",
            started_at=_unix(info.begin_time),
            stopped_at=_unix(info.end_time),
            begin_wal=info.begin_wal or "",
            end_wal=info.end_wal or "",
            begin_lsn=info.begin_xlog or "",
            end_lsn=info.end_xlog or "",
            backup_label_file=(info.backup_label or "").encode(),
            instance_id=os.environ.get("POD_NAME", ""),
            online=True,
            metadata={
                # What upstream returns (stored in Backup.status.pluginMetadata).
                "timeline": str(info.timeline or ""),
                "version": str(info.version or ""),
                "name": info.backup_name or "",
                "displayName": json.dumps(info.backup_name or done.backup_id)[1:-1],
                "clusterUID": (cluster.identity.uid or "") if cluster else "",
                "pluginName": PLUGIN_NAME,
                "uploadedBytes": str(done.uploaded_bytes),
            },
        )
