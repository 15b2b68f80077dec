"""CloudNativePG's connection handshake (cnpg-i-spec 1.3), replayed against each process role
over the unix socket, and against the operator role over mutual TLS."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from barman_cloud import __version__
from plugin_grpc.cnpg_caller import handshake, operator_channel, operator_client_context
from plugin_grpc.metadata import PLUGIN_NAME
from plugin_grpc.proto import identity_grpc, identity_pb2, wal_grpc, wal_pb2
from plugin_grpc.roles import Role
from plugin_grpc.server import PluginServer
from tests.harness.certificates import PKI
from tests.plugin_grpc.conftest import CallLog

Serve = Callable[[Role], tuple[PluginServer, CallLog]]

# What each process advertises, as CloudNativePG records it (upstream-plugin.md 4.0, plus the
# Operator service for SetStatusInCluster).
EXPECTED = {
    Role.INSTANCE: (
        ["TYPE_WAL_SERVICE", "TYPE_BACKUP_SERVICE", "TYPE_METRICS"],
        {
            "WAL": ["TYPE_ARCHIVE_WAL", "TYPE_RESTORE_WAL"],
            "Backup": ["TYPE_BACKUP"],
            "Metrics": ["TYPE_METRICS"],
        },
    ),
    Role.RESTORE: (
        ["TYPE_RESTORE_JOB", "TYPE_WAL_SERVICE"],
        {"WAL": ["TYPE_RESTORE_WAL"], "RestoreJobHooks": ["KIND_RESTORE"]},
    ),
    Role.OPERATOR: (
        [
            "TYPE_LIFECYCLE_SERVICE",
            "TYPE_RECONCILER_HOOKS",
            "TYPE_OPERATOR_SERVICE",
            "TYPE_INSTANCE_SIDECAR_INJECTION",
        ],
        {
            "Operator": ["TYPE_SET_STATUS_IN_CLUSTER"],
            "OperatorLifecycle": ["core/Pod:TYPE_CREATE+TYPE_EVALUATE", "batch/Job:TYPE_CREATE"],
            "ReconcilerHooks": ["KIND_CLUSTER", "KIND_BACKUP"],
        },
    ),
}

# CloudNativePG's order: metadata, capabilities, each service's GetCapabilities, Probe.
EXPECTED_CALLS = {
    Role.INSTANCE: ["WAL", "Backup", "Metrics"],
    Role.RESTORE: ["WAL", "RestoreJobHooks"],
    Role.OPERATOR: ["Operator", "OperatorLifecycle", "ReconcilerHooks"],
}
PACKAGES = {
    "WAL": "cnpgi.wal.v1.WAL",
    "Backup": "cnpgi.backup.v1.Backup",
    "Metrics": "cnpgi.metrics.v1.Metrics",
    "RestoreJobHooks": "cnpgi.wal.v1.RestoreJobHooks",
    "Operator": "cnpgi.operator.v1.Operator",
    "OperatorLifecycle": "cnpgi.operator_lifecycle.v1.OperatorLifecycle",
    "ReconcilerHooks": "cnpgi.reconciler.v1.ReconcilerHooks",
}


def _expected_calls(role: Role) -> list[str]:
    return [
        "/cnpgi.identity.v1.Identity/GetPluginMetadata",
        "/cnpgi.identity.v1.Identity/GetPluginCapabilities",
        *(f"/{PACKAGES[name]}/GetCapabilities" for name in EXPECTED_CALLS[role]),
        "/cnpgi.identity.v1.Identity/Probe",
    ]


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.value)
async def test_unix_socket_handshake(role: Role, serve: Serve, tmp_path: Path) -> None:
    server, calls = serve(role)
    socket_path = tmp_path / PLUGIN_NAME
    await server.start_unix(socket_path)
    channel = Channel(path=str(socket_path))
    try:
        result = await handshake(channel)
    finally:
        channel.close()
    capabilities, services = EXPECTED[role]
    assert result.capabilities == capabilities
    assert result.services == services
    assert result.ready is True
    assert calls == _expected_calls(role)
    metadata = result.metadata
    assert (metadata.name, metadata.version, metadata.maturity) == (PLUGIN_NAME, __version__, "alpha")
    assert metadata.display_name and metadata.description and metadata.license and metadata.license_url


async def test_handshake_over_mutual_tls(serve: Serve, pki: PKI) -> None:
    server, calls = serve(Role.OPERATOR)
    await server.start_tcp("127.0.0.1", 0, pki.server_files())
    assert server.port
    context = operator_client_context(pki.client.cert, pki.client.key, pki.server_ca.cert_path)
    channel = operator_channel("127.0.0.1", server.port, context)
    try:
        result = await handshake(channel)
    finally:
        channel.close()
    assert result.capabilities == EXPECTED[Role.OPERATOR][0]
    assert result.services == EXPECTED[Role.OPERATOR][1]
    assert calls == _expected_calls(Role.OPERATOR)


async def test_probe_fails_unless_serving(serve: Serve, tmp_path: Path) -> None:
    server, _ = serve(Role.INSTANCE)
    await server.start_unix(tmp_path / PLUGIN_NAME)
    channel = Channel(path=str(tmp_path / PLUGIN_NAME))
    try:
        identity = identity_grpc.IdentityStub(channel)
        assert (await identity.Probe(identity_pb2.ProbeRequest())).ready is True
        for status in (None, False):
            server.set_serving(status)
            with pytest.raises(GRPCError) as failure:
                await identity.Probe(identity_pb2.ProbeRequest())
            assert failure.value.status is Status.UNAVAILABLE
    finally:
        channel.close()


async def test_rpcs_of_later_issues_say_so(serve: Serve, tmp_path: Path) -> None:
    server, _ = serve(Role.INSTANCE)
    await server.start_unix(tmp_path / PLUGIN_NAME)
    channel = Channel(path=str(tmp_path / PLUGIN_NAME))
    try:
        with pytest.raises(GRPCError) as failure:
            await wal_grpc.WALStub(channel).Archive(wal_pb2.WALArchiveRequest(source_file_name="/pg_wal/x"))
    finally:
        channel.close()
    assert failure.value.status is Status.UNIMPLEMENTED
    assert "WAL.Archive is not implemented yet" in str(failure.value.message)
