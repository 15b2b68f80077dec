"""The ObjectStores a Cluster names, read through the Kubernetes API (with the reader's cache)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from barman_cloud.config.object_store import ObjectStore
from barman_cloud.errors import NotFound
from plugin_grpc.kube import KubernetesReader
from plugin_grpc.operator_side.api_errors import from_transport_error
from plugin_grpc.operator_side.cluster import Cluster, StoreReference


@dataclass(frozen=True)
class ClusterStores:
    """Every ObjectStore a Cluster names: those that exist, and the references to missing ones."""

    found: Mapping[str, ObjectStore]
    missing: tuple[StoreReference, ...] = ()

    def get(self, reference: StoreReference | None) -> ObjectStore | None:
        return None if reference is None else self.found.get(reference.object_name)


async def read_stores(reader: KubernetesReader, cluster: Cluster) -> ClusterStores:
    """Read each named ObjectStore once (sorted by name, so the calls are always the same)."""
    namespace = cluster.identity.namespace
    found: dict[str, ObjectStore] = {}
    absent: set[str] = set()
    for name in cluster.plugin.object_names():
        try:
            found[name] = await reader.get_object_store(namespace, name)
        except NotFound:
            absent.add(name)
        except (aiohttp.ClientError, OSError) as error:
            raise from_transport_error(error, f"read ObjectStore {namespace}/{name}") from None
    missing = tuple(r for r in cluster.plugin.references() if r.object_name in absent)
    return ClusterStores(found, missing)


def missing_message(cluster: Cluster, reference: StoreReference) -> str:
    namespace = cluster.identity.namespace
    return (
        f"ObjectStore {namespace}/{reference.object_name} does not exist "
        f"(named by {reference.field} as the {reference.role.value} store of Cluster "
        f"{namespace}/{cluster.identity.name})"
    )


def require_all(cluster: Cluster, stores: ClusterStores) -> ClusterStores:
    """``stores``, or NotFound naming the first missing ObjectStore and the parameter naming it."""
    if stores.missing:
        raise NotFound(
            missing_message(cluster, stores.missing[0]),
            hint=f"create it in namespace {cluster.identity.namespace}, or correct the parameter",
        )
    return stores
