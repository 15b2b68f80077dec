"""The gRPC endpoints: a unix socket (sidecars, and the operator without TLS) and TCP with
mutual TLS (the operator behind its Service). Both serve Identity, the role's services and the
standard ``grpc.health.v1.Health`` used by the sidecar's startup probe."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import stat
import tempfile
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError
from grpclib.const import Status
from grpclib.encoding.proto import ProtoCodec
from grpclib.events import RecvRequest, listen
from grpclib.exceptions import GRPCError
from grpclib.health.check import ServiceStatus
from grpclib.health.service import Health
from grpclib.server import Server, Stream

from barman_cloud.errors import Conflict, InvalidInput
from plugin_grpc.roles import Assembly
from plugin_grpc.services.identity import IdentityService
from plugin_grpc.tls import ReloadingServerContext, ServerTLSFiles

log = logging.getLogger(__name__)

# Owner and group: the sidecar runs with PostgreSQL's uid/gid (26), as does the instance manager.
DEFAULT_SOCKET_MODE = 0o660


# Requests larger than this are refused before they are read (grpclib itself has no limit and
# would buffer any length a client announces). CloudNativePG's largest requests carry a Cluster and
# a Pod or Job as JSON; the API server stores no object over 1.5 MiB.
MAX_REQUEST_BYTES = 16 * 1024 * 1024


class RequestCodec(ProtoCodec):
    """Protobuf, with bytes that do not decode as the expected message answered INVALID_ARGUMENT
    (grpclib's own codec lets the DecodeError become UNKNOWN "Internal Server Error")."""

    def decode(self, data: bytes, message_type: Any) -> Any:
        try:
            return super().decode(data, message_type)
        except DecodeError as error:
            name = getattr(getattr(message_type, "DESCRIPTOR", None), "full_name", message_type.__name__)
            raise GRPCError(
                Status.INVALID_ARGUMENT,
                f"the request is not a valid {name} message ({error}): the caller must send "
                "protobuf-encoded CNPG-I messages",
            ) from None


async def _bound_request_size(event: RecvRequest) -> None:
    """Wrap the handler of every call so that its request is refused, unread, when too large."""
    handler = event.method_func

    async def bounded(stream: Stream[Any, Any]) -> None:
        # grpclib reads a message as recv_data(5) (flag and length) then recv_data(length).
        transport_stream = stream._stream
        receive = transport_stream.recv_data

        async def recv_data(size: int) -> bytes:
            if size > MAX_REQUEST_BYTES:
                raise GRPCError(
                    Status.RESOURCE_EXHAUSTED,
                    f"the request to {event.method_name} is {size} bytes, more than the "
                    f"{MAX_REQUEST_BYTES} bytes this plugin accepts",
                )
            return await receive(size)

        transport_stream.recv_data = recv_data  # type: ignore[method-assign]
        await handler(stream)

    event.method_func = bounded


class PluginServer:
    """One gRPC endpoint serving an :class:`Assembly`.

    Health answers UNKNOWN until the listener is up, SERVING while it accepts calls and
    NOT_SERVING once shutdown has begun; Identity's Probe fails whenever it is not SERVING.
    """

    def __init__(self, assembly: Assembly) -> None:
        self.assembly = assembly
        self._serving = ServiceStatus()
        self.identity = IdentityService(
            assembly.capabilities, ready=lambda: self._serving.__status__() is True
        )
        self._server = Server(
            [self.identity, *assembly.services, Health({self.identity: [self._serving]})],
            codec=RequestCodec(),
        )
        listen(self._server, RecvRequest, _bound_request_size)
        self._socket_path: Path | None = None
        self._started = False
        self.tls: ReloadingServerContext | None = None
        self.port: int | None = None

    async def start_unix(self, path: str | os.PathLike[str], mode: int = DEFAULT_SOCKET_MODE) -> None:
        """Listen on a unix socket at ``path``, replacing a stale socket left by a dead process."""
        socket_path = Path(path)
        socket_path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_socket(socket_path)
        listener = bind_unix_socket(socket_path, mode)
        self._socket_path = socket_path
        try:
            await self._server.start(sock=listener)
        except BaseException:
            listener.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(socket_path)
            self._socket_path = None
            raise
        self._started = True
        self._serving.set(True)
        log.info("serving CNPG-I on a unix socket", extra={"socket": str(socket_path)})

    async def start_tcp(self, host: str | None, port: int, tls: ServerTLSFiles) -> None:
        """Listen on ``host:port`` with mutual TLS 1.3; all interfaces when ``host`` is empty.

        ``port`` 0 picks a free port, available afterwards as :attr:`port`.
        """
        self.tls = ReloadingServerContext(tls)
        listener = _tcp_listener(host, port)
        self.port = listener.getsockname()[1]
        await self._server.start(sock=listener, ssl=self.tls.context)
        self._started = True
        self._serving.set(True)
        log.info("serving CNPG-I over mutual TLS", extra={"host": host or "*", "port": self.port})

    def set_serving(self, serving: bool | None) -> None:
        """Health answers SERVING (True), NOT_SERVING (False) or UNKNOWN (None) from now on;
        Identity's Probe fails unless SERVING."""
        self._serving.set(serving)

    async def stop(self) -> None:
        """Stop accepting calls, let running ones finish, remove the socket file. Idempotent."""
        self.set_serving(False)
        if self._started:
            self._started = False
            self._server.close()
            await self._server.wait_closed()
        if self._socket_path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._socket_path.unlink()
            self._socket_path = None


async def serve_until_signalled(server: PluginServer) -> None:
    """Wait for SIGTERM or SIGINT, then shut ``server`` down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
        log.info("shutting down")
    finally:
        await server.stop()


def _tcp_listener(host: str | None, port: int) -> socket.socket:
    if host:
        return socket.create_server((host, port), family=_family_of(host), backlog=128)
    if socket.has_dualstack_ipv6():
        return socket.create_server(("", port), family=socket.AF_INET6, dualstack_ipv6=True, backlog=128)
    return socket.create_server(("", port), backlog=128)


def _family_of(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def bind_unix_socket(path: Path, mode: int = DEFAULT_SOCKET_MODE) -> socket.socket:
    """A listening unix socket at ``path`` with exactly ``mode``, whatever the umask.

    The socket is bound in a fresh private directory beside ``path``, given its mode there (no
    one else can reach it yet, nor swap it for a link), then hard-linked to ``path``: a link never
    replaces nor follows anything found at ``path``, and the socket is never reachable with
    other permissions.
    """
    staging = Path(tempfile.mkdtemp(prefix=".bcp-", dir=path.parent))
    os.chmod(staging, stat.S_IRWXU)  # mkdtemp's 0700 is masked by the umask
    temporary = staging / "s"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(temporary))
        os.chmod(temporary, mode)
        try:
            os.link(temporary, path, follow_symlinks=False)
        except FileExistsError:
            raise Conflict(
                f"{path} appeared while the plugin was starting", hint="is another plugin process starting?"
            ) from None
        listener.listen(128)
        listener.setblocking(False)
    except BaseException:
        listener.close()
        raise
    finally:
        temporary.unlink(missing_ok=True)
        staging.rmdir()
    return listener


def remove_stale_socket(path: Path) -> None:
    """Remove a socket file nobody listens on; refuse to touch anything else.

    A socket that still accepts connections belongs to a running process (a second sidecar, or
    the previous one not yet gone): taking it over would cut that process off, so we fail.
    """
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise InvalidInput(
            f"{path} exists and is not a unix socket", hint="remove it or choose another --socket path"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(str(path))
    except OSError as error:
        if error.errno not in (errno.ECONNREFUSED, errno.ENOENT):
            raise
    else:
        raise Conflict(
            f"another process is serving on {path}",
            hint="stop it first; two plugin processes cannot share one socket",
        )
    finally:
        probe.close()
    log.info("removing a stale socket", extra={"socket": str(path)})
    path.unlink()
