"""``cnpgi.wal.v1.WAL``: archive_command and restore_command through the sidecar."""

from __future__ import annotations

from typing import ClassVar

from grpclib.server import Stream

from plugin_grpc.errors import not_implemented
from plugin_grpc.proto import identity_pb2, wal_grpc, wal_pb2

RPC = wal_pb2.WALCapability.RPC


class WALService(wal_grpc.WALBase):
    """WAL archive and restore. The instance sidecar does both; the restore job only restores."""

    capability: ClassVar = identity_pb2.PluginCapability.Service.TYPE_WAL_SERVICE

    def __init__(self, *, archive: bool = True, restore: bool = True) -> None:
        rpcs = [RPC.TYPE_ARCHIVE_WAL] if archive else []
        rpcs += [RPC.TYPE_RESTORE_WAL] if restore else []
        self._capabilities = wal_pb2.WALCapabilitiesResult(
            capabilities=[wal_pb2.WALCapability(rpc=RPC(type=t)) for t in rpcs]
        )

    async def GetCapabilities(
        self, stream: Stream[wal_pb2.WALCapabilitiesRequest, wal_pb2.WALCapabilitiesResult]
    ) -> None:
        await stream.recv_message()
        await stream.send_message(self._capabilities)

    async def Archive(self, stream: Stream[wal_pb2.WALArchiveRequest, wal_pb2.WALArchiveResult]) -> None:
        await stream.recv_message()
        raise not_implemented(
            "WAL.Archive", arrives_with="the WAL engine and instance sidecar, issues #4 and #6"
        )

    async def Restore(self, stream: Stream[wal_pb2.WALRestoreRequest, wal_pb2.WALRestoreResult]) -> None:
        await stream.recv_message()
        raise not_implemented(
            "WAL.Restore", arrives_with="the WAL engine and instance sidecar, issues #4 and #6"
        )

    async def Status(self, stream: Stream[wal_pb2.WALStatusRequest, wal_pb2.WALStatusResult]) -> None:
        await stream.recv_message()
        raise not_implemented("WAL.Status", arrives_with="not advertised: CloudNativePG never calls it")

    async def SetFirstRequired(
        self, stream: Stream[wal_pb2.SetFirstRequiredRequest, wal_pb2.SetFirstRequiredResult]
    ) -> None:
        await stream.recv_message()
        raise not_implemented(
            "WAL.SetFirstRequired", arrives_with="not advertised: CloudNativePG never calls it"
        )
