"""The operator process: the operator-side CNPG-I endpoint (and, with issue #8, the Kopf
controller for ObjectStore and ScheduledBackup in the same event loop).

Like upstream, it refuses to start without ``SIDECAR_IMAGE`` (the image it injects into
PostgreSQL Pods and recovery Jobs) and without a Kubernetes API to talk to: both are needed by
the first hook CloudNativePG calls, and failing at start shows in the Deployment's status rather
than in every Cluster's phase.

This folder is installed as ``barman_cloud_operator``. It has no ``__init__.py`` on purpose: as a
namespace portion it can never shadow the standard library's ``operator`` module, even when the
repository root comes first on ``sys.path`` (``python -m ...`` from the checkout).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from kubernetes_asyncio import client, config

from barman_cloud.errors import InvalidInput
from plugin_grpc.kube import KubernetesReader
from plugin_grpc.metadata import PLUGIN_NAME
from plugin_grpc.operator_side.settings import OperatorSide
from plugin_grpc.roles import Role, assemble
from plugin_grpc.server import PluginServer, serve_until_signalled
from plugin_grpc.tls import ReloadingServerContext, ServerTLSFiles

log = logging.getLogger(__name__)

SIDECAR_IMAGE_ENV = "SIDECAR_IMAGE"


@dataclass(frozen=True)
class OperatorConfig:
    """Command-line configuration of the operator process (upstream's flags)."""

    server_address: str = ""
    """``HOST:PORT`` (or ``:PORT``) for TCP with mutual TLS; empty serves a unix socket instead."""
    server_cert: str = ""
    server_key: str = ""
    client_cert: str = ""
    """CA bundle client certificates must chain to (the client Secret's ``tls.crt``)."""
    plugin_path: str = "/plugins"
    """Directory of the unix socket when not on TCP."""
    sidecar_image: str = ""
    """Image injected as the sidecar (``SIDECAR_IMAGE``); required. A Cluster may name another
    one with its ``sidecarImage`` plugin parameter."""
    kubeconfig: str = ""
    """A kubeconfig file; empty: the Pod's service account, else ``$KUBECONFIG`` or ``~/.kube/config``."""

    def validate(self) -> None:
        """Refuse a configuration the operator cannot work with, before anything starts:
        the listener's flags and TLS files first, then the sidecar image."""
        tls = self.tls_files()
        if tls is not None:
            ReloadingServerContext(tls)  # loads the files once: a clear error if they are unusable
        self.require_sidecar_image()

    def require_sidecar_image(self) -> str:
        image = self.sidecar_image.strip()
        if not image:
            raise InvalidInput(
                f"{SIDECAR_IMAGE_ENV} is not set",
                hint="the operator injects this image as the barman-cloud sidecar of PostgreSQL Pods "
                f"and recovery Jobs; set the {SIDECAR_IMAGE_ENV} environment variable (the Helm chart "
                "does) or --sidecar-image",
            )
        if any(c.isspace() for c in image):
            raise InvalidInput(f"{SIDECAR_IMAGE_ENV} {image!r} is not a container image reference")
        return image

    def tls_files(self) -> ServerTLSFiles | None:
        flags = {
            "--server-cert": self.server_cert,
            "--server-key": self.server_key,
            "--client-cert": self.client_cert,
        }
        if self.server_address and not all(flags.values()):
            missing = ", ".join(flag for flag, value in flags.items() if not value)
            raise InvalidInput(
                "the operator serves TCP only with mutual TLS", hint=f"set {missing} with --server-address"
            )
        if any(flags.values()) and not self.server_address:
            raise InvalidInput("TLS files given without --server-address", hint="add --server-address=:9090")
        if not self.server_address:
            return None
        return ServerTLSFiles(Path(self.server_cert), Path(self.server_key), Path(self.client_cert))


def parse_server_address(address: str) -> tuple[str | None, int]:
    """``:9090``, ``0.0.0.0:9090``, ``[::1]:9090`` or ``host:9090`` into (host or None, port)."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise InvalidInput(f"invalid --server-address {address!r}", hint="use HOST:PORT or :PORT, e.g. :9090")
    return (host.strip("[]") or None), int(port_text)


async def kubernetes_api(kubeconfig: str = "") -> client.ApiClient:
    """A client for the Kubernetes API: ``kubeconfig`` if given, else the Pod's service account,
    else ``$KUBECONFIG`` or ``~/.kube/config``."""
    if not kubeconfig and os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return client.ApiClient(configuration)
        except config.ConfigException as error:
            log.warning(
                "the Pod's service account is unusable; trying a kubeconfig", extra={"error": str(error)}
            )
    configuration = client.Configuration()
    try:
        await config.load_kube_config(config_file=kubeconfig or None, client_configuration=configuration)
    except (config.ConfigException, OSError) as error:
        where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise InvalidInput(
            f"no usable Kubernetes API configuration (service account, or kubeconfig {where}): {error}",
            hint="run the operator in a Pod with its service account, or pass --kubeconfig / set KUBECONFIG",
        ) from None
    return client.ApiClient(configuration)


async def run(config: OperatorConfig) -> None:
    """Serve the operator-side endpoint until SIGTERM."""
    config.validate()
    tls = config.tls_files()
    api = await kubernetes_api(config.kubeconfig)
    reader = KubernetesReader(api)
    try:
        side = OperatorSide(sidecar_image=config.require_sidecar_image(), kubernetes=reader)
        server = PluginServer(assemble(Role.OPERATOR, side))
        if tls is not None:
            host, port = parse_server_address(config.server_address)
            await server.start_tcp(host, port, tls)
        else:
            await server.start_unix(Path(config.plugin_path) / PLUGIN_NAME)
        log.info("injecting the sidecar image", extra={"image": side.sidecar_image})
        log.warning("the ObjectStore and ScheduledBackup controller is not implemented yet (issue #8)")
        await serve_until_signalled(server)
    finally:
        await reader.close()
