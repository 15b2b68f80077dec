"""One module per CNPG-I service, named after its .proto file.

Every service carries the ``PluginCapability.Service.Type`` that announces it, so that the
Identity service of an endpoint advertises exactly the services that endpoint registers
(``plugin_grpc.roles``): CloudNativePG calls ``GetCapabilities`` on everything advertised, and an
advertised service that is missing would fail its handshake.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from grpclib.const import Handler


class CNPGIService(Protocol):
    """A servable CNPG-I service and the capability that announces it."""

    capability: ClassVar[Any]
    """``PluginCapability.Service.Type`` value advertised by Identity for this service."""

    def __mapping__(self) -> dict[str, Handler]: ...
