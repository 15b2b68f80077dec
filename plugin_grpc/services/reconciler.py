"""``cnpgi.reconciler.v1.ReconcilerHooks``: Pre/Post hooks of the Cluster and Backup reconcilers."""

from __future__ import annotations

from typing import ClassVar

from grpclib.server import Stream

from plugin_grpc.errors import not_implemented
from plugin_grpc.proto import identity_pb2, reconciler_grpc, reconciler_pb2

Kind = reconciler_pb2.ReconcilerHooksCapability.Kind


class ReconcilerHooksService(reconciler_grpc.ReconcilerHooksBase):
    """Per-cluster RBAC before the Cluster reconciler runs; Backup hooks."""

    capability: ClassVar = identity_pb2.PluginCapability.Service.TYPE_RECONCILER_HOOKS

    async def GetCapabilities(
        self,
        stream: Stream[
            reconciler_pb2.ReconcilerHooksCapabilitiesRequest,
            reconciler_pb2.ReconcilerHooksCapabilitiesResult,
        ],
    ) -> None:
        await stream.recv_message()
        await stream.send_message(
            reconciler_pb2.ReconcilerHooksCapabilitiesResult(
                reconciler_capabilities=[
                    reconciler_pb2.ReconcilerHooksCapability(kind=Kind.KIND_CLUSTER),
                    reconciler_pb2.ReconcilerHooksCapability(kind=Kind.KIND_BACKUP),
                ]
            )
        )

    async def Pre(
        self, stream: Stream[reconciler_pb2.ReconcilerHooksRequest, reconciler_pb2.ReconcilerHooksResult]
    ) -> None:
        await stream.recv_message()
        raise not_implemented("ReconcilerHooks.Pre", arrives_with="the operator side, issue #7")

    async def Post(
        self, stream: Stream[reconciler_pb2.ReconcilerHooksRequest, reconciler_pb2.ReconcilerHooksResult]
    ) -> None:
        await stream.recv_message()
        raise not_implemented("ReconcilerHooks.Post", arrives_with="the operator side, issue #7")
