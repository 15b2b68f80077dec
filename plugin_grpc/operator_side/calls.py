"""What every operator-side RPC does around its work: a configured endpoint, the deadline, and
engine errors turned into the gRPC status CloudNativePG shows in the Cluster's phase."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.metadata import Deadline

from barman_cloud.errors import BarmanCloudError
from plugin_grpc.errors import to_grpc_error
from plugin_grpc.operator_side import deadlines
from plugin_grpc.operator_side.settings import OperatorSide

log = logging.getLogger(__name__)


def configured(side: OperatorSide | None, rpc: str) -> OperatorSide:
    """The endpoint's configuration; an endpoint assembled without one cannot do the work."""
    if side is None:
        raise GRPCError(
            Status.FAILED_PRECONDITION,
            f"{rpc}: this endpoint was started without the operator side's configuration "
            "(sidecar image and Kubernetes client); start it with `barman-cloud-plugin operator`",
        )
    return side


@contextlib.asynccontextmanager
async def handling(rpc: str, side: OperatorSide, deadline: Deadline | None) -> AsyncIterator[None]:
    """Run the body within the deadline; an engine error becomes its gRPC status (and a log
    line with the message only: messages name objects and fields, never secret values)."""
    try:
        async with deadlines.within(deadline, side.hook_budget, rpc):
            yield
    except BarmanCloudError as error:
        log.warning(f"{rpc} failed", extra={"error": str(error), "kind": type(error).__name__})
        raise to_grpc_error(error) from None
