"""``cnpgi.reconciler.v1.ReconcilerHooks``: Pre/Post hooks of the Cluster and Backup reconcilers."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from grpclib.server import Stream

from plugin_grpc.operator_side import calls
from plugin_grpc.operator_side.cluster import decode_object
from plugin_grpc.operator_side.reconcile import before_cluster_reconcile
from plugin_grpc.operator_side.settings import OperatorSide
from plugin_grpc.proto import identity_pb2, reconciler_grpc, reconciler_pb2

Kind = reconciler_pb2.ReconcilerHooksCapability.Kind
Result = reconciler_pb2.ReconcilerHooksResult
CONTINUE = Result(behavior=Result.BEHAVIOR_CONTINUE)


def _is_cluster(request: reconciler_pb2.ReconcilerHooksRequest) -> bool:
    """Whether the hook is the Cluster reconciler's (its resource is the Cluster again).

    ``kind`` is normally set; without it, a resource that is the Cluster itself (same uid) or
    no resource at all still means the Cluster reconciler.
    """
    if not request.resource_definition:
        return True
    resource = decode_object(request.resource_definition, "the resource_definition")
    kind = resource.get("kind")
    if kind is not None:
        return bool(kind == "Cluster")
    try:
        cluster: Any = json.loads(request.cluster_definition)
    except ValueError:
        return False
    uid = _uid(resource)
    return uid is not None and isinstance(cluster, dict) and uid == _uid(cluster)


def _uid(document: dict[str, Any] | Any) -> Any:
    metadata = document.get("metadata") if isinstance(document, dict) else None
    return metadata.get("uid") if isinstance(metadata, dict) else None


class ReconcilerHooksService(reconciler_grpc.ReconcilerHooksBase):
    """Per-cluster RBAC (and a requeue while an ObjectStore is missing) before the Cluster
    reconciler runs; nothing to do for Backups or after the reconciliation."""

    capability: ClassVar = identity_pb2.PluginCapability.Service.TYPE_RECONCILER_HOOKS

    def __init__(self, side: OperatorSide | None = None) -> None:
        self.side = side

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

    async def Pre(self, stream: Stream[reconciler_pb2.ReconcilerHooksRequest, Result]) -> None:
        request = await stream.recv_message()
        assert request is not None
        rpc = "ReconcilerHooks.Pre"
        side = calls.configured(self.side, rpc)
        async with calls.handling(rpc, side, stream.deadline):
            if not _is_cluster(request):
                await stream.send_message(CONTINUE)  # Backups: nothing to prepare
                return
            decision = await before_cluster_reconcile(side, request.cluster_definition)
        if decision.requeue_after is None:
            await stream.send_message(CONTINUE)
        else:
            await stream.send_message(
                Result(behavior=Result.BEHAVIOR_REQUEUE, requeue_after=decision.requeue_after)
            )

    async def Post(self, stream: Stream[reconciler_pb2.ReconcilerHooksRequest, Result]) -> None:
        await stream.recv_message()
        await stream.send_message(CONTINUE)
