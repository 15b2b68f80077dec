"""Which services each process serves (upstream-plugin.md 4.0, plus Operator for the status).

| role     | endpoint                          | services                                          |
| -------- | --------------------------------- | ------------------------------------------------- |
| operator | TCP + mutual TLS (or unix socket) | OperatorLifecycle, ReconcilerHooks, Operator      |
| instance | unix socket in PostgreSQL Pods    | WAL (archive + restore), Backup, Metrics          |
| restore  | unix socket in recovery Jobs      | RestoreJobHooks, WAL (restore)                    |

Identity advertises each service's capability, in this order, plus the role's flags.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from plugin_grpc.operator_side.settings import OperatorSide
from plugin_grpc.proto import identity_pb2
from plugin_grpc.services import CNPGIService
from plugin_grpc.services.backup import BackupService
from plugin_grpc.services.metrics import MetricsService
from plugin_grpc.services.operator_lifecycle import OperatorLifecycleService
from plugin_grpc.services.operator_service import OperatorService
from plugin_grpc.services.reconciler import ReconcilerHooksService
from plugin_grpc.services.restore_job import RestoreJobHooksService
from plugin_grpc.services.wal import WALService
from plugin_grpc.stats import SidecarStats
from plugin_grpc.status_writer import StatusWriter
from plugin_grpc.wal_targets import WalTargets

ServiceType = identity_pb2.PluginCapability.Service


class Role(enum.Enum):
    OPERATOR = "operator"
    INSTANCE = "instance"
    RESTORE = "restore"


@dataclass(frozen=True)
class Assembly:
    """The services of one endpoint and the flags its Identity adds (flags have no service)."""

    services: tuple[CNPGIService, ...]
    flags: tuple[ServiceType.Type.ValueType, ...] = ()

    @property
    def capabilities(self) -> tuple[ServiceType.Type.ValueType, ...]:
        return tuple(service.capability for service in self.services) + self.flags


def assemble(
    role: Role,
    operator_side: OperatorSide | None = None,
    wal_targets: WalTargets | None = None,
    *,
    status: StatusWriter | None = None,
    postgres_conninfo: str | None = None,
) -> Assembly:
    """A fresh set of service instances for ``role``.

    ``wal_targets`` tells the sidecars where to archive, restore and back up; ``status`` writes
    the ObjectStore's recovery window; ``postgres_conninfo`` reaches PostgreSQL for backups
    (None: libpq's environment).

    ``operator_side`` (sidecar image, Kubernetes client) is what the operator role's hooks work
    with; without it they answer FAILED_PRECONDITION, which is enough for handshake tests.
    """
    if role is Role.OPERATOR:
        # TYPE_INSTANCE_SIDECAR_INJECTION tells instance managers (CNPG >= 1.27) that our
        # sidecar is in their Pod, so they load it for metrics and configuration.
        return Assembly(
            services=(
                OperatorLifecycleService(operator_side),
                ReconcilerHooksService(operator_side),
                OperatorService(operator_side),
            ),
            flags=(ServiceType.TYPE_INSTANCE_SIDECAR_INJECTION,),
        )
    if role is Role.INSTANCE:
        stats = SidecarStats()
        return Assembly(
            services=(
                WALService(archive=True, restore=True, targets=wal_targets, stats=stats),
                BackupService(wal_targets, stats=stats, status=status, postgres_conninfo=postgres_conninfo),
                MetricsService(wal_targets, stats),
            )
        )
    return Assembly(
        services=(
            RestoreJobHooksService(wal_targets),
            WALService(archive=False, restore=True, targets=wal_targets),
        )
    )
