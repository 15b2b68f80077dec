"""The native sidecar, injected into a Pod spec (upstream-plugin.md 1.5).

Pure functions on JSON documents: :func:`inject` edits a copy of the Pod spec that CloudNativePG
sent, and :mod:`.lifecycle` answers with the difference. The result must be

- idempotent: CloudNativePG sends the Pod back on CREATE already carrying what EVALUATE added, so
  the sidecar is rebuilt from scratch and put back in its place, and nothing is added twice;
- deterministic: CloudNativePG compares a fresh EVALUATE with the stored spec to decide rolling
  updates, so the output depends only on the inputs (no clock, no set or dict-order effects);
- shaped as Go encodes it (``resources: {}`` always present, empty lists left out), so that what
  CloudNativePG re-encodes before CREATE is what we produced.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from barman_cloud.errors import InvalidInput
from plugin_grpc.operator_side.cluster import ClusterIdentity

SIDECAR_NAME = "plugin-barman-cloud"
PLUGINS_VOLUME = "plugins"
PLUGINS_PATH = "/plugins"
"""Where CloudNativePG's instance manager looks for plugin sockets."""
CERTIFICATES_VOLUME = "barman-certificates"
CERTIFICATES_PATH = "/barman-certificates"
CERTIFICATE_FILE = "barman-ca.crt"
SPOOL_DIRECTORY = "/controller/wal-restore-spool"
HEALTHCHECK_COMMAND = ("barman-cloud-plugin", "healthcheck", "unix")
"""The startup probe: our image's entrypoint is the ``barman-cloud-plugin`` console script."""


@dataclass(frozen=True)
class CertificateSource:
    """An ObjectStore's ``endpointCA``: Secret key projected to ``<store>/barman-ca.crt``."""

    store: str
    secret: str
    key: str


@dataclass(frozen=True)
class Sidecar:
    """Everything the container depends on besides the Pod it goes into."""

    image: str
    args: tuple[str, ...]
    env: tuple[Mapping[str, Any], ...] = ()
    """The plugin's own variables, then the ObjectStores' ``instanceSidecarConfiguration.env``;
    the main container's variables come first and win (upstream's precedence)."""
    resources: Mapping[str, Any] | None = None
    image_pull_policy: str | None = None
    certificates: tuple[CertificateSource, ...] = ()


def plugin_env(cluster: ClusterIdentity) -> tuple[dict[str, str], ...]:
    """The variables the sidecar needs to find its Cluster (CUSTOM_CNPG_* for forks of CNPG)."""
    return (
        {"name": "NAMESPACE", "value": cluster.namespace},
        {"name": "CLUSTER_NAME", "value": cluster.name},
        {"name": "SPOOL_DIRECTORY", "value": SPOOL_DIRECTORY},
        {"name": "CUSTOM_CNPG_GROUP", "value": cluster.group},
        {"name": "CUSTOM_CNPG_VERSION", "value": cluster.version},
    )


def _plain(value: Any) -> Any:
    """A deep copy made of JSON types only (ObjectStore fields may be read-only mappings)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _by_name(items: Sequence[Any], name: str) -> int | None:
    for index, item in enumerate(items):
        if isinstance(item, Mapping) and item.get("name") == name:
            return index
    return None


def _list(owner: MutableMapping[str, Any], key: str, where: str) -> list[Any]:
    """``owner[key]`` as a list, created when absent (Go leaves empty lists out)."""
    value = owner.setdefault(key, [])
    if not isinstance(value, list):
        raise InvalidInput(f"{where}.{key} is not a list")
    return value


def _merge_env(*sources: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Variables in order, the first of each name winning."""
    merged: list[dict[str, Any]] = []
    seen: set[str] = set()
    for source in sources:
        for variable in source:
            name = variable.get("name")
            if isinstance(name, str) and name not in seen:
                seen.add(name)
                merged.append(_plain(variable))
    return merged


def _certificates_volume(sources: Sequence[CertificateSource]) -> dict[str, Any]:
    return {
        "name": CERTIFICATES_VOLUME,
        "projected": {
            "sources": [
                {
                    "secret": {
                        "name": source.secret,
                        "items": [{"key": source.key, "path": f"{source.store}/{CERTIFICATE_FILE}"}],
                    }
                }
                for source in sources
            ]
        },
    }


def container(sidecar: Sidecar, main: Mapping[str, Any]) -> dict[str, Any]:
    """The sidecar container, next to ``main`` (already mounting ``/plugins``)."""
    mounts: list[dict[str, Any]] = []
    paths: set[str] = set()
    wanted = [*(main.get("volumeMounts") or [])]
    if sidecar.certificates:
        wanted.append({"name": CERTIFICATES_VOLUME, "mountPath": CERTIFICATES_PATH})
    for mount in wanted:
        path = mount.get("mountPath") if isinstance(mount, Mapping) else None
        if isinstance(path, str) and path not in paths:
            paths.add(path)
            mounts.append(_plain(mount))
    result: dict[str, Any] = {
        "name": SIDECAR_NAME,
        "image": sidecar.image,
        "args": list(sidecar.args),
    }
    env = _merge_env(main.get("env") or [], sidecar.env)
    if env:
        result["env"] = env
    result["resources"] = _plain(sidecar.resources or {})
    result["volumeMounts"] = mounts
    result["startupProbe"] = {
        "exec": {"command": list(HEALTHCHECK_COMMAND)},
        "timeoutSeconds": 5,
        "periodSeconds": 1,
        "failureThreshold": 30,
    }
    if sidecar.image_pull_policy:
        result["imagePullPolicy"] = sidecar.image_pull_policy
    result["securityContext"] = {
        "capabilities": {"drop": ["ALL"]},
        "privileged": False,
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    # A native sidecar (Kubernetes >= 1.29): started before, and stopped after, the main container.
    result["restartPolicy"] = "Always"
    return result


def inject(spec: MutableMapping[str, Any], main_name: str, sidecar: Sidecar, *, where: str) -> None:
    """Add (or rebuild in place) the sidecar, the ``plugins`` volume and the certificates volume.

    ``where`` names the spec in messages (e.g. "Pod db/pg1-1").
    """
    containers = _list(spec, "containers", where)
    index = _by_name(containers, main_name)
    if index is None:
        names = ", ".join(str(c.get("name")) for c in containers if isinstance(c, Mapping)) or "none"
        raise InvalidInput(
            f"{where} has no container named {main_name!r} (it has: {names})",
            hint="the plugin injects its sidecar next to CloudNativePG's main container only",
        )
    main = containers[index]
    volumes = _list(spec, "volumes", where)

    # The socket directory, shared with the main container. Another plugin may have added it.
    main_mounts = _list(main, "volumeMounts", f"{where} container {main_name}")
    if not any(isinstance(m, Mapping) and m.get("mountPath") == PLUGINS_PATH for m in main_mounts):
        if _by_name(volumes, PLUGINS_VOLUME) is None:
            volumes.append({"name": PLUGINS_VOLUME, "emptyDir": {}})
        main_mounts.append({"name": PLUGINS_VOLUME, "mountPath": PLUGINS_PATH})

    # CA bundles of the ObjectStores' endpoints: replaced when present, removed when not needed.
    existing = _by_name(volumes, CERTIFICATES_VOLUME)
    if sidecar.certificates:
        volume = _certificates_volume(sidecar.certificates)
        if existing is None:
            volumes.append(volume)
        else:
            volumes[existing] = volume
    elif existing is not None:
        del volumes[existing]
    if not volumes:
        del spec["volumes"]

    init_containers = _list(spec, "initContainers", where)
    built = container(sidecar, main)
    position = _by_name(init_containers, SIDECAR_NAME)
    if position is None:
        # After CloudNativePG's bootstrap-controller, which fills /controller that we mount.
        init_containers.append(built)
    else:
        init_containers[position] = built
