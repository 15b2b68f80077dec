"""CloudNativePG's side of the connection, replayed: the handshake every caller performs.

Used by the demo, the tests and e2e/ to talk to our endpoints exactly as CloudNativePG's operator
and instance manager do (cnpg-i-spec 1.3): GetPluginMetadata, GetPluginCapabilities, then each
advertised service's GetCapabilities in CloudNativePG's fixed order, then Probe. It also checks
what would crash or mislead CloudNativePG (a capability whose oneof is unset, a name mismatch).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpclib.client import Channel
from grpclib.config import Configuration

from plugin_grpc.metadata import PLUGIN_NAME
from plugin_grpc.proto import (
    backup_grpc,
    backup_pb2,
    identity_grpc,
    identity_pb2,
    metrics_grpc,
    metrics_pb2,
    operator_grpc,
    operator_lifecycle_grpc,
    operator_lifecycle_pb2,
    operator_pb2,
    postgres_grpc,
    postgres_pb2,
    reconciler_grpc,
    reconciler_pb2,
    restore_job_grpc,
    restore_job_pb2,
    wal_grpc,
    wal_pb2,
)

ServiceType = identity_pb2.PluginCapability.Service


class ProtocolViolation(Exception):
    """An answer CloudNativePG would reject, or crash on."""


def _rpc_names(
    result: Any, enum: Any, *, wrapped: bool = True, field_name: str = "capabilities"
) -> list[str]:
    names = []
    for entry in getattr(result, field_name):
        if wrapped:
            if not entry.HasField("rpc"):
                raise ProtocolViolation(
                    f"{type(entry).__name__} without `rpc`: CloudNativePG would crash on it"
                )
            names.append(enum.Name(entry.rpc.type))
        else:
            names.append(enum.Name(entry.kind))
    return names


def _lifecycle_names(result: operator_lifecycle_pb2.OperatorLifecycleCapabilitiesResponse) -> list[str]:
    op_name = operator_lifecycle_pb2.OperatorOperationType.Type.Name
    return [
        f"{c.group or 'core'}/{c.kind}:{'+'.join(op_name(o.type) for o in c.operation_types)}"
        for c in result.lifecycle_capabilities
    ]


@dataclass(frozen=True)
class _ServiceProbe:
    capability: ServiceType.Type.ValueType
    name: str
    call: Callable[[Channel], Any]
    describe: Callable[[Any], list[str]]


# CloudNativePG's fixed order for step 3 of the handshake.
_SERVICE_PROBES = (
    _ServiceProbe(
        ServiceType.TYPE_OPERATOR_SERVICE,
        "Operator",
        lambda ch: operator_grpc.OperatorStub(ch).GetCapabilities(operator_pb2.OperatorCapabilitiesRequest()),
        lambda r: _rpc_names(r, operator_pb2.OperatorCapability.RPC.Type),
    ),
    _ServiceProbe(
        ServiceType.TYPE_LIFECYCLE_SERVICE,
        "OperatorLifecycle",
        lambda ch: operator_lifecycle_grpc.OperatorLifecycleStub(ch).GetCapabilities(
            operator_lifecycle_pb2.OperatorLifecycleCapabilitiesRequest()
        ),
        _lifecycle_names,
    ),
    _ServiceProbe(
        ServiceType.TYPE_WAL_SERVICE,
        "WAL",
        lambda ch: wal_grpc.WALStub(ch).GetCapabilities(wal_pb2.WALCapabilitiesRequest()),
        lambda r: _rpc_names(r, wal_pb2.WALCapability.RPC.Type),
    ),
    _ServiceProbe(
        ServiceType.TYPE_BACKUP_SERVICE,
        "Backup",
        lambda ch: backup_grpc.BackupStub(ch).GetCapabilities(backup_pb2.BackupCapabilitiesRequest()),
        lambda r: _rpc_names(r, backup_pb2.BackupCapability.RPC.Type),
    ),
    _ServiceProbe(
        ServiceType.TYPE_RECONCILER_HOOKS,
        "ReconcilerHooks",
        lambda ch: reconciler_grpc.ReconcilerHooksStub(ch).GetCapabilities(
            reconciler_pb2.ReconcilerHooksCapabilitiesRequest()
        ),
        lambda r: _rpc_names(
            r,
            reconciler_pb2.ReconcilerHooksCapability.Kind,
            wrapped=False,
            field_name="reconciler_capabilities",
        ),
    ),
    _ServiceProbe(
        ServiceType.TYPE_RESTORE_JOB,
        "RestoreJobHooks",
        lambda ch: restore_job_grpc.RestoreJobHooksStub(ch).GetCapabilities(
            restore_job_pb2.RestoreJobHooksCapabilitiesRequest()
        ),
        lambda r: _rpc_names(r, restore_job_pb2.RestoreJobHooksCapability.Kind, wrapped=False),
    ),
    _ServiceProbe(
        ServiceType.TYPE_POSTGRES,
        "Postgres",
        lambda ch: postgres_grpc.PostgresStub(ch).GetCapabilities(postgres_pb2.PostgresCapabilitiesRequest()),
        lambda r: _rpc_names(r, postgres_pb2.PostgresCapability.RPC.Type),
    ),
    _ServiceProbe(
        ServiceType.TYPE_METRICS,
        "Metrics",
        lambda ch: metrics_grpc.MetricsStub(ch).GetCapabilities(metrics_pb2.MetricsCapabilitiesRequest()),
        lambda r: _rpc_names(r, metrics_pb2.MetricsCapability.RPC.Type),
    ),
)


@dataclass
class Handshake:
    """What a CloudNativePG process learns when it connects to a plugin endpoint."""

    metadata: identity_pb2.GetPluginMetadataResponse
    capabilities: list[str]
    """``GetPluginCapabilities`` as the enum names CloudNativePG stores in ``status.pluginStatus``."""
    services: dict[str, list[str]] = field(default_factory=dict)
    """Each advertised service's own capabilities, keyed by service name, in call order."""
    ready: bool = False


async def handshake(channel: Channel, *, expected_name: str = PLUGIN_NAME) -> Handshake:
    """Run the connection handshake of cnpg-i-spec 1.3 on ``channel``; raise on any failure."""
    identity = identity_grpc.IdentityStub(channel)
    metadata = await identity.GetPluginMetadata(identity_pb2.GetPluginMetadataRequest())
    if metadata.name != expected_name:
        raise ProtocolViolation(
            f"plugin calls itself {metadata.name!r}, CloudNativePG looks for {expected_name!r}"
        )
    if not metadata.version:
        raise ProtocolViolation("plugin metadata has no version")
    answer = await identity.GetPluginCapabilities(identity_pb2.GetPluginCapabilitiesRequest())
    advertised = []
    for entry in answer.capabilities:
        if not entry.HasField("service"):
            raise ProtocolViolation("PluginCapability without `service`: CloudNativePG would crash on it")
        advertised.append(entry.service.type)
    result = Handshake(metadata=metadata, capabilities=[ServiceType.Type.Name(t) for t in advertised])
    for probe in _SERVICE_PROBES:
        if probe.capability in advertised:
            result.services[probe.name] = probe.describe(await probe.call(channel))
    result.ready = (await identity.Probe(identity_pb2.ProbeRequest())).ready
    return result


def operator_client_context(client_cert: Path, client_key: Path, server_ca: Path) -> ssl.SSLContext:
    """The TLS client CloudNativePG's operator uses for a plugin Service (cnpg-i-spec 5.1).

    Client certificate from the client Secret, the server Secret's ``tls.crt`` as the only trust
    anchor, TLS 1.3, ALPN ``h2``; the server name checked is the Service name (see
    :func:`operator_channel`).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_cert_chain(client_cert, client_key)
    context.load_verify_locations(cafile=server_ca)
    context.set_alpn_protocols(["h2"])
    return context


def operator_channel(
    host: str, port: int, context: ssl.SSLContext, service_name: str = "barman-cloud"
) -> Channel:
    """A channel to the operator-side endpoint, verifying the certificate against ``service_name``."""
    return Channel(host, port, ssl=context, config=Configuration(ssl_target_name_override=service_name))
