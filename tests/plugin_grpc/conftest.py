from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from grpclib.events import RecvRequest, listen

from plugin_grpc.roles import Role, assemble
from plugin_grpc.server import PluginServer


class CallLog(list[str]):
    """Wire paths of the RPCs that reached a handler, in order."""


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Role], tuple[PluginServer, CallLog]]]:
    servers: list[PluginServer] = []

    def make(role: Role) -> tuple[PluginServer, CallLog]:
        server = PluginServer(assemble(role))
        calls = CallLog()

        async def record(event: RecvRequest) -> None:
            calls.append(event.method_name)

        listen(server._server, RecvRequest, record)
        servers.append(server)
        return server, calls

    yield make
    for server in servers:
        await server.stop()
