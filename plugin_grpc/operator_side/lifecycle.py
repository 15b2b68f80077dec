"""``OperatorLifecycle.LifecycleHook``: which objects get the sidecar, and the JSON patch.

- Instance Pods (CREATE and EVALUATE) get the ``instance`` sidecar when the Cluster archives to
  an ObjectStore or replays WAL from a replica-source one. A Cluster that only recovered from an
  ObjectStore keeps no sidecar after its bootstrap.
- ``full-recovery`` and ``snapshot-recovery`` Jobs get the ``restore`` sidecar when the recovery
  source is an external cluster served by this plugin.
- Everything else, and every object of a Cluster that does not use the plugin, is left alone
  (empty answer).

The answer is an RFC 6902 patch computed as the difference between the object received and our
edited copy, so its paths always match what CloudNativePG sent (parents absent because of Go's
``omitempty`` included), and it is empty when there is nothing to change.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping, MutableMapping
from typing import Any

import jsonpatch

from barman_cloud.config.object_store import InstanceSidecarConfiguration
from barman_cloud.errors import InvalidInput
from plugin_grpc.operator_side import sidecar as sidecars
from plugin_grpc.operator_side.cluster import Cluster, decode_object, parse_cluster
from plugin_grpc.operator_side.settings import OperatorSide
from plugin_grpc.operator_side.stores import ClusterStores, read_stores, require_all

log = logging.getLogger(__name__)

INSTANCE_CONTAINER = "postgres"
RECOVERY_JOB_ROLES = ("full-recovery", "snapshot-recovery")
JOB_ROLE_LABEL = "cnpg.io/jobRole"
JOB_ROLE_SUFFIX = "/jobRole"
"""CloudNativePG forks use their own label prefix: any ``<prefix>/jobRole`` label counts."""


def json_patch(original: Mapping[str, Any], edited: Mapping[str, Any]) -> bytes:
    """The RFC 6902 patch turning ``original`` into ``edited``; empty bytes when they are equal.

    Serialised with sorted keys, so that equal patches are equal bytes.
    """
    operations = list(jsonpatch.make_patch(original, edited))
    if not operations:
        return b""
    if jsonpatch.apply_patch(original, operations) != edited:
        # Safety net for a diff the library got wrong: replacing the whole spec is always right.
        log.warning("the computed JSON patch did not reproduce the object; replacing its spec")
        operations = [{"op": "replace", "path": "/spec", "value": edited["spec"]}]
    return json.dumps(operations, sort_keys=True, separators=(",", ":")).encode()


def _section(owner: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = owner.get(key)
    return value if isinstance(value, Mapping) else {}


def job_role(job: Mapping[str, Any]) -> str | None:
    """The Job's ``cnpg.io/jobRole`` label, from its Pod template first (as upstream), then its own."""
    template = _section(_section(job, "spec"), "template")
    for metadata in (_section(template, "metadata"), _section(job, "metadata")):
        labels = _section(metadata, "labels")
        if isinstance(labels.get(JOB_ROLE_LABEL), str):
            return str(labels[JOB_ROLE_LABEL])
        for key in sorted(labels):
            if key.endswith(JOB_ROLE_SUFFIX) and isinstance(labels[key], str):
                return str(labels[key])
    return None


def _mapping(owner: Mapping[str, Any], key: str, where: str) -> MutableMapping[str, Any]:
    value = owner.get(key)
    if not isinstance(value, MutableMapping):
        raise InvalidInput(f"{where} has no {key}", hint="CloudNativePG always sends the full object")
    return value


def _sidecar(
    side: OperatorSide,
    cluster: Cluster,
    stores: ClusterStores,
    args: tuple[str, ...],
    tuning: InstanceSidecarConfiguration,
) -> sidecars.Sidecar:
    env: list[Mapping[str, Any]] = list(sidecars.plugin_env(cluster.identity))
    seen: set[str] = set()
    for reference in cluster.plugin.references():
        store = stores.get(reference)
        if store is not None and store.name not in seen:
            seen.add(store.name)
            env.extend(store.spec.instance_sidecar_configuration.env)
    certificates = tuple(
        sidecars.CertificateSource(name, ca.name, ca.key)
        for name in sorted(stores.found)
        if (ca := stores.found[name].spec.configuration.endpoint_ca) is not None
    )
    return sidecars.Sidecar(
        image=cluster.plugin.sidecar_image or side.sidecar_image,
        args=args,
        env=tuple(env),
        resources=tuning.resources,
        image_pull_policy=cluster.image_pull_policy,
        certificates=certificates,
    )


def _describe(document: Mapping[str, Any], kind: str) -> str:
    metadata = _section(document, "metadata")
    name = metadata.get("name") or metadata.get("generateName", "?")
    return f"{kind} {metadata.get('namespace', '?')}/{name}"


async def _pod(side: OperatorSide, cluster: Cluster, pod: Mapping[str, Any]) -> bytes:
    plugin = cluster.plugin
    if plugin.archive is None and plugin.replica_source is None:
        return b""
    stores = require_all(cluster, await read_stores(side.kubernetes, cluster))
    # The sidecar's tuning comes from one store: archive, else recovery, else replica source.
    tuning = next(
        store.spec.instance_sidecar_configuration
        for reference in plugin.references()
        if (store := stores.get(reference)) is not None
    )
    args = ("instance", *tuning.additional_container_args, f"--log-level={tuning.log_level}")
    edited = copy.deepcopy(dict(pod))
    where = _describe(pod, "Pod")
    sidecars.inject(
        _mapping(edited, "spec", where),
        INSTANCE_CONTAINER,
        _sidecar(side, cluster, stores, args, tuning),
        where=where,
    )
    return json_patch(pod, edited)


async def _job(side: OperatorSide, cluster: Cluster, job: Mapping[str, Any]) -> bytes:
    role = job_role(job)
    if role not in RECOVERY_JOB_ROLES or cluster.plugin.recovery is None:
        return b""
    stores = require_all(cluster, await read_stores(side.kubernetes, cluster))
    recovery = stores.get(cluster.plugin.recovery)
    assert recovery is not None  # require_all checked every reference
    # As upstream: a recovery Job takes only the recovery store's resources, no extra arguments.
    tuning = recovery.spec.instance_sidecar_configuration
    edited = copy.deepcopy(dict(job))
    where = _describe(job, "Job")
    template = _mapping(_mapping(edited, "spec", where), "template", f"{where} spec")
    sidecars.inject(
        _mapping(template, "spec", f"{where} spec.template"),
        role,
        _sidecar(side, cluster, stores, ("restore",), tuning),
        where=where,
    )
    return json_patch(job, edited)


async def lifecycle_patch(side: OperatorSide, cluster_json: bytes, object_json: bytes) -> bytes:
    """The patch for one ``LifecycleHook`` call (any verb: we are subscribed to the right ones)."""
    document = decode_object(object_json, "the object_definition")
    cluster = parse_cluster(cluster_json)
    if not cluster.plugin.uses_plugin:
        return b""
    api_version, kind = document.get("apiVersion"), document.get("kind")
    if api_version == "v1" and kind == "Pod":
        return await _pod(side, cluster, document)
    if isinstance(api_version, str) and api_version.startswith("batch/") and kind == "Job":
        return await _job(side, cluster, document)
    return b""
