"""``cnpgi.identity.v1.Identity``: metadata, capabilities and the readiness probe.

CloudNativePG calls these three on every new connection (and Probe on every pooled one), and
short-lived commands such as ``wal-archive`` open a new connection per WAL file: the answers are
prebuilt so that the handshake costs nothing but the round trips.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from plugin_grpc.metadata import plugin_metadata
from plugin_grpc.proto import identity_grpc, identity_pb2

ServiceType = identity_pb2.PluginCapability.Service.Type


class IdentityService(identity_grpc.IdentityBase):
    """Identity for one endpoint, advertising ``capabilities`` in the given order.

    ``ready`` is asked on every Probe; when it answers False the probe fails with UNAVAILABLE,
    which makes CloudNativePG drop the connection and dial again.
    """

    def __init__(self, capabilities: Iterable[ServiceType.ValueType], ready: Callable[[], bool]) -> None:
        types = list(capabilities)
        if identity_pb2.PluginCapability.Service.TYPE_UNSPECIFIED in types:
            raise ValueError("TYPE_UNSPECIFIED is not a capability")
        if len(set(types)) != len(types):
            raise ValueError(f"capability advertised twice: {[ServiceType.Name(t) for t in types]}")
        self.capabilities = tuple(types)
        self._ready = ready
        self._metadata = plugin_metadata()
        self._capabilities = identity_pb2.GetPluginCapabilitiesResponse(
            capabilities=[
                # CloudNativePG dereferences `service` without a nil check: it is always set.
                identity_pb2.PluginCapability(service=identity_pb2.PluginCapability.Service(type=t))
                for t in types
            ]
        )

    async def GetPluginMetadata(
        self, stream: Stream[identity_pb2.GetPluginMetadataRequest, identity_pb2.GetPluginMetadataResponse]
    ) -> None:
        await stream.recv_message()
        await stream.send_message(self._metadata)

    async def GetPluginCapabilities(
        self,
        stream: Stream[identity_pb2.GetPluginCapabilitiesRequest, identity_pb2.GetPluginCapabilitiesResponse],
    ) -> None:
        await stream.recv_message()
        await stream.send_message(self._capabilities)

    async def Probe(self, stream: Stream[identity_pb2.ProbeRequest, identity_pb2.ProbeResponse]) -> None:
        await stream.recv_message()
        if not self._ready():
            raise GRPCError(Status.UNAVAILABLE, "the barman-cloud plugin is starting or shutting down")
        await stream.send_message(identity_pb2.ProbeResponse(ready=True))
