"""``cnpgi.wal.v1.RestoreJobHooks`` (package ``cnpgi.wal.v1`` upstream): the recovery Job's restore.

As upstream (upstream-plugin.md 4.9): refuse to bootstrap a cluster whose own archive destination
already holds WAL (when CloudNativePG asks for the check); choose the backup from the Cluster's
``bootstrap.recovery`` (``backupID`` or the recovery target); check that its first WAL is in the
archive; restore it into PGDATA, in parallel; move ``pg_wal`` to the WAL volume when the Cluster has
``walStorage``; answer the ``restore_command`` CloudNativePG's manager provides (it calls our
``WAL.Restore``) and ``recovery_target_action = promote``. CloudNativePG adds the recovery target.

Better than upstream: a PGDATA left by a failed attempt of ours is cleaned and the restore runs
again (upstream #1100), and the backup is read with a constant number of requests.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from pathlib import Path
from typing import Any, ClassVar

from grpclib.server import Stream

from barman_cloud.errors import BarmanCloudError, InvalidInput
from barman_cloud.restore.engine import restore_backup
from barman_cloud.restore.recover import check_first_wal, choose
from barman_cloud.restore.targets import RecoveryTarget, parse_target_time
from barman_cloud.wal.check import check_wal_archive
from plugin_grpc.errors import not_implemented, to_grpc_error
from plugin_grpc.operator_side.cluster import decode_object, parse_cluster
from plugin_grpc.proto import identity_pb2, restore_job_grpc, restore_job_pb2
from plugin_grpc.wal_targets import WalTargets

Kind = restore_job_pb2.RestoreJobHooksCapability.Kind
log = logging.getLogger(__name__)
DEFAULT_PGDATA = "/var/lib/postgresql/data/pgdata"
WAL_VOLUME = Path("/var/lib/postgresql/wal/pg_wal")
RESTORE_COMMAND = "/controller/manager wal-restore --log-destination /controller/log/postgres.json %f %p"
SKIP_EMPTY_CHECK_ANNOTATION = "cnpg.io/skipEmptyWalArchiveCheck"


def recovery_target(recovery: dict[str, Any]) -> tuple[RecoveryTarget, str | None]:
    """The target and the explicit backup of ``spec.bootstrap.recovery``."""
    target = recovery.get("recoveryTarget") or {}
    backup = target.get("backupID") or None
    time = target.get("targetTime")
    return (
        RecoveryTarget(
            time=parse_target_time(time, naive_is_utc=True) if time else None,
            lsn=target.get("targetLSN") or None,
            xid=target.get("targetXID") or None,
            name=target.get("targetName") or None,
            immediate=bool(target.get("targetImmediate")),
            timeline=str(target["targetTLI"]) if target.get("targetTLI") else None,
        ),
        backup,
    )


def _relocate_wal(pgdata: Path, wal_volume: Path) -> None:
    """``walStorage``: pg_wal lives on its own volume, linked from PGDATA."""
    source = pgdata / "pg_wal"
    if source.is_symlink():
        return
    wal_volume.mkdir(parents=True, exist_ok=True)
    if source.exists():
        for entry in source.iterdir():
            shutil.move(str(entry), wal_volume / entry.name)
        source.rmdir()
    os.symlink(wal_volume, source)


class RestoreJobHooksService(restore_job_grpc.RestoreJobHooksBase):
    """Populates PGDATA from a base backup in CloudNativePG's ``full-recovery`` Job."""

    capability: ClassVar = identity_pb2.PluginCapability.Service.TYPE_RESTORE_JOB

    def __init__(
        self,
        targets: WalTargets | None = None,
        *,
        pgdata: Path | None = None,
        wal_volume: Path = WAL_VOLUME,
        restore_command: str = RESTORE_COMMAND,
        jobs: int = 4,
    ) -> None:
        self.targets = targets
        self.pgdata = pgdata or Path(os.environ.get("PGDATA", DEFAULT_PGDATA))
        self.wal_volume = wal_volume
        self.restore_command = restore_command
        self.jobs = jobs

    async def GetCapabilities(
        self,
        stream: Stream[
            restore_job_pb2.RestoreJobHooksCapabilitiesRequest,
            restore_job_pb2.RestoreJobHooksCapabilitiesResult,
        ],
    ) -> None:
        await stream.recv_message()
        await stream.send_message(
            restore_job_pb2.RestoreJobHooksCapabilitiesResult(
                capabilities=[restore_job_pb2.RestoreJobHooksCapability(kind=Kind.KIND_RESTORE)]
            )
        )

    async def Restore(
        self, stream: Stream[restore_job_pb2.RestoreRequest, restore_job_pb2.RestoreResponse]
    ) -> None:
        request = await stream.recv_message()
        assert request is not None
        if self.targets is None:
            raise not_implemented("RestoreJobHooks.Restore", arrives_with="a sidecar configuration")
        try:
            await self._restore(request)
        except BarmanCloudError as error:
            log.error("restore failed", extra={"error": str(error)})
            raise to_grpc_error(error) from None
        config = f"recovery_target_action = promote\nrestore_command = '{self.restore_command}'\n"
        await stream.send_message(restore_job_pb2.RestoreResponse(restore_config=config))

    async def _restore(self, request: restore_job_pb2.RestoreRequest) -> None:
        assert self.targets is not None
        document = decode_object(request.cluster_definition, "the Cluster JSON")
        cluster = parse_cluster(document)
        if cluster.plugin.recovery is None:
            raise InvalidInput(
                "the Cluster's bootstrap.recovery.source does not name an external cluster using this plugin",
                hint="give that external cluster a plugin section with barmanObjectName",
            )
        if cluster.plugin.archive is not None and self._check_empty(request, document):
            archive = await self.targets.archive_target(request.cluster_definition)
            await check_wal_archive(archive.store, archive.layout)
        source = (await self.targets.restore_target(request.cluster_definition)).target
        recovery = ((document.get("spec") or {}).get("bootstrap") or {}).get("recovery") or {}
        target, backup_id = recovery_target(recovery)
        chosen = await choose(source.store, source.layout, target, backup_id)
        await check_first_wal(source.store, source.layout, chosen)
        jobs = source.object_store.spec.configuration.data.jobs or self.jobs
        # A PGDATA left by a failed attempt of ours is cleaned first: the Job can be retried.
        await restore_backup(source.store, source.layout, chosen.backup_id, self.pgdata, jobs=jobs)
        log.info("backup restored", extra={"backup_id": chosen.backup_id, "pgdata": str(self.pgdata)})
        if (document.get("spec") or {}).get("walStorage"):
            await asyncio.to_thread(_relocate_wal, self.pgdata, self.wal_volume)

    @staticmethod
    def _check_empty(request: restore_job_pb2.RestoreRequest, document: dict[str, Any] | Any) -> bool:
        if request.HasField("check_empty_wal_archive"):
            return request.check_empty_wal_archive
        annotations = (document.get("metadata") or {}).get("annotations") or {}
        return annotations.get(SKIP_EMPTY_CHECK_ANNOTATION) != "enabled"
