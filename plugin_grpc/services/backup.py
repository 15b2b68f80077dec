"""``cnpgi.backup.v1.Backup``: a base backup taken by the instance sidecar."""

from __future__ import annotations

from typing import ClassVar

from grpclib.server import Stream

from plugin_grpc.errors import not_implemented
from plugin_grpc.proto import backup_grpc, backup_pb2, identity_pb2

RPC = backup_pb2.BackupCapability.RPC


class BackupService(backup_grpc.BackupBase):
    """Physical base backups (``Backup`` objects with ``method: plugin``)."""

    capability: ClassVar = identity_pb2.PluginCapability.Service.TYPE_BACKUP_SERVICE

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
        await stream.recv_message()
        raise not_implemented(
            "Backup.Backup", arrives_with="the backup engine and instance sidecar, issues #5 and #6"
        )
