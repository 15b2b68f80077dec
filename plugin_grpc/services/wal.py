"""``cnpgi.wal.v1.WAL``: archive_command and restore_command through the sidecar.

Archive: the empty-archive check when CloudNativePG asks for it (``check_empty_wal_archive``; older
operators don't send it: then the marker file ``$PGDATA/.check-empty-wal-archive`` that CloudNativePG
creates at bootstrap decides, unless the Cluster has ``cnpg.io/skipEmptyWalArchiveCheck: enabled``),
then the archive-ahead queue; the requested segment is acknowledged only once the store confirmed it.

Restore: ``MODE_REWIND`` fetches exactly one file with no prefetch; otherwise the prefetch spool
serves the file and refills itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path, PurePosixPath
from typing import ClassVar

from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Stream

from barman_cloud.errors import BarmanCloudError, Forbidden, InvalidInput
from barman_cloud.format.wal import WalName
from barman_cloud.wal.check import check_wal_archive
from plugin_grpc.errors import not_implemented, to_grpc_error
from plugin_grpc.proto import identity_pb2, wal_grpc, wal_pb2
from plugin_grpc.stats import SidecarStats
from plugin_grpc.wal_targets import WalTargets

RPC = wal_pb2.WALCapability.RPC
log = logging.getLogger(__name__)
EMPTY_CHECK_MARKER = ".check-empty-wal-archive"
SKIP_EMPTY_CHECK_ANNOTATION = "cnpg.io/skipEmptyWalArchiveCheck"


def _grpc_error(error: BarmanCloudError, what: str) -> GRPCError:
    if isinstance(error, Forbidden):
        # Usually the per-cluster Role is not reconciled yet: worth retrying, not a bad request.
        return GRPCError(Status.FAILED_PRECONDITION, f"{what}: {error}; retrying")
    return to_grpc_error(error)


def _request_path(text: str, what: str) -> Path:
    """A file path from a request: PostgreSQL's ``%p`` made absolute by the instance manager."""
    if not text or "\x00" in text or ".." in PurePosixPath(text).parts:
        raise InvalidInput(
            f"{what} {text[:200]!r} is not a usable file path",
            hint="expected the path of a file in pg_wal, without NUL or '..'",
        )
    return Path(text)


def _skip_annotation(cluster_definition: bytes) -> bool:
    try:
        cluster = json.loads(cluster_definition or b"{}")
        annotations = cluster.get("metadata", {}).get("annotations") or {}
    except (ValueError, AttributeError):
        return False
    return bool(annotations.get(SKIP_EMPTY_CHECK_ANNOTATION) == "enabled")


class WALService(wal_grpc.WALBase):
    """WAL archive and restore. The instance sidecar does both; the restore job only restores."""

    capability: ClassVar = identity_pb2.PluginCapability.Service.TYPE_WAL_SERVICE

    def __init__(
        self,
        *,
        archive: bool = True,
        restore: bool = True,
        targets: WalTargets | None = None,
        stats: SidecarStats | None = None,
    ) -> None:
        self.stats = stats or SidecarStats()
        rpcs = [RPC.TYPE_ARCHIVE_WAL] if archive else []
        rpcs += [RPC.TYPE_RESTORE_WAL] if restore else []
        self._capabilities = wal_pb2.WALCapabilitiesResult(
            capabilities=[wal_pb2.WALCapability(rpc=RPC(type=t)) for t in rpcs]
        )
        self.targets = targets

    async def GetCapabilities(
        self, stream: Stream[wal_pb2.WALCapabilitiesRequest, wal_pb2.WALCapabilitiesResult]
    ) -> None:
        await stream.recv_message()
        await stream.send_message(self._capabilities)

    async def Archive(self, stream: Stream[wal_pb2.WALArchiveRequest, wal_pb2.WALArchiveResult]) -> None:
        request = await stream.recv_message()
        assert request is not None
        if self.targets is None:
            raise not_implemented(
                "WAL.Archive", arrives_with="the instance sidecar's configuration, issue #6"
            )
        try:
            path = _request_path(request.source_file_name, "source_file_name")
            WalName.parse(path.name)
        except BarmanCloudError as error:
            raise _grpc_error(error, "archiving") from None
        started = time.monotonic()
        try:
            target = await self.targets.archive_target(request.cluster_definition)
            marker = path.parent.parent / EMPTY_CHECK_MARKER
            if request.HasField("check_empty_wal_archive"):
                check = request.check_empty_wal_archive
            else:
                check = marker.exists() and not _skip_annotation(request.cluster_definition)
            if check:
                await check_wal_archive(target.store, target.layout)
            archived = await target.archive_ahead(path.parent).archive(path)
            with contextlib.suppress(FileNotFoundError):
                marker.unlink()
        except BarmanCloudError as error:
            self.stats.record("archive", time.monotonic() - started, ok=False)
            log.warning("WAL archive failed", extra={"wal": path.name, "error": str(error)})
            raise _grpc_error(error, f"archiving {path.name}") from None
        self.stats.record("archive", time.monotonic() - started, archived.size if archived else 0)
        self.stats.archived(path.name)
        await stream.send_message(wal_pb2.WALArchiveResult())

    async def Restore(self, stream: Stream[wal_pb2.WALRestoreRequest, wal_pb2.WALRestoreResult]) -> None:
        request = await stream.recv_message()
        assert request is not None
        if self.targets is None:
            raise not_implemented(
                "WAL.Restore", arrives_with="the instance sidecar's configuration, issue #6"
            )
        name = request.source_wal_name
        try:
            WalName.parse(name)
            destination = _request_path(request.destination_file_name, "destination_file_name")
        except BarmanCloudError as error:
            raise _grpc_error(error, f"restoring {name[:200]!r}") from None
        started = time.monotonic()
        try:
            chosen = await self.targets.restore_target(request.cluster_definition)
            if request.mode == wal_pb2.WALRestoreRequest.MODE_REWIND:
                # pg_rewind: exactly this file, nothing prefetched or remembered.
                await chosen.target.restorer().restore(name, destination)
            else:
                prefetcher = chosen.target.prefetch()
                if chosen.streaming_possible and prefetcher.end_of_stream == name:
                    # Prefetching already found this one missing: let PostgreSQL stream instead.
                    prefetcher.end_of_stream = None
                    raise GRPCError(Status.OUT_OF_RANGE, f"end of WAL reached: {name} is not archived yet")
                restored = await prefetcher.restore(name, destination)
                self.stats.record("restore", time.monotonic() - started, restored.size)
        except BarmanCloudError as error:
            self.stats.record("restore", time.monotonic() - started, ok=False)
            raise _grpc_error(error, f"restoring {name}") from None
        await stream.send_message(wal_pb2.WALRestoreResult())

    async def Status(self, stream: Stream[wal_pb2.WALStatusRequest, wal_pb2.WALStatusResult]) -> None:
        await stream.recv_message()
        raise not_implemented("WAL.Status", arrives_with="not advertised: CloudNativePG never calls it")

    async def SetFirstRequired(
        self, stream: Stream[wal_pb2.SetFirstRequiredRequest, wal_pb2.SetFirstRequiredResult]
    ) -> None:
        await stream.recv_message()
        raise not_implemented(
            "WAL.SetFirstRequired", arrives_with="not advertised: CloudNativePG never calls it"
        )
