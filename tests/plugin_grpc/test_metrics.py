"""Metrics.Define then Metrics.Collect, as CloudNativePG's exporter calls them on every scrape."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from grpclib.client import Channel

from barman_cloud.config.manifests import parse_manifests
from barman_cloud.config.secrets import resolve
from plugin_grpc.metadata import PLUGIN_NAME
from plugin_grpc.proto import metrics_grpc, metrics_pb2, wal_grpc, wal_pb2
from plugin_grpc.roles import Role, assemble
from plugin_grpc.server import PluginServer
from plugin_grpc.wal_targets import StaticWalTargets

UPSTREAM = {
    "barman_cloud_cloudnative_pg_io_first_recoverability_point",
    "barman_cloud_cloudnative_pg_io_last_available_backup_timestamp",
    "barman_cloud_cloudnative_pg_io_last_failed_backup_timestamp",
}


async def test_every_collected_sample_matches_its_definition(tmp_path: Path) -> None:
    manifests = parse_manifests(
        f"""
apiVersion: barmancloud.cnpg.io/v1
kind: ObjectStore
metadata: {{name: s}}
spec: {{configuration: {{destinationPath: "file://{tmp_path}/bucket"}}}}
status:
  serverRecoveryWindow:
    pg: {{firstRecoverabilityPoint: "2026-11-01T00:00:00Z", lastSuccessfulBackupTime: "2026-11-20T00:00:00Z"}}
"""
    )
    targets = StaticWalTargets(await resolve(manifests.object_store(), manifests), "pg", tmp_path / "spool")
    server = PluginServer(assemble(Role.INSTANCE, wal_targets=targets))
    await server.start_unix(tmp_path / PLUGIN_NAME)
    channel = Channel(path=str(tmp_path / PLUGIN_NAME))
    try:
        segment = tmp_path / "pg_wal" / "000000010000000000000001"
        segment.parent.mkdir()
        segment.write_bytes(b"\x00" * 1024 * 1024)
        await wal_grpc.WALStub(channel).Archive(wal_pb2.WALArchiveRequest(source_file_name=str(segment)))
        stub = metrics_grpc.MetricsStub(channel)
        defined = {m.fq_name: m for m in (await stub.Define(metrics_pb2.DefineMetricsRequest())).metrics}
        collected = (await stub.Collect(metrics_pb2.CollectMetricsRequest())).metrics
    finally:
        channel.close()
        await server.stop()
        await targets.close()

    assert set(defined) >= UPSTREAM
    for metric in defined.values():
        assert (
            metric.HasField("value_type")
            and metric.value_type.type != metrics_pb2.MetricType.TYPE_UNSPECIFIED
        )
    for sample in collected:
        assert sample.fq_name in defined, sample.fq_name
        assert len(sample.variable_labels) == len(defined[sample.fq_name].variable_labels), sample.fq_name
    values = {(s.fq_name, tuple(s.variable_labels)): s.value for s in collected}
    prefix = "barman_cloud_cloudnative_pg_io_"
    assert (
        values[(prefix + "first_recoverability_point", ())] == datetime(2026, 11, 1, tzinfo=UTC).timestamp()
    )
    assert (
        values[(prefix + "last_available_backup_timestamp", ())]
        == datetime(2026, 11, 20, tzinfo=UTC).timestamp()
    )
    assert values[(prefix + "last_failed_backup_timestamp", ())] == 0.0
    assert values[(prefix + "operations_total", ("archive",))] == 1.0
    assert values[(prefix + "operation_bytes_total", ("archive",))] == 1024 * 1024
    assert values[(prefix + "operation_failures_total", ("archive",))] == 0.0
    assert values[(prefix + "last_archived_wal_timestamp", ())] > 0
