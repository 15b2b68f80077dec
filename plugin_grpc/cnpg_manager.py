"""CloudNativePG's instance manager, as PostgreSQL's archive_command and restore_command see it.

CloudNativePG runs ``/controller/manager wal-archive %p`` and ``wal-restore %f %p``: a Go program
that dials ``/plugins/<plugin>``, performs the CNPG-I handshake (GetPluginMetadata,
GetPluginCapabilities, each advertised service's GetCapabilities, Probe) and then calls
``WAL.Archive`` or ``WAL.Restore``, once per WAL file. This is the same sequence of calls, over
HTTP/2 on the unix socket, written with the standard library (``hpack`` only to read an error),
so that it starts in tens of milliseconds like the Go binary does (a grpclib client costs ~150 ms
of imports per WAL file, which would bias the benchmarks against the plugin).

Usage (the cluster JSON is the file named by $CNPG_CLUSTER_JSON, "{}" otherwise):
    python -m plugin_grpc.cnpg_manager --socket PATH wal-archive WAL_PATH
    python -m plugin_grpc.cnpg_manager --socket PATH wal-restore WAL_NAME DEST_PATH [--rewind]
Exit status: 0 done, 1 the plugin answered an error (the message is printed), 2 transport error.

Start-up is most of a call's cost, so the module imports only what the interpreter has already
loaded or builds in (``_socket``, ``_struct``): the error path imports the rest lazily. Run as a
script with ``-I -S`` (``COMMAND``), a call starts in ~8 ms of CPU instead of ~30 ms with ``-m``
(``site``, ``runpy``, ``socket``'s enums and ``urllib.parse``'s ``re`` and ``ipaddress``).
"""

from __future__ import annotations

import _socket
import os
import sys
from _struct import pack, unpack

COMMAND = [sys.executable, "-I", "-S", os.path.abspath(__file__)]
"""The cheapest way to run this file (isolated, no site): what the benchmarks put in
archive_command / restore_command, followed by ``--socket PATH wal-archive %p`` and so on."""

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
MAX_FRAME = 16384
DATA_LOSS = 15
"""The gRPC status of a corrupt object."""

# PluginCapability.Service.Type -> (service, path) in CloudNativePG's call order.
SERVICES = [
    (1, "/cnpgi.operator.v1.Operator/GetCapabilities"),
    (4, "/cnpgi.operator_lifecycle.v1.OperatorLifecycle/GetCapabilities"),
    (2, "/cnpgi.wal.v1.WAL/GetCapabilities"),
    (3, "/cnpgi.backup.v1.Backup/GetCapabilities"),
    (5, "/cnpgi.reconciler.v1.ReconcilerHooks/GetCapabilities"),
    (6, "/cnpgi.wal.v1.RestoreJobHooks/GetCapabilities"),
    (7, "/cnpgi.identity.v1.Postgres/GetCapabilities"),
    (10, "/cnpgi.metrics.v1.Metrics/GetCapabilities"),
]


class RPCError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"rpc error: code = {status} desc = {message}")
        self.status = status


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, wire_type: int, payload: bytes | int) -> bytes:
    key = varint(number << 3 | wire_type)
    if wire_type == 0:
        assert isinstance(payload, int)
        return key + varint(payload)
    assert isinstance(payload, bytes)
    return key + varint(len(payload)) + payload


def read_varint(data: bytes, position: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, position


def fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """Top-level (field number, value) pairs of a protobuf message."""
    out: list[tuple[int, int | bytes]] = []
    position = 0
    while position < len(data):
        key, position = read_varint(data, position)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, position = read_varint(data, position)
            out.append((number, value))
        elif wire_type == 2:
            length, position = read_varint(data, position)
            out.append((number, data[position : position + length]))
            position += length
        else:
            raise ValueError(f"unexpected wire type {wire_type}")
    return out


class Connection:
    def __init__(self, path: str) -> None:
        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buffer = b""
        self.blocks: list[bytes] = []  # every header block, for hpack decoding on failure
        self.stream_id = 1
        self.sock.sendall(PREFACE + self.frame(SETTINGS, 0, 0, b""))

    @staticmethod
    def encode_headers(headers: list[tuple[str, str]]) -> bytes:
        """HPACK literals without indexing and without Huffman coding: valid, and needs no tables."""
        out = bytearray()
        for name, value in headers:
            out.append(0x00)
            for text in (name.encode(), value.encode()):
                if len(text) < 127:
                    out.append(len(text))
                else:
                    out.append(127)
                    rest = len(text) - 127
                    while rest >= 128:
                        out.append(rest % 128 + 128)
                        rest //= 128
                    out.append(rest)
                out += text
        return bytes(out)

    @staticmethod
    def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
        return pack(">I", len(payload))[1:] + bytes([kind, flags]) + pack(">I", stream) + payload

    def read_frame(self) -> tuple[int, int, int, bytes]:
        while len(self.buffer) < 9 or len(self.buffer) < 9 + int.from_bytes(self.buffer[:3], "big"):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the plugin closed the connection")
            self.buffer += chunk
        length = int.from_bytes(self.buffer[:3], "big")
        kind, flags = self.buffer[3], self.buffer[4]
        stream = unpack(">I", self.buffer[5:9])[0] & 0x7FFFFFFF
        payload = self.buffer[9 : 9 + length]
        self.buffer = self.buffer[9 + length :]
        if flags & PADDED and kind in (DATA, HEADERS):
            payload = payload[1 : len(payload) - payload[0]]
        if kind == HEADERS and flags & PRIORITY_FLAG:
            payload = payload[5:]
        return kind, flags, stream, payload

    def call(self, path: str, message: bytes) -> bytes:
        stream = self.stream_id
        self.stream_id += 2
        headers = [
            (":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "localhost"),
            ("content-type", "application/grpc"), ("te", "trailers"),
        ]  # fmt: skip
        body = b"\x00" + pack(">I", len(message)) + message
        frames = [self.frame(HEADERS, END_HEADERS, stream, self.encode_headers(headers))]
        for offset in range(0, max(len(body), 1), MAX_FRAME):
            last = offset + MAX_FRAME >= len(body)
            frames.append(
                self.frame(DATA, END_STREAM if last else 0, stream, body[offset : offset + MAX_FRAME])
            )
        self.sock.sendall(b"".join(frames))
        received = self._receive(stream)
        if len(received) >= 5:
            # A unary answer carries its message only on success (errors are trailers-only), so
            # the headers need decoding only when something went wrong.
            return received[5:]
        metadata = self.decode_headers()
        status = int(metadata.get("grpc-status", "2"))
        from urllib.parse import unquote

        raise RPCError(status, unquote(metadata.get("grpc-message", "")))

    def decode_headers(self) -> dict[str, str]:
        """Decode every header block received so far, in order (HPACK state is per connection)."""
        if "site" not in sys.modules:  # started with -S: site-packages (hpack) are not on the path yet
            import site

            site.main()
        import hpack

        decoder = hpack.Decoder()
        metadata: dict[str, str] = {}
        for block in self.blocks:
            metadata = dict((str(k), str(v)) for k, v in decoder.decode(block))
        return metadata

    def _connection_frame(self, kind: int, flags: int, payload: bytes) -> None:
        if kind == SETTINGS and not flags & ACK:
            self.sock.sendall(self.frame(SETTINGS, ACK, 0, b""))
        elif kind == PING and not flags & ACK:
            self.sock.sendall(self.frame(PING, ACK, 0, payload))
        elif kind == GOAWAY:
            raise ConnectionError("the plugin sent GOAWAY")

    def _receive(self, stream: int) -> bytes:
        """Frames until ``stream`` ends: its DATA (header blocks are kept for decode_headers)."""
        received = b""
        block = b""
        ended = False
        while True:
            kind, flags, on_stream, payload = self.read_frame()
            if on_stream == 0:
                self._connection_frame(kind, flags, payload)
                continue
            if on_stream != stream:
                continue
            if kind == RST_STREAM:
                raise ConnectionError(f"stream reset by the plugin (code {int.from_bytes(payload, 'big')})")
            if kind == DATA:
                received += payload
                if flags & END_STREAM:
                    return received
            elif kind in (HEADERS, CONTINUATION):
                block += payload
                ended = ended or bool(kind == HEADERS and flags & END_STREAM)
                if flags & END_HEADERS:
                    self.blocks.append(block)
                    block = b""
                    if ended:
                        return received

    def handshake(self) -> None:
        self.call("/cnpgi.identity.v1.Identity/GetPluginMetadata", b"")
        capabilities = self.call("/cnpgi.identity.v1.Identity/GetPluginCapabilities", b"")
        advertised: set[int] = set()
        for number, entry in fields(capabilities):
            if number == 1 and isinstance(entry, bytes):
                for inner_number, service in fields(entry):
                    if inner_number == 1 and isinstance(service, bytes):
                        advertised.update(v for n, v in fields(service) if n == 1 and isinstance(v, int))
        for capability, path in SERVICES:
            if capability in advertised:
                self.call(path, b"")
        self.call("/cnpgi.identity.v1.Identity/Probe", b"")

    def close(self) -> None:
        self.sock.close()


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[0] != "--socket" or argv[2] not in ("wal-archive", "wal-restore"):
        print(__doc__, file=sys.stderr)
        return 2
    socket_path, command, args = argv[1], argv[2], argv[3:]
    cluster_path = os.environ.get("CNPG_CLUSTER_JSON")
    cluster = open(cluster_path, "rb").read() if cluster_path else b"{}"  # noqa: SIM115
    try:
        connection = Connection(socket_path)
        try:
            connection.handshake()
            if command == "wal-archive":
                path = os.path.abspath(args[0])  # %p is relative to PGDATA, the command's cwd
                connection.call(
                    "/cnpgi.wal.v1.WAL/Archive", field(1, 2, cluster) + field(2, 2, path.encode())
                )
            else:
                mode = 2 if "--rewind" in args else 1
                destination = os.path.abspath(args[1])
                request = (
                    field(1, 2, cluster) + field(2, 2, args[0].encode()) + field(3, 2, destination.encode())
                )
                connection.call("/cnpgi.wal.v1.WAL/Restore", request + field(5, 0, mode))
        finally:
            connection.close()
    except RPCError as error:
        print(f"{command}: {error}", file=sys.stderr)
        # DATA_LOSS (a corrupt object): above 125, so that PostgreSQL aborts recovery rather than
        # taking the segment for "not archived" and ending recovery early at it.
        return 255 if error.status == DATA_LOSS else 1
    except OSError as error:
        print(f"{command}: cannot reach the plugin on {socket_path}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
