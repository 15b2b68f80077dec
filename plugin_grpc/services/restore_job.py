"""``cnpgi.wal.v1.RestoreJobHooks`` (package ``cnpgi.wal.v1`` upstream): the recovery Job's restore."""

from __future__ import annotations

from typing import ClassVar

from grpclib.server import Stream

from plugin_grpc.errors import not_implemented
from plugin_grpc.proto import identity_pb2, restore_job_grpc, restore_job_pb2

Kind = restore_job_pb2.RestoreJobHooksCapability.Kind


class RestoreJobHooksService(restore_job_grpc.RestoreJobHooksBase):
    """Populates PGDATA from a base backup in CloudNativePG's ``full-recovery`` Job."""

    capability: ClassVar = identity_pb2.PluginCapability.Service.TYPE_RESTORE_JOB

    async def GetCapabilities(
        self,
        stream: Stream[
            restore_job_pb2.RestoreJobHooksCapabilitiesRequest,
            restore_job_pb2.RestoreJobHooksCapabilitiesResult,
        ],
    ) -> None:
        await stream.recv_message()
        await stream.send_message(
            restore_job_pb2.RestoreJobHooksCapabilitiesResult(
                capabilities=[restore_job_pb2.RestoreJobHooksCapability(kind=Kind.KIND_RESTORE)]
            )
        )

    async def Restore(
        self, stream: Stream[restore_job_pb2.RestoreRequest, restore_job_pb2.RestoreResponse]
    ) -> None:
        await stream.recv_message()
        raise not_implemented(
            "RestoreJobHooks.Restore", arrives_with="the restore engine and restore sidecar, issues #5 and #6"
        )
