"""The operator process: the operator-side CNPG-I endpoint (and, with issue #8, the Kopf
controller for ObjectStore and ScheduledBackup in the same event loop).

This folder is installed as ``barman_cloud_operator``. It has no ``__init__.py`` on purpose: as a
namespace portion it can never shadow the standard library's ``operator`` module, even when the
repository root comes first on ``sys.path`` (``python -m ...`` from the checkout).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from barman_cloud.errors import InvalidInput
from plugin_grpc.metadata import PLUGIN_NAME
from plugin_grpc.roles import Role, assemble
from plugin_grpc.server import PluginServer, serve_until_signalled
from plugin_grpc.tls import ServerTLSFiles

log = logging.getLogger(__name__)


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


async def run(config: OperatorConfig) -> None:
    """Serve the operator-side endpoint until SIGTERM."""
    tls = config.tls_files()
    server = PluginServer(assemble(Role.OPERATOR))
    if tls is not None:
        host, port = parse_server_address(config.server_address)
        await server.start_tcp(host, port, tls)
    else:
        await server.start_unix(Path(config.plugin_path) / PLUGIN_NAME)
    log.warning("the ObjectStore and ScheduledBackup controller is not implemented yet (issue #8)")
    await serve_until_signalled(server)
