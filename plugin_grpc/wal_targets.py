"""Where the WAL service archives to and restores from, per request.

CloudNativePG sends the Cluster JSON with every WAL call; which ObjectStore and server name apply
depends on it (and, for restores, on the Pod's role). The service asks a :class:`WalTargets` for
the archiver or restorer to use; implementations keep one Store (one connection pool), one
archive-ahead queue and one prefetch spool per destination and server name for the life of the
process, which is what lets the sidecar archive ahead and restore ahead at all.

:class:`StaticWalTargets` serves one ObjectStore and server name whatever the Cluster says: the
local quick start, benchmarks and tests. :class:`KubernetesWalTargets` reads the Cluster's plugin
parameters and the ObjectStores through the Kubernetes API, as the sidecar does in a Pod.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from barman_cloud.config.command_args import compression_level
from barman_cloud.config.object_store import ObjectStore, RecoveryWindow
from barman_cloud.config.secrets import ResolvedStore, resolve
from barman_cloud.errors import InvalidInput
from barman_cloud.format import compression
from barman_cloud.format.keys import ServerLayout
from barman_cloud.storage import Store
from barman_cloud.storage.factory import open_store
from barman_cloud.storage.location import parse_destination
from barman_cloud.wal.archive import ArchiveSettings, WalArchiver
from barman_cloud.wal.archive_ahead import ArchiveAhead
from barman_cloud.wal.prefetch import DEFAULT_BUDGET, Prefetcher, spool_key
from barman_cloud.wal.restore import WalRestorer
from plugin_grpc.kube import KubernetesReader
from plugin_grpc.metadata import PLUGIN_NAME
from plugin_grpc.operator_side.cluster import StoreReference, decode_object, parse_cluster


@dataclass
class WalTarget:
    """One destination and server name, with its long-lived archive-ahead queue and spool."""

    object_store: ObjectStore
    store: Store
    layout: ServerLayout
    spool: Path
    key: str
    _archivers: dict[Path, ArchiveAhead] = field(default_factory=dict)
    prefetcher: Prefetcher | None = None

    @property
    def max_parallel(self) -> int:
        return self.object_store.spec.configuration.wal.max_parallel

    def archive_ahead(self, pg_wal: Path) -> ArchiveAhead:
        """The queue for the pg_wal directory PostgreSQL archives from."""
        if pg_wal not in self._archivers:
            configuration = self.object_store.spec.configuration
            codec = compression.codec_named(configuration.wal.compression)
            level = compression_level(configuration.wal.archive_additional_command_args)
            settings = ArchiveSettings(
                codec=codec,
                level=compression.parse_level(codec, level) if codec else None,
                tags=dict(configuration.tags),
                history_tags=dict(configuration.history_tags),
            )
            archiver = WalArchiver(self.store, self.layout, settings)
            markers = self.spool / self.key / "archived"
            self._archivers[pg_wal] = ArchiveAhead(archiver, pg_wal, markers, self.max_parallel)
        return self._archivers[pg_wal]

    def queue_depth(self) -> int:
        return sum(archiver.queue_depth() for archiver in self._archivers.values())

    def restorer(self) -> WalRestorer:
        return WalRestorer(self.store, self.layout)

    def prefetch(self) -> Prefetcher:
        if self.prefetcher is None:
            # maxParallel keeps upstream's meaning (files fetched at once), at least a few; the
            # depth follows the segment size within the spool budget.
            depth = max(self.max_parallel, 4)
            self.prefetcher = Prefetcher(self.restorer(), self.spool, self.key, depth, budget=DEFAULT_BUDGET)
        return self.prefetcher

    async def close(self) -> None:
        await asyncio.gather(*(a.close() for a in self._archivers.values()))
        if self.prefetcher is not None:
            await self.prefetcher.close()
        await self.store.close()


@dataclass(frozen=True)
class RestoreTarget:
    target: WalTarget
    streaming_possible: bool = False
    """PostgreSQL can stream from a primary once the archive runs dry (a standby, or a designated
    primary whose source has connection parameters): the end of the WAL stream is then reported
    as OUT_OF_RANGE so that it stops polling the archive."""


class WalTargets(Protocol):
    async def archive_target(self, cluster_definition: bytes) -> WalTarget: ...

    async def restore_target(self, cluster_definition: bytes) -> RestoreTarget: ...

    async def recovery_window(self, cluster_definition: bytes) -> RecoveryWindow | None:
        """The archive store's recovery window for this server, as its status holds it now."""
        ...

    async def backup_store(
        self, cluster_definition: bytes, object_name: str | None
    ) -> tuple[ResolvedStore, str]:
        """The ObjectStore a base backup goes to, resolved, and the server name: the archive
        store, or ``object_name`` (the Backup's ``barmanObjectName`` parameter, upstream #611)."""
        ...

    async def close(self) -> None: ...


def open_target(resolved: ResolvedStore, server_name: str, spool: Path) -> WalTarget:
    store = open_store(resolved.destination, resolved.credentials, resolved.wal_options)
    layout = ServerLayout(parse_destination(resolved.destination).prefix, server_name)
    return WalTarget(
        resolved.object_store,
        store,
        layout,
        spool,
        spool_key(resolved.destination, server_name, resolved.options.endpoint_url),
    )


class StaticWalTargets:
    """Always the same ObjectStore and server name."""

    def __init__(self, resolved: ResolvedStore, server_name: str, spool: Path) -> None:
        self.resolved = resolved
        self.target = open_target(resolved, server_name, spool)

    async def archive_target(self, cluster_definition: bytes) -> WalTarget:
        return self.target

    async def restore_target(self, cluster_definition: bytes) -> RestoreTarget:
        return RestoreTarget(self.target)

    async def recovery_window(self, cluster_definition: bytes) -> RecoveryWindow | None:
        return self.target.object_store.status.server_recovery_window.get(self.target.layout.server)

    async def backup_store(
        self, cluster_definition: bytes, object_name: str | None
    ) -> tuple[ResolvedStore, str]:
        if object_name and object_name != self.resolved.object_store.name:
            raise InvalidInput(
                f"this sidecar serves only ObjectStore {self.resolved.object_store.name}, not {object_name}",
                hint="local runs use the ObjectStore of their --file",
            )
        return self.resolved, self.target.layout.server

    async def close(self) -> None:
        await self.target.close()


def _fingerprint(resolved: ResolvedStore) -> tuple[object, ...]:
    # What decides how we talk to the store; the ObjectStore's status changes after every backup
    # and must not recreate the store and its queues.
    return (resolved.destination, resolved.credentials, resolved.options, resolved.object_store.spec)


def streaming_possible(cluster: Mapping[str, Any], pod_name: str, replica_source: bool) -> bool:
    status = cluster.get("status") or {}
    primary = status.get("currentPrimary") if isinstance(status, Mapping) else None
    if not primary:
        return False  # a bootstrap or recovery Job: nothing to stream from
    if primary != pod_name:
        return True  # a standby of this cluster
    if not replica_source:
        return False
    # The designated primary of a replica cluster streams only if its source can be reached.
    spec = cluster.get("spec") or {}
    source = (spec.get("replica") or {}).get("source") if isinstance(spec, Mapping) else None
    for external in spec.get("externalClusters") or [] if isinstance(spec, Mapping) else []:
        if isinstance(external, Mapping) and external.get("name") == source:
            return bool(external.get("connectionParameters"))
    return False


class KubernetesWalTargets:
    """The ObjectStores the Cluster names, read through the Kubernetes API.

    Archive: the store of the enabled ``spec.plugins[]`` entry. Restore, by the Pod's role (as
    upstream): the current primary of a replica cluster reads its source's store; with no current
    primary yet (bootstrap, recovery Jobs) the recovery store; otherwise (standbys) the archive.
    """

    def __init__(self, reader: KubernetesReader, spool: Path, pod_name: str) -> None:
        self.reader = reader
        self.spool = spool
        self.pod_name = pod_name
        self._targets: dict[tuple[str, str, str], tuple[tuple[object, ...], WalTarget]] = {}
        self._lock = asyncio.Lock()

    async def _target(self, namespace: str, reference: StoreReference) -> WalTarget:
        object_store = await self.reader.get_object_store(namespace, reference.object_name)
        resolved = await resolve(object_store, self.reader)
        key = (namespace, reference.object_name, reference.server_name)
        async with self._lock:
            known = self._targets.get(key)
            if known is not None and known[0] == _fingerprint(resolved):
                return known[1]
            if known is not None:
                # The ObjectStore (or its Secrets) changed: new clients, queues drained first.
                await known[1].close()
            target = open_target(resolved, reference.server_name, self.spool)
            self._targets[key] = (_fingerprint(resolved), target)
            return target

    async def archive_target(self, cluster_definition: bytes) -> WalTarget:
        cluster = parse_cluster(cluster_definition)
        if cluster.plugin.archive is None:
            who = f"{cluster.identity.namespace}/{cluster.identity.name}"
            raise InvalidInput(
                f"Cluster {who} does not archive through this plugin",
                hint=f"add an enabled spec.plugins[] entry named {PLUGIN_NAME} with barmanObjectName",
            )
        return await self._target(cluster.identity.namespace, cluster.plugin.archive)

    async def restore_target(self, cluster_definition: bytes) -> RestoreTarget:
        document = decode_object(cluster_definition, "the Cluster JSON")
        cluster = parse_cluster(document)
        plugin = cluster.plugin
        status = document.get("status") or {}
        primary = status.get("currentPrimary") if isinstance(status, Mapping) else None
        reference: StoreReference | None
        if primary == self.pod_name and plugin.replica_source is not None:
            reference = plugin.replica_source
        elif not primary:
            reference = plugin.recovery or plugin.replica_source or plugin.archive
        else:
            reference = plugin.archive or plugin.replica_source
        if reference is None:
            who = f"{cluster.identity.namespace}/{cluster.identity.name}"
            raise InvalidInput(
                f"Cluster {who} names no ObjectStore to restore from",
                hint="set barmanObjectName in spec.plugins[] or in the external cluster's plugin parameters",
            )
        target = await self._target(cluster.identity.namespace, reference)
        replica = reference is plugin.replica_source
        return RestoreTarget(target, streaming_possible(document, self.pod_name, replica))

    async def recovery_window(self, cluster_definition: bytes) -> RecoveryWindow | None:
        cluster = parse_cluster(cluster_definition)
        reference = cluster.plugin.archive
        if reference is None:
            return None
        # Read fresh (through the short TTL cache): the status changes after every backup.
        store = await self.reader.get_object_store(cluster.identity.namespace, reference.object_name)
        return store.status.server_recovery_window.get(reference.server_name)

    async def backup_store(
        self, cluster_definition: bytes, object_name: str | None
    ) -> tuple[ResolvedStore, str]:
        cluster = parse_cluster(cluster_definition)
        reference = cluster.plugin.archive
        if reference is None:
            who = f"{cluster.identity.namespace}/{cluster.identity.name}"
            raise InvalidInput(
                f"Cluster {who} has no ObjectStore to back up to",
                hint=f"add barmanObjectName to its spec.plugins[] entry named {PLUGIN_NAME}",
            )
        store = await self.reader.get_object_store(
            cluster.identity.namespace, object_name or reference.object_name
        )
        return await resolve(store, self.reader), reference.server_name

    async def close(self) -> None:
        await asyncio.gather(*(target.close() for _, target in self._targets.values()))
        self._targets.clear()
