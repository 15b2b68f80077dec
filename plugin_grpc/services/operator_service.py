"""``cnpgi.operator.v1.Operator``: of its RPCs CloudNativePG only calls ``SetStatusInCluster``.

(Not named operator.py: a module of that name would shadow the standard library for anyone
running Python from this folder.)
"""

from __future__ import annotations

from typing import ClassVar

from grpclib.server import Stream

from plugin_grpc.errors import not_implemented
from plugin_grpc.operator_side import calls
from plugin_grpc.operator_side.settings import OperatorSide
from plugin_grpc.operator_side.status import cluster_status
from plugin_grpc.proto import identity_pb2, operator_grpc, operator_pb2

RPC = operator_pb2.OperatorCapability.RPC
NEVER_CALLED = "not advertised: CloudNativePG no longer calls it"


class OperatorService(operator_grpc.OperatorBase):
    """The plugin's status in ``Cluster.status.pluginStatus`` (shown by ``kubectl cnpg status``)."""

    capability: ClassVar = identity_pb2.PluginCapability.Service.TYPE_OPERATOR_SERVICE

    def __init__(self, side: OperatorSide | None = None) -> None:
        self.side = side

    async def GetCapabilities(
        self,
        stream: Stream[operator_pb2.OperatorCapabilitiesRequest, operator_pb2.OperatorCapabilitiesResult],
    ) -> None:
        await stream.recv_message()
        await stream.send_message(
            operator_pb2.OperatorCapabilitiesResult(
                capabilities=[operator_pb2.OperatorCapability(rpc=RPC(type=RPC.TYPE_SET_STATUS_IN_CLUSTER))]
            )
        )

    async def SetStatusInCluster(
        self, stream: Stream[operator_pb2.SetStatusInClusterRequest, operator_pb2.SetStatusInClusterResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        rpc = "Operator.SetStatusInCluster"
        side = calls.configured(self.side, rpc)
        async with calls.handling(rpc, side, stream.deadline):
            # Empty unless the status changed: any answer requeues the Cluster after 5 s.
            status = await cluster_status(side, request.cluster)
        await stream.send_message(operator_pb2.SetStatusInClusterResponse(json_status=status))

    async def ValidateClusterCreate(
        self,
        stream: Stream[
            operator_pb2.OperatorValidateClusterCreateRequest,
            operator_pb2.OperatorValidateClusterCreateResult,
        ],
    ) -> None:
        await stream.recv_message()
        raise not_implemented("Operator.ValidateClusterCreate", arrives_with=NEVER_CALLED)

    async def ValidateClusterChange(
        self,
        stream: Stream[
            operator_pb2.OperatorValidateClusterChangeRequest,
            operator_pb2.OperatorValidateClusterChangeResult,
        ],
    ) -> None:
        await stream.recv_message()
        raise not_implemented("Operator.ValidateClusterChange", arrives_with=NEVER_CALLED)

    async def MutateCluster(
        self,
        stream: Stream[operator_pb2.OperatorMutateClusterRequest, operator_pb2.OperatorMutateClusterResult],
    ) -> None:
        await stream.recv_message()
        raise not_implemented("Operator.MutateCluster", arrives_with=NEVER_CALLED)

    async def Deregister(
        self, stream: Stream[operator_pb2.DeregisterRequest, operator_pb2.DeregisterResponse]
    ) -> None:
        await stream.recv_message()
        raise not_implemented("Operator.Deregister", arrives_with=NEVER_CALLED)
