"""An HTTP/1.1 fault proxy to put between our code and an object-store emulator.

The proxy runs its own event loop in a background thread, so that synchronous tests (PostgreSQL
calling the sidecar) and asynchronous ones (the engine in the test's loop) drive it alike. It
forwards requests to the emulator verbatim and, when a :class:`Rule` matches a request, injects a
:class:`Fault` instead:

- ``RESET_REQUEST``: the request's head and half its body are read, then the connection is reset
  (RST): the emulator never sees the request;
- ``RESET_RESPONSE``: the request is forwarded (the emulator applies it), the client gets the
  status line and part of the answer, then a reset;
- ``STALL``: the request is read and held, never forwarded nor answered, until the client gives
  up (its timeouts) or goes away;
- ``STALL_RESPONSE``: the request is forwarded and applied, the answer is withheld;
- ``HTTP_500`` / ``HTTP_503``: an error answer in the store's own dialect (S3 XML, Azure XML with
  ``x-ms-error-code``, GCS JSON); the emulator never sees the request;
- ``THROTTLE``: the store's throttling answer (S3 ``503 SlowDown``, Azure ``503 ServerBusy``, GCS
  ``429 rateLimitExceeded``);
- ``TRUNCATE``: the request is forwarded and applied, the answer's head promises the whole body
  (``Content-Length``) but only half of it is sent before the connection is closed.

A rule matches on the method and a regular expression searched in the request target, may let
its first ``skip`` matches through, injects at most ``times`` faults (None: no limit): the next
``first`` matches for sure, then each with ``probability`` drawn from its own RNG seeded with
``seed`` (reproducible runs). Everything that
went through is recorded in :attr:`FaultProxy.log`.

``Location`` headers naming the emulator are rewritten to name the proxy, so that follow-up
requests (GCS resumable upload sessions) go through the proxy too.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import random
import re
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

Flavour = Literal["s3", "azure", "gcs"]
MAX_HEAD = 64 * 1024


class Fault(enum.Enum):
    RESET_REQUEST = "reset mid-request"
    RESET_RESPONSE = "reset mid-response"
    STALL = "stall (request held)"
    STALL_RESPONSE = "stall (answer held)"
    HTTP_500 = "500 error"
    HTTP_503 = "503 error"
    THROTTLE = "throttle"
    TRUNCATE = "truncated body"


@dataclass
class Rule:
    """Which requests get ``fault``; see the module's docstring."""

    fault: Fault
    method: str | None = None
    """Regular expression matched against the whole method (``PUT|POST``); None: any."""
    path: str | None = None
    """Regular expression searched in the request target (path and query); None: any."""
    times: int | None = 1
    probability: float = 1.0
    seed: int = 0
    skip: int = 0
    first: int = 0
    """The first ``first`` matches after ``skip`` get the fault whatever ``probability`` says (so
    that a seeded fraction still injects at least that many)."""
    matched: int = 0
    injected: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # noqa: S311 - reproducible fault schedules

    def matches(self, method: str, target: str) -> bool:
        if self.method is not None and not re.fullmatch(self.method, method):
            return False
        return self.path is None or re.search(self.path, target) is not None

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.injected >= self.times

    def decide(self) -> bool:
        """Count a match; True when this one gets the fault."""
        self.matched += 1
        if self.matched <= self.skip or self.exhausted:
            return False
        certain = self.matched <= self.skip + self.first
        if not certain and self.probability < 1.0 and self._rng.random() >= self.probability:
            return False
        self.injected += 1
        return True


@dataclass(frozen=True)
class Exchange:
    """One request seen by the proxy."""

    method: str
    target: str
    fault: Fault | None
    status: int | None
    """The status the client was sent (None: no complete answer)."""


class _Request:
    def __init__(self, head: bytes, body: bytes) -> None:
        self.head = head
        self.body = body
        request_line, _, _ = head.partition(b"\r\n")
        parts = request_line.decode("latin-1").split(" ")
        self.method = parts[0]
        self.target = parts[1] if len(parts) > 1 else "/"


class _Response:
    def __init__(self, head: bytes, body: bytes, *, close: bool) -> None:
        self.head = head
        self.body = body
        self.close = close
        self.status = int(head.split(b" ", 2)[1])


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    result: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            result[name.strip().lower()] = value.strip()
    return result


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as error:
        if error.partial:
            raise ConnectionError("connection closed in the middle of a message head") from error
        return None


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    raw = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        raw += line
        size = int(line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while True:  # trailers, then the empty line
                trailer = await reader.readuntil(b"\r\n")
                raw += trailer
                if trailer == b"\r\n":
                    return bytes(raw)
        raw += await reader.readexactly(size + 2)


async def _read_body(
    reader: asyncio.StreamReader, headers: dict[str, str], *, until_eof: bool
) -> tuple[bytes, bool]:
    """The body as sent (chunked framing kept) and whether it was delimited by the end of stream."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _read_chunked(reader), False
    if "content-length" in headers:
        return await reader.readexactly(int(headers["content-length"])), False
    if until_eof:
        return await reader.read(), True
    return b"", False


def _drop_header(head: bytes, name: bytes) -> bytes:
    lines = head.split(b"\r\n")
    kept = [line for line in lines[1:] if not line.lower().startswith(name + b":")]
    return b"\r\n".join([lines[0], *kept])


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST rather than a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


_REASONS = {429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}


def error_answer(flavour: Flavour, fault: Fault) -> bytes:
    """A complete HTTP answer for the error faults, in the store's own dialect."""
    if fault is Fault.HTTP_500:
        status, s3_code, azure_code, gcs_reason = 500, "InternalError", "InternalError", "backendError"
    elif fault is Fault.HTTP_503:
        status, s3_code, azure_code, gcs_reason = 503, "ServiceUnavailable", "ServerBusy", "backendError"
    elif fault is Fault.THROTTLE:
        status, s3_code, azure_code = 503, "SlowDown", "ServerBusy"
        gcs_reason = "rateLimitExceeded"
        if flavour == "gcs":
            status = 429
    else:
        raise ValueError(f"{fault} is not an error answer")
    extra = ""
    if flavour == "s3":
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{s3_code}</Code><Message>injected by the fault proxy</Message>"
            "<RequestId>fault-proxy</RequestId></Error>"
        ).encode()
        content_type = "application/xml"
    elif flavour == "azure":
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            f"<Error><Code>{azure_code}</Code><Message>injected by the fault proxy</Message></Error>"
        ).encode()
        content_type = "application/xml"
        extra = f"x-ms-error-code: {azure_code}\r\nx-ms-request-id: fault-proxy\r\n"
    else:
        body = json.dumps(
            {
                "error": {
                    "code": status,
                    "message": "injected by the fault proxy",
                    "errors": [{"reason": gcs_reason, "message": "injected by the fault proxy"}],
                }
            }
        ).encode()
        content_type = "application/json"
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    )
    return head.encode("latin-1") + body


class FaultProxy:
    """One proxy in front of one emulator (``upstream_port`` on 127.0.0.1)."""

    def __init__(self, upstream_port: int, flavour: Flavour) -> None:
        self.upstream_port = upstream_port
        self.flavour: Flavour = flavour
        self.port = 0
        self.log: list[Exchange] = []
        self._rules: list[Rule] = []
        self._held = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._ready = threading.Event()

    # -- control, from any thread ------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, rule: Rule) -> Rule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        """Remove every rule: from now on requests go through untouched."""
        with self._lock:
            self._rules.clear()

    @contextlib.contextmanager
    def faults(self, *rules: Rule) -> Iterator[tuple[Rule, ...]]:
        for rule in rules:
            self.add(rule)
        try:
            yield rules
        finally:
            with self._lock:
                self._rules = [r for r in self._rules if all(r is not mine for mine in rules)]

    def exchanges(self) -> list[Exchange]:
        with self._lock:
            return list(self.log)

    def mark(self) -> int:
        """A position in the log, for counting what happened after it."""
        with self._lock:
            return len(self.log)

    def since(self, mark: int) -> list[Exchange]:
        with self._lock:
            return self.log[mark:]

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._run, name=f"fault-proxy-{self.flavour}", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the fault proxy did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(30)

    # -- the proxy's own loop --------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._server = loop.run_until_complete(asyncio.start_server(self._accept, "127.0.0.1", 0))
            self.port = int(self._server.sockets[0].getsockname()[1])
            self._ready.set()
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while await self._exchange(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            return
        finally:
            self._connections.discard(task)
            writer.transport.abort()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request of the client connection; False when the connection is done."""
        head = await _read_head(reader)
        if head is None:
            return False
        headers = _headers(head)
        if headers.get("expect", "").lower() == "100-continue":
            # Answer the expectation here, and forward the request without it.
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
            head = _drop_header(head, b"expect")
        fault = self._choose(head)
        if fault is Fault.RESET_REQUEST:
            length = int(headers.get("content-length") or 0)
            if length:
                with contextlib.suppress(asyncio.IncompleteReadError):
                    await reader.readexactly(length // 2)
            self._record(head, fault, None)
            _reset(writer)
            return False
        body, _ = await _read_body(reader, headers, until_eof=False)
        if fault in (Fault.HTTP_500, Fault.HTTP_503, Fault.THROTTLE):
            answer = error_answer(self.flavour, fault)
            writer.write(answer)
            await writer.drain()
            self._record(head, fault, int(answer.split(b" ", 2)[1]))
            return True
        if fault is Fault.STALL:
            self._record(head, fault, None)
            await self._hold(reader)
            return False
        # A fresh emulator connection per request: no stale keep-alive to reason about.
        upstream = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        try:
            response = await self._forward(upstream, _Request(head, body), writer)
        finally:
            upstream[1].transport.abort()
        if fault is None:
            writer.write(self._rewrite(response.head) + response.body)
            await writer.drain()
            self._record(head, None, response.status)
            return not response.close
        self._record(head, fault, None)
        await self._spoil(fault, response, reader, writer)
        return False

    def _choose(self, head: bytes) -> Fault | None:
        request = _Request(head, b"")
        with self._lock:
            for rule in self._rules:
                if rule.matches(request.method, request.target) and not rule.exhausted:
                    return rule.fault if rule.decide() else None
        return None

    def _record(self, head: bytes, fault: Fault | None, status: int | None) -> None:
        request = _Request(head, b"")
        with self._lock:
            self.log.append(Exchange(request.method, request.target, fault, status))

    async def _forward(
        self,
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        request: _Request,
        client: asyncio.StreamWriter,
    ) -> _Response:
        up_reader, up_writer = upstream
        up_writer.write(request.head + request.body)
        await up_writer.drain()
        while True:
            head = await _read_head(up_reader)
            if head is None:
                raise ConnectionError("the emulator closed the connection")
            status = int(head.split(b" ", 2)[1])
            if 100 <= status < 200:
                client.write(head)  # 100 Continue and friends go straight through
                await client.drain()
                continue
            headers = _headers(head)
            if request.method == "HEAD" or status in (204, 304):
                body, eof = b"", False
            else:
                body, eof = await _read_body(up_reader, headers, until_eof=True)
            close = eof or headers.get("connection", "").lower() == "close"
            return _Response(head, body, close=close)

    def _rewrite(self, head: bytes) -> bytes:
        upstream = f"127.0.0.1:{self.upstream_port}".encode()
        if upstream not in head:
            return head
        lines = head.split(b"\r\n")
        for index, line in enumerate(lines):
            if line.lower().startswith(b"location:"):
                lines[index] = line.replace(upstream, f"127.0.0.1:{self.port}".encode())
        return b"\r\n".join(lines)

    async def _spoil(
        self,
        fault: Fault,
        response: _Response,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        head = self._rewrite(response.head)
        if fault is Fault.STALL_RESPONSE:
            await self._hold(reader)
            return
        # Half the body; with no body, half the head.
        partial = head + response.body[: len(response.body) // 2] if response.body else head[: len(head) // 2]
        writer.write(partial)
        await writer.drain()
        if fault is Fault.RESET_RESPONSE:
            _reset(writer)
        else:  # TRUNCATE: a clean close, short of what Content-Length promised
            writer.close()

    async def _hold(self, reader: asyncio.StreamReader) -> None:
        """Answer nothing until the client closes the connection (or the proxy stops)."""
        with self._lock:
            self._held += 1
        try:
            while await reader.read(65536):
                pass
        finally:
            with self._lock:
                self._held -= 1

    @property
    def held(self) -> int:
        """Requests being stalled right now."""
        with self._lock:
            return self._held
