"""The plugin's configuration, read from the Cluster JSON CloudNativePG sends with every hook.

A Cluster can use up to three ObjectStores (upstream-plugin.md 3.1):

| role           | where in the Cluster                                                         |
| -------------- | ---------------------------------------------------------------------------- |
| archive        | the enabled ``spec.plugins[]`` entry named ``barman-cloud.cloudnative-pg.io`` |
| recovery       | the ``spec.externalClusters[]`` entry named by ``spec.bootstrap.recovery.source`` |
| replica source | the ``spec.externalClusters[]`` entry named by ``spec.replica.source``        |

each through the ``barmanObjectName`` and ``serverName`` parameters. Unlike upstream (#350), a
disabled ``spec.plugins[]`` entry is ignored entirely: CloudNativePG does not load a disabled
plugin, so its parameters must not leak into anything we do. ``serverName`` defaults to the
Cluster's own name, for external clusters too (as upstream: restoring another cluster's archive
needs ``serverName``). ``sidecarImage`` (ours, upstream #456) overrides the operator's
``SIDECAR_IMAGE`` for one Cluster.

The JSON is decoded leniently, as CloudNativePG's own plugins do (#192): unknown fields are
ignored and ``apiVersion``/``kind`` may be absent. What we do read is checked, and every problem
is reported at once with its field path.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from barman_cloud.config.object_store import ConfigurationError
from barman_cloud.errors import InvalidInput
from plugin_grpc.metadata import PLUGIN_NAME

DEFAULT_API_VERSION = "postgresql.cnpg.io/v1"
DEFAULT_KIND = "Cluster"

OBJECT_NAME = "barmanObjectName"
SERVER_NAME = "serverName"
SIDECAR_IMAGE = "sidecarImage"
"""Cluster plugin parameter naming the sidecar image for this Cluster (default: ``SIDECAR_IMAGE``)."""

CONTINUOUS_ARCHIVING = "ContinuousArchiving"
"""Type of the Cluster condition in which CloudNativePG reports whether WAL archiving works."""

# Kubernetes object names (DNS-1123 subdomains): what an ObjectStore may be called.
_OBJECT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_MAX_OBJECT_NAME = 253


class StoreRole(enum.Enum):
    """What a Cluster uses an ObjectStore for."""

    ARCHIVE = "archive"
    RECOVERY = "recovery"
    REPLICA_SOURCE = "replica source"


@dataclass(frozen=True)
class StoreReference:
    """One ObjectStore a Cluster names, and where it names it (for messages)."""

    role: StoreRole
    object_name: str
    server_name: str
    """Folder under the store's ``destinationPath`` (barman's server name)."""
    field: str
    """Path of the ``barmanObjectName`` parameter in the Cluster, e.g.
    ``spec.plugins[0].parameters.barmanObjectName``."""


@dataclass(frozen=True)
class ClusterIdentity:
    """Who the Cluster is: enough to own objects and to address Events to it."""

    name: str
    namespace: str
    uid: str | None
    api_version: str = DEFAULT_API_VERSION
    """As sent; ``postgresql.cnpg.io/v1`` unless CloudNativePG runs under a custom API group."""
    kind: str = DEFAULT_KIND

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]


@dataclass(frozen=True)
class PluginConfiguration:
    """The ObjectStores a Cluster uses through this plugin."""

    archive: StoreReference | None = None
    recovery: StoreReference | None = None
    replica_source: StoreReference | None = None
    sidecar_image: str | None = None
    """The Cluster's ``sidecarImage`` parameter, if any."""
    wal_archiver: bool = False
    """``isWALArchiver`` of the ``spec.plugins[]`` entry: CloudNativePG archives WAL through us."""

    def references(self) -> tuple[StoreReference, ...]:
        """Archive, recovery, replica source: the order of precedence everywhere."""
        return tuple(r for r in (self.archive, self.recovery, self.replica_source) if r is not None)

    def object_names(self) -> list[str]:
        """Every ObjectStore named, once each, sorted."""
        return sorted({r.object_name for r in self.references()})

    @property
    def uses_plugin(self) -> bool:
        return bool(self.references())


@dataclass(frozen=True)
class Cluster:
    """What the operator side needs from one Cluster JSON document."""

    identity: ClusterIdentity
    plugin: PluginConfiguration
    image_pull_policy: str | None = None
    plugin_status: str | None = None
    """``status.pluginStatus[name=barman-cloud.cloudnative-pg.io].status``: our last answer to
    ``SetStatusInCluster`` as CloudNativePG stored it."""
    continuous_archiving: Mapping[str, Any] | None = None
    """The ``ContinuousArchiving`` condition of ``status.conditions``, if CloudNativePG set it."""


def decode_object(data: bytes | Mapping[str, Any], what: str) -> Mapping[str, Any]:
    """A JSON object from a ``bytes`` field of a CNPG-I request (or an already decoded one)."""
    if isinstance(data, Mapping):
        return data
    if not data:
        raise InvalidInput(f"{what} is empty", hint="CloudNativePG always sends the object as JSON")
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInput(f"{what} is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise InvalidInput(f"{what} is not a JSON object but {type(document).__name__}")
    return document


class _Reader:
    """Collects problems with their paths while reading the parts of the Cluster we use."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append((path, message))

    def mapping(self, value: Any, path: str) -> Mapping[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.fail(path, f"must be an object, not {type(value).__name__}")
            return {}
        return value

    def sequence(self, value: Any, path: str) -> Sequence[Any]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.fail(path, f"must be a list, not {type(value).__name__}")
            return ()
        return value

    def enabled(self, entry: Mapping[str, Any], path: str) -> bool:
        value = entry.get("enabled")
        if value is None:
            return True  # CloudNativePG: a missing `enabled` means enabled
        if not isinstance(value, bool):
            self.fail(f"{path}.enabled", f"must be true or false, not {value!r}")
            return False
        return value

    def parameters(self, entry: Mapping[str, Any], path: str) -> Mapping[str, str]:
        raw = self.mapping(entry.get("parameters"), f"{path}.parameters")
        result: dict[str, str] = {}
        for key, value in raw.items():
            if not isinstance(value, str):
                self.fail(f"{path}.parameters.{key}", f"must be a string, not {value!r}")
            else:
                result[str(key)] = value
        return result

    def reference(
        self, role: StoreRole, parameters: Mapping[str, str], path: str, cluster_name: str
    ) -> StoreReference | None:
        at = f"{path}.parameters"
        if any(failed == f"{at}.{OBJECT_NAME}" for failed, _ in self.problems):
            return None  # already reported (not a string)
        object_name = parameters.get(OBJECT_NAME, "")
        if not object_name:
            given = ", ".join(sorted(parameters)) or "none"
            self.fail(
                f"{at}.{OBJECT_NAME}",
                f"required: name the ObjectStore (in the Cluster's namespace) used as {role.value} "
                f"store (parameters given: {given})",
            )
            return None
        if len(object_name) > _MAX_OBJECT_NAME or not _OBJECT_NAME.fullmatch(object_name):
            self.fail(
                f"{at}.{OBJECT_NAME}",
                f"{object_name!r} cannot be an ObjectStore name (lower-case letters, digits, '-' and '.')",
            )
            return None
        server_name = parameters.get(SERVER_NAME) or cluster_name
        if "/" in server_name or server_name != server_name.strip() or not server_name.isprintable():
            self.fail(
                f"{at}.{SERVER_NAME}",
                f"{server_name!r} must be one folder name (no '/', no surrounding spaces)",
            )
            return None
        return StoreReference(role, object_name, server_name, f"{at}.{OBJECT_NAME}")

    def image(self, parameters: Mapping[str, str], path: str) -> str | None:
        image = parameters.get(SIDECAR_IMAGE)
        if image is None:
            return None
        if not image or any(c.isspace() for c in image):
            self.fail(f"{path}.parameters.{SIDECAR_IMAGE}", f"{image!r} is not a container image reference")
            return None
        return image


def _external_plugin(
    r: _Reader, spec: Mapping[str, Any], source: Any, source_path: str
) -> tuple[Mapping[str, Any], str] | None:
    """The enabled plugin section of the external cluster called ``source``, if it is ours."""
    if source is None or source == "":
        return None
    if not isinstance(source, str):
        r.fail(source_path, f"must be a string, not {source!r}")
        return None
    for index, entry in enumerate(r.sequence(spec.get("externalClusters"), "spec.externalClusters")):
        if not isinstance(entry, Mapping) or entry.get("name") != source:
            continue
        path = f"spec.externalClusters[{index}].plugin"
        plugin = r.mapping(entry.get("plugin"), path)
        if plugin.get("name") != PLUGIN_NAME or not r.enabled(plugin, path):
            return None
        return plugin, path
    return None  # CloudNativePG's webhook rejects a source naming no external cluster


def _archive_plugin(r: _Reader, spec: Mapping[str, Any]) -> tuple[Mapping[str, Any], str] | None:
    for index, entry in enumerate(r.sequence(spec.get("plugins"), "spec.plugins")):
        path = f"spec.plugins[{index}]"
        if isinstance(entry, Mapping) and entry.get("name") == PLUGIN_NAME and r.enabled(entry, path):
            return entry, path
    return None


def _identity(r: _Reader, document: Mapping[str, Any]) -> ClusterIdentity:
    metadata = r.mapping(document.get("metadata"), "metadata")
    values: dict[str, str] = {}
    for key in ("name", "namespace"):
        value = metadata.get(key)
        if not isinstance(value, str) or not value:
            r.fail(f"metadata.{key}", "required")
        else:
            values[key] = value
    uid = metadata.get("uid")
    api_version = document.get("apiVersion")
    kind = document.get("kind")
    return ClusterIdentity(
        name=values.get("name", "?"),
        namespace=values.get("namespace", "?"),
        uid=uid if isinstance(uid, str) and uid else None,
        api_version=api_version
        if isinstance(api_version, str) and "/" in api_version
        else DEFAULT_API_VERSION,
        kind=kind if isinstance(kind, str) and kind else DEFAULT_KIND,
    )


def _plugin_status(r: _Reader, status: Mapping[str, Any]) -> str | None:
    for entry in r.sequence(status.get("pluginStatus"), "status.pluginStatus"):
        if isinstance(entry, Mapping) and entry.get("name") == PLUGIN_NAME:
            value = entry.get("status")
            return value if isinstance(value, str) and value else None
    return None


def _condition(r: _Reader, status: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for entry in r.sequence(status.get("conditions"), "status.conditions"):
        if isinstance(entry, Mapping) and entry.get("type") == kind:
            return entry
    return None


def cluster_identity(data: bytes | Mapping[str, Any]) -> ClusterIdentity:
    """Only who the Cluster is (for callers that bring their own ObjectStores, like the
    ObjectStore controller): its plugin parameters are not looked at."""
    r = _Reader()
    identity = _identity(r, decode_object(data, "the Cluster JSON"))
    if r.problems:
        raise ConfigurationError("Cluster", r.problems)
    return identity


def parse_cluster(data: bytes | Mapping[str, Any]) -> Cluster:
    """Read a Cluster as CloudNativePG serialises it; raise :class:`ConfigurationError` (an
    InvalidInput) listing every problem in the parts this plugin uses."""
    document = decode_object(data, "the Cluster JSON")
    r = _Reader()
    identity = _identity(r, document)
    spec = r.mapping(document.get("spec"), "spec")
    # The status is CloudNativePG's to write: a surprise there is no reason to fail a hook.
    lenient = _Reader()
    status = lenient.mapping(document.get("status"), "status")

    archive = recovery = replica_source = None
    images: list[str | None] = []
    wal_archiver = False
    if found := _archive_plugin(r, spec):
        wal_archiver = found[0].get("isWALArchiver") is True
        parameters = r.parameters(*found)
        archive = r.reference(StoreRole.ARCHIVE, parameters, found[1], identity.name)
        images.append(r.image(parameters, found[1]))
    bootstrap = r.mapping(spec.get("bootstrap"), "spec.bootstrap")
    recovery_spec = r.mapping(bootstrap.get("recovery"), "spec.bootstrap.recovery")
    if found := _external_plugin(r, spec, recovery_spec.get("source"), "spec.bootstrap.recovery.source"):
        parameters = r.parameters(*found)
        recovery = r.reference(StoreRole.RECOVERY, parameters, found[1], identity.name)
        images.append(r.image(parameters, found[1]))
    replica = r.mapping(spec.get("replica"), "spec.replica")
    if found := _external_plugin(r, spec, replica.get("source"), "spec.replica.source"):
        parameters = r.parameters(*found)
        replica_source = r.reference(StoreRole.REPLICA_SOURCE, parameters, found[1], identity.name)
        images.append(r.image(parameters, found[1]))

    pull_policy = spec.get("imagePullPolicy")
    if pull_policy is not None and not isinstance(pull_policy, str):
        r.fail("spec.imagePullPolicy", f"must be a string, not {pull_policy!r}")
        pull_policy = None
    if r.problems:
        raise ConfigurationError(
            f"Cluster {identity.namespace}/{identity.name} (plugin {PLUGIN_NAME})", r.problems
        )
    return Cluster(
        identity=identity,
        plugin=PluginConfiguration(
            archive=archive,
            recovery=recovery,
            replica_source=replica_source,
            # The first one set, in the usual precedence: archive, recovery, replica source.
            sidecar_image=next((image for image in images if image), None),
            wal_archiver=wal_archiver,
        ),
        image_pull_policy=pull_policy or None,
        plugin_status=_plugin_status(lenient, status),
        continuous_archiving=_condition(lenient, status, CONTINUOUS_ARCHIVING),
    )
