"""The operator process: the operator-side CNPG-I endpoint and the Kopf controller for
ObjectStore and ScheduledBackup (:mod:`.controller`), in one event loop, plus the
``/healthz``/``/readyz`` probes (:mod:`.health`).

Like upstream, it refuses to start without ``SIDECAR_IMAGE`` (the image it injects into
PostgreSQL Pods and recovery Jobs) and without a Kubernetes API to talk to: both are needed by
the first hook CloudNativePG calls, and failing at start shows in the Deployment's status rather
than in every Cluster's phase.

Start: probes, then the gRPC listener, then the controller; ``/readyz`` answers 200 once the
last two are up. SIGTERM (or SIGINT): ``/readyz`` turns 503 and gRPC health NOT_SERVING, the
listener stops accepting and lets running calls finish, the probes stop, then the controller
stops (running handlers finish within a few seconds, the replica leaves the peering so that a
passive one takes over at once). The process then exits 0; it exits 1 if the controller died.

This folder is installed as ``barman_cloud_operator``. It has no ``__init__.py`` on purpose: as a
namespace portion it can never shadow the standard library's ``operator`` module, even when the
repository root comes first on ``sys.path`` (``python -m ...`` from the checkout).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from kubernetes_asyncio import client, config

from barman_cloud.errors import InvalidInput, Unavailable
from barman_cloud_operator.controller import Controller, ControllerOptions
from barman_cloud_operator.health import DEFAULT_ADDRESS, HealthServer
from plugin_grpc.kube import KubernetesReader
from plugin_grpc.metadata import PLUGIN_NAME
from plugin_grpc.operator_side.settings import OperatorSide
from plugin_grpc.roles import Role, assemble
from plugin_grpc.server import PluginServer
from plugin_grpc.tls import ReloadingServerContext, ServerTLSFiles

log = logging.getLogger(__name__)

SIDECAR_IMAGE_ENV = "SIDECAR_IMAGE"
CONTROLLER_STOP_TIMEOUT = 20.0
"""Seconds the controller gets to stop (Kubernetes' default grace period is 30 s)."""


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
    health_probe_bind_address: str = DEFAULT_ADDRESS
    """``/healthz`` and ``/readyz``; ``0`` disables them."""
    leader_elect: bool = False
    """Several replicas, one active controller (Kopf peering); CNPG-I is served by all."""
    metrics_bind_address: str = "0"
    """Upstream's controller-runtime metrics; accepted, not served (``0``: disabled)."""

    def validate(self) -> None:
        """Refuse a configuration the operator cannot work with, before anything starts:
        the listener's flags and TLS files first, then the probes' address, then the sidecar image."""
        tls = self.tls_files()
        if tls is not None:
            ReloadingServerContext(tls)  # loads the files once: a clear error if they are unusable
        self.health_address()
        self.require_sidecar_image()

    def health_address(self) -> tuple[str | None, int] | None:
        """(host or None, port) of the probes, or None when disabled."""
        if self.health_probe_bind_address.strip() in ("0", ""):
            return None
        try:
            return parse_server_address(self.health_probe_bind_address)
        except InvalidInput:
            raise InvalidInput(
                f"invalid --health-probe-bind-address {self.health_probe_bind_address!r}",
                hint="use HOST:PORT or :PORT (default :8081), or 0 to disable the probes",
            ) from None

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


async def kubernetes_configuration(kubeconfig: str = "") -> client.Configuration:
    """How to reach the Kubernetes API: ``kubeconfig`` if given, else the Pod's service account,
    else ``$KUBECONFIG`` or ``~/.kube/config``. Loaded afresh at each call (the controller's
    login calls it again when the API server refuses an expired token)."""
    if not kubeconfig and os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return configuration
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
    return configuration


async def kubernetes_api(kubeconfig: str = "") -> client.ApiClient:
    """A client for the Kubernetes API (see :func:`kubernetes_configuration`)."""
    return client.ApiClient(await kubernetes_configuration(kubeconfig))


class _Signals:
    """SIGTERM and SIGINT set :attr:`received`; :meth:`install` again after Kopf took them over."""

    def __init__(self) -> None:
        self.received = asyncio.Event()

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.received.set)

    def remove(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def run(config: OperatorConfig) -> None:
    """Serve the operator-side endpoint and run the controller until SIGTERM."""
    config.validate()
    tls = config.tls_files()
    health_address = config.health_address()
    if config.metrics_bind_address.strip() not in ("0", ""):
        log.warning(
            "metrics are not served by this operator; --metrics-bind-address is ignored",
            extra={"address": config.metrics_bind_address},
        )
    api = await kubernetes_api(config.kubeconfig)
    reader = KubernetesReader(api)
    signals = _Signals()
    side = OperatorSide(sidecar_image=config.require_sidecar_image(), kubernetes=reader)
    server = PluginServer(assemble(Role.OPERATOR, side))
    controller = Controller(
        api,
        lambda: kubernetes_configuration(config.kubeconfig),
        ControllerOptions(leader_elect=config.leader_elect),
    )
    stopping = False
    serving = False

    def ready() -> bool:
        return serving and not stopping and controller.started.is_set()

    health = HealthServer(*health_address, ready=ready) if health_address else None
    try:
        signals.install()
        if health is not None:
            await health.start()
        if tls is not None:
            host, port = parse_server_address(config.server_address)
            await server.start_tcp(host, port, tls)
        else:
            await server.start_unix(Path(config.plugin_path) / PLUGIN_NAME)
        serving = True
        log.info("injecting the sidecar image", extra={"image": side.sidecar_image})
        await controller.start()
        signals.install()  # Kopf installed its own handlers: ours stop gRPC first, then Kopf
        assert controller.task is not None
        stop = asyncio.ensure_future(signals.received.wait())
        try:
            await asyncio.wait({stop, controller.task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not signals.received.is_set():
            raise Unavailable(
                "the ObjectStore/ScheduledBackup controller stopped unexpectedly (see the log above)",
                hint="the operator exits so that Kubernetes restarts it",
            )
        log.info("shutting down")
    finally:
        stopping = True
        await server.stop()
        if health is not None:
            await health.stop()
        await controller.stop(CONTROLLER_STOP_TIMEOUT)
        signals.remove()
        await reader.close()
