"""``cnpgi.metrics.v1.Metrics``: plugin metrics on the instance manager's exporter."""

from __future__ import annotations

from typing import ClassVar

from grpclib.server import Stream

from plugin_grpc.errors import not_implemented
from plugin_grpc.proto import identity_pb2, metrics_grpc, metrics_pb2

RPC = metrics_pb2.MetricsCapability.RPC


class MetricsService(metrics_grpc.MetricsBase):
    """Define and Collect, called on every Prometheus scrape of the instance."""

    capability: ClassVar = identity_pb2.PluginCapability.Service.TYPE_METRICS

    async def GetCapabilities(
        self, stream: Stream[metrics_pb2.MetricsCapabilitiesRequest, metrics_pb2.MetricsCapabilitiesResult]
    ) -> None:
        await stream.recv_message()
        await stream.send_message(
            metrics_pb2.MetricsCapabilitiesResult(
                capabilities=[metrics_pb2.MetricsCapability(rpc=RPC(type=RPC.TYPE_METRICS))]
            )
        )

    async def Define(
        self, stream: Stream[metrics_pb2.DefineMetricsRequest, metrics_pb2.DefineMetricsResult]
    ) -> None:
        await stream.recv_message()
        raise not_implemented("Metrics.Define", arrives_with="the instance sidecar, issue #6")

    async def Collect(
        self, stream: Stream[metrics_pb2.CollectMetricsRequest, metrics_pb2.CollectMetricsResult]
    ) -> None:
        await stream.recv_message()
        raise not_implemented("Metrics.Collect", arrives_with="the instance sidecar, issue #6")
