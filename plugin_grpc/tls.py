"""TLS for the operator-side endpoint, as CloudNativePG dials it (cnpg-i-spec 5.1, 7).

TLS 1.3 only, a client certificate required and verified against the configured client CA (the
client Secret's ``tls.crt``), ALPN ``h2`` (grpc-go refuses a server without it). The certificate,
key and client CA are files mounted from Secrets that cert-manager rotates: every handshake
checks whether they changed on disk and, if so, the new ones are used from that connection on,
with no restart. A rotation caught half-written keeps the last good set until the files are
complete again.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from barman_cloud.errors import InvalidInput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerTLSFiles:
    """Paths of the server certificate and key, and of the CA bundle client certificates must chain to."""

    server_cert: Path
    server_key: Path
    client_ca: Path


def _signature(files: ServerTLSFiles) -> tuple[tuple[int, int, int], ...]:
    # stat() follows the ..data symlink swap Kubernetes does when a Secret volume is updated.
    result = []
    for path in (files.server_cert, files.server_key, files.client_ca):
        st = os.stat(path)
        result.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(result)


def build_server_context(files: ServerTLSFiles) -> ssl.SSLContext:
    """A server context with the mutual-TLS settings CloudNativePG expects."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(files.server_cert, files.server_key)
    context.load_verify_locations(cafile=files.client_ca)
    # The "client CA" is what CloudNativePG's client Secret holds in tls.crt: its own certificate,
    # self-signed with the chart's default Issuer, but a leaf issued by a CA otherwise. Go (upstream)
    # trusts any certificate of the pool as an anchor; OpenSSL only self-signed roots unless told.
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.set_alpn_protocols(["h2"])
    return context


class ReloadingServerContext:
    """An ``ssl.SSLContext`` whose certificates follow the files on disk.

    The context handed to the server only serves as an entry point: its SNI callback (which
    OpenSSL calls on every ClientHello, with or without a server name) moves each new connection
    to the newest good context. Certificate, key and trust store come from that context; TLS
    version and verification mode are the same in all of them.
    """

    def __init__(self, files: ServerTLSFiles) -> None:
        self.files = files
        self._lock = threading.Lock()
        try:
            self._signature = _signature(files)
            self._current = build_server_context(files)
        except (OSError, ssl.SSLError) as error:
            raise InvalidInput(
                f"cannot load the gRPC server's TLS files ({files.server_cert}, {files.server_key}, "
                f"client CA {files.client_ca})",
                hint=f"{error}; check --server-cert, --server-key and --client-cert and the mounted Secrets",
            ) from error
        self.context = build_server_context(files)
        self.context.sni_callback = self._on_client_hello
        self.reloads = 0
        self._rejected: object = None

    def current(self) -> ssl.SSLContext:
        """The context new connections get, reloading it first if the files changed."""
        with self._lock:
            try:
                signature = _signature(self.files)
            except OSError as error:
                self._warn_once(("missing",), error)
                return self._current
            if signature not in (self._signature, self._rejected):
                try:
                    self._current = build_server_context(self.files)
                except (OSError, ssl.SSLError) as error:
                    self._warn_once(signature, error)
                else:
                    self._signature = signature
                    self.reloads += 1
                    log.info("reloaded the gRPC server's TLS certificates", extra={"reloads": self.reloads})
            return self._current

    def _warn_once(self, signature: object, error: Exception) -> None:
        if signature != self._rejected:
            self._rejected = signature
            log.warning(
                "TLS files changed but cannot be loaded; serving the previous certificates until they can",
                extra={"error": str(error)},
            )

    def _on_client_hello(self, connection: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        connection.context = self.current()
