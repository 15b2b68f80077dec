"""``cnpgi.metrics.v1.Metrics``: plugin metrics on the instance manager's exporter (port 9187).

Upstream's three gauges keep their names (dashboards and alerts use them); ours follow with the
same prefix. Every metric defined is collected on every scrape, with as many label values as it
declares label names (CloudNativePG fails the whole scrape otherwise).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import ClassVar

from grpclib.server import Stream

from barman_cloud.errors import BarmanCloudError
from plugin_grpc.errors import to_grpc_error
from plugin_grpc.operator_side.cluster import parse_cluster
from plugin_grpc.proto import identity_pb2, metrics_grpc, metrics_pb2
from plugin_grpc.stats import OPERATIONS, SidecarStats
from plugin_grpc.wal_targets import WalTargets

RPC = metrics_pb2.MetricsCapability.RPC
GAUGE = metrics_pb2.MetricType(type=metrics_pb2.MetricType.TYPE_GAUGE)
COUNTER = metrics_pb2.MetricType(type=metrics_pb2.MetricType.TYPE_COUNTER)
PREFIX = "barman_cloud_cloudnative_pg_io_"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Definition:
    name: str
    help: str
    kind: metrics_pb2.MetricType
    labels: tuple[str, ...] = ()

    @property
    def fq_name(self) -> str:
        return PREFIX + self.name


DEFINITIONS = (
    Definition(
        "first_recoverability_point", "Unix time of the first recoverability point (0 if unknown)", GAUGE
    ),
    Definition(
        "last_available_backup_timestamp", "Unix time of the last successful backup (0 if none)", GAUGE
    ),
    Definition("last_failed_backup_timestamp", "Unix time of the last failed backup (0 if none)", GAUGE),
    Definition("wal_archive_queue_depth", "WAL segments being archived ahead of PostgreSQL", GAUGE),
    Definition("operations_total", "Calls per operation", COUNTER, ("operation",)),
    Definition("operation_failures_total", "Failed calls per operation", COUNTER, ("operation",)),
    Definition("operation_bytes_total", "Bytes moved per operation (uncompressed)", COUNTER, ("operation",)),
    Definition("operation_seconds_total", "Seconds spent per operation", COUNTER, ("operation",)),
    Definition("operation_last_seconds", "Duration of the last call per operation", GAUGE, ("operation",)),
    # No WAL-name label: it would start a new series with every segment.
    Definition("last_archived_wal_timestamp", "Unix time the last WAL file was archived", GAUGE),
    Definition("last_archived_wal_age_seconds", "Seconds since the last WAL file was archived", GAUGE),
)


def _archives(cluster_definition: bytes) -> bool:
    """Whether the Cluster archives through this plugin (local runs, with no Cluster: yes)."""
    return not cluster_definition or parse_cluster(cluster_definition).plugin.archive is not None


def _unix(moment: object) -> float:
    return float(moment.timestamp()) if hasattr(moment, "timestamp") else 0.0


class MetricsService(metrics_grpc.MetricsBase):
    """Define and Collect, called on every Prometheus scrape of the instance."""

    capability: ClassVar = identity_pb2.PluginCapability.Service.TYPE_METRICS

    def __init__(self, targets: WalTargets | None = None, stats: SidecarStats | None = None) -> None:
        self.targets = targets
        self.stats = stats or SidecarStats()
        self._definitions = metrics_pb2.DefineMetricsResult(
            metrics=[
                metrics_pb2.Metric(
                    fq_name=d.fq_name, help=d.help, variable_labels=d.labels, value_type=d.kind
                )
                for d in DEFINITIONS
            ]
        )

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
        await stream.send_message(self._definitions)

    async def Collect(
        self, stream: Stream[metrics_pb2.CollectMetricsRequest, metrics_pb2.CollectMetricsResult]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        values: dict[str, float] = {}
        queue_depth = 0
        if self.targets is not None:
            try:
                window = await self.targets.recovery_window(request.cluster_definition)
                # A replica cluster fed from its source's archive may archive nothing itself:
                # its scrape still answers (zeros), as upstream's does.
                if _archives(request.cluster_definition):
                    target = await self.targets.archive_target(request.cluster_definition)
                    queue_depth = target.queue_depth()
            except BarmanCloudError as error:
                # Upstream fails the scrape when the ObjectStore is missing; so do we, saying why.
                raise to_grpc_error(error) from None
            if window is not None:
                values["first_recoverability_point"] = _unix(window.first_recoverability_point)
                values["last_available_backup_timestamp"] = _unix(window.last_successful_backup_time)
                values["last_failed_backup_timestamp"] = _unix(window.last_failed_backup_time)
        samples = [
            metrics_pb2.CollectMetric(fq_name=PREFIX + name, value=values.get(name, 0.0))
            for name in (
                "first_recoverability_point",
                "last_available_backup_timestamp",
                "last_failed_backup_timestamp",
            )
        ]
        samples.append(
            metrics_pb2.CollectMetric(fq_name=PREFIX + "wal_archive_queue_depth", value=queue_depth)
        )
        for operation in OPERATIONS:
            stats = self.stats.operations[operation]
            for name, value in (
                ("operations_total", stats.calls),
                ("operation_failures_total", stats.failures),
                ("operation_bytes_total", stats.bytes),
                ("operation_seconds_total", stats.seconds),
                ("operation_last_seconds", stats.last_seconds),
            ):
                samples.append(
                    metrics_pb2.CollectMetric(
                        fq_name=PREFIX + name, value=float(value), variable_labels=[operation]
                    )
                )
        at = self.stats.last_archived_at
        samples.append(
            metrics_pb2.CollectMetric(fq_name=PREFIX + "last_archived_wal_timestamp", value=at or 0.0)
        )
        age = time.time() - at if at else 0.0
        samples.append(metrics_pb2.CollectMetric(fq_name=PREFIX + "last_archived_wal_age_seconds", value=age))
        await stream.send_message(metrics_pb2.CollectMetricsResult(metrics=samples))
