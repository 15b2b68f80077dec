"""``/healthz`` and ``/readyz`` on ``--health-probe-bind-address`` (default ``:8081``), as upstream.

- ``/healthz`` (liveness): 200 while the event loop answers. Anything fatal (the gRPC listener or
  the controller dying) ends the process instead, so a hung loop is what liveness catches.
- ``/readyz`` (readiness): 200 once the CNPG-I endpoint accepts calls and the controller has
  started, 503 before and from the moment shutdown begins, so the Service stops sending
  CloudNativePG's calls to a replica that is going away. A *passive* replica (another one holds
  the controller's peering) is ready: it serves CNPG-I like the active one.

``0`` as the address disables the endpoint (controller-runtime's convention).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web

from barman_cloud.errors import InvalidInput

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = ":8081"


class HealthServer:
    def __init__(self, host: str | None, port: int, ready: Callable[[], bool]) -> None:
        self.host = host
        self.port = port
        self._ready = ready
        self._runner: web.AppRunner | None = None

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        if self._ready():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="not ready\n")

    async def start(self) -> None:
        app = web.Application()
        app.add_routes([web.get("/healthz", self._healthz), web.get("/readyz", self._readyz)])
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except OSError as error:
            await runner.cleanup()
            where = f"{self.host or ''}:{self.port}"
            raise InvalidInput(
                f"cannot serve the health probes on {where}: {error.strerror or error}",
                hint="choose another --health-probe-bind-address, or 0 to disable the probes",
            ) from None
        self._runner = runner
        log.info("serving /healthz and /readyz", extra={"host": self.host or "*", "port": self.port})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
