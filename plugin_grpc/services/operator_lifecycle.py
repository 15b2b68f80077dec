"""``cnpgi.operator_lifecycle.v1.OperatorLifecycle``: sidecar injection into Pods and Jobs."""

from __future__ import annotations

from typing import ClassVar

from grpclib.server import Stream

from plugin_grpc.operator_side import calls
from plugin_grpc.operator_side.lifecycle import lifecycle_patch
from plugin_grpc.operator_side.settings import OperatorSide
from plugin_grpc.proto import identity_pb2, operator_lifecycle_grpc, operator_lifecycle_pb2

Operation = operator_lifecycle_pb2.OperatorOperationType


def _subscription(
    group: str, kind: str, *operations: Operation.Type.ValueType
) -> operator_lifecycle_pb2.OperatorLifecycleCapabilities:
    return operator_lifecycle_pb2.OperatorLifecycleCapabilities(
        group=group, kind=kind, operation_types=[Operation(type=op) for op in operations]
    )


# Each (group, kind) listed once: a second entry would make CloudNativePG call the hook twice.
SUBSCRIPTIONS = (
    _subscription("", "Pod", Operation.TYPE_CREATE, Operation.TYPE_EVALUATE),
    _subscription("batch", "Job", Operation.TYPE_CREATE),
)


class OperatorLifecycleService(operator_lifecycle_grpc.OperatorLifecycleBase):
    """JSON patches for instance Pods (CREATE, EVALUATE) and recovery Jobs (CREATE).

    ``side`` is None only for an endpoint assembled without configuration (the handshake works,
    the hook fails with FAILED_PRECONDITION).
    """

    capability: ClassVar = identity_pb2.PluginCapability.Service.TYPE_LIFECYCLE_SERVICE

    def __init__(self, side: OperatorSide | None = None) -> None:
        self.side = side

    async def GetCapabilities(
        self,
        stream: Stream[
            operator_lifecycle_pb2.OperatorLifecycleCapabilitiesRequest,
            operator_lifecycle_pb2.OperatorLifecycleCapabilitiesResponse,
        ],
    ) -> None:
        await stream.recv_message()
        await stream.send_message(
            operator_lifecycle_pb2.OperatorLifecycleCapabilitiesResponse(lifecycle_capabilities=SUBSCRIPTIONS)
        )

    async def LifecycleHook(
        self,
        stream: Stream[
            operator_lifecycle_pb2.OperatorLifecycleRequest, operator_lifecycle_pb2.OperatorLifecycleResponse
        ],
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        rpc = "OperatorLifecycle.LifecycleHook"
        side = calls.configured(self.side, rpc)
        async with calls.handling(rpc, side, stream.deadline):
            patch = await lifecycle_patch(side, request.cluster_definition, request.object_definition)
        await stream.send_message(operator_lifecycle_pb2.OperatorLifecycleResponse(json_patch=patch))
