"""The one place where engine errors become gRPC statuses.

CloudNativePG treats every non-OK status as a failure and shows its message; the codes still
matter to people reading logs and to our own clients (NotFound at the end of the WAL archive is
normal, Unavailable is worth a retry, InvalidArgument is not).
"""

from __future__ import annotations

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from barman_cloud import errors

_STATUS_BY_ERROR: tuple[tuple[type[errors.BarmanCloudError], Status], ...] = (
    (errors.Corrupt, Status.DATA_LOSS),
    (errors.NotFound, Status.NOT_FOUND),
    (errors.InvalidInput, Status.INVALID_ARGUMENT),
    (errors.Unavailable, Status.UNAVAILABLE),
    (errors.Conflict, Status.ALREADY_EXISTS),
    (errors.FailedPrecondition, Status.FAILED_PRECONDITION),
)


def to_grpc_error(error: errors.BarmanCloudError) -> GRPCError:
    """Translate an engine error into the status CloudNativePG receives."""
    for error_type, status in _STATUS_BY_ERROR:
        if isinstance(error, error_type):
            return GRPCError(status, str(error))
    return GRPCError(Status.INTERNAL, str(error))


def not_implemented(rpc: str, *, arrives_with: str) -> GRPCError:
    """The answer of an RPC whose capability is advertised but whose engine is not there yet."""
    return GRPCError(
        Status.UNIMPLEMENTED,
        f"{rpc} is not implemented yet in this version of the barman-cloud plugin ({arrives_with})",
    )
