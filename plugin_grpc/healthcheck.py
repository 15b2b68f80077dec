"""``barman-cloud-plugin healthcheck unix``: the sidecar's startup probe.

Asks ``grpc.health.v1.Health/Check`` on the socket. Exit codes, as upstream: 0 SERVING,
1 the call failed (no socket, nobody listening, timeout), 2 UNKNOWN, 3 NOT_SERVING, 125 any
other answer.
"""

from __future__ import annotations

from grpclib.client import Channel
from grpclib.exceptions import GRPCError, StreamTerminatedError
from grpclib.health.v1 import health_grpc, health_pb2

EXIT_SERVING = 0
EXIT_RPC_ERROR = 1
EXIT_UNKNOWN = 2
EXIT_NOT_SERVING = 3
EXIT_OTHER = 125

_EXIT_BY_STATUS = {
    health_pb2.HealthCheckResponse.SERVING: EXIT_SERVING,
    health_pb2.HealthCheckResponse.UNKNOWN: EXIT_UNKNOWN,
    health_pb2.HealthCheckResponse.NOT_SERVING: EXIT_NOT_SERVING,
}


async def check_unix(path: str, timeout: float = 5.0) -> tuple[int, str]:
    """Return the probe's exit code and a one-line explanation."""
    channel = Channel(path=path)
    try:
        response = await health_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=timeout
        )
    except (TimeoutError, OSError, GRPCError, StreamTerminatedError) as error:
        return EXIT_RPC_ERROR, f"health check on {path} failed: {error or type(error).__name__}"
    finally:
        channel.close()
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return _EXIT_BY_STATUS.get(response.status, EXIT_OTHER), f"{path}: {name}"
