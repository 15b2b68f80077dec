"""The operator-side endpoint accepts only what CloudNativePG's operator presents: TLS 1.3 with a
client certificate from the configured CA. Certificates rotated on disk are served on the next
connection without a restart (cert-manager renews them every 75 days in the chart)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from grpclib.exceptions import GRPCError, StreamTerminatedError

from plugin_grpc.cnpg_caller import handshake, operator_channel, operator_client_context
from plugin_grpc.roles import Role
from plugin_grpc.server import PluginServer
from plugin_grpc.tls import ServerTLSFiles
from tests.harness.certificates import PKI, CertificateAuthority
from tests.plugin_grpc.conftest import CallLog

Serve = Callable[[Role], tuple[PluginServer, CallLog]]
REFUSED = (ssl.SSLError, OSError, GRPCError, StreamTerminatedError, asyncio.TimeoutError)


async def _handshake(port: int, context: ssl.SSLContext) -> list[str]:
    channel = operator_channel("127.0.0.1", port, context)
    try:
        async with asyncio.timeout(10):
            return (await handshake(channel)).capabilities
    finally:
        channel.close()


async def _started(serve: Serve, files: ServerTLSFiles) -> tuple[PluginServer, CallLog, int]:
    server, calls = serve(Role.OPERATOR)
    await server.start_tcp("127.0.0.1", 0, files)
    assert server.port is not None
    return server, calls, server.port


def _replace(path: Path, content: bytes) -> None:
    # Like a Secret volume update: the new file appears under the same name at once.
    staging = path.with_suffix(".new")
    staging.write_bytes(content)
    os.replace(staging, path)


def _client(cert: Path, key: Path | None, server_ca: Path, *, tls12_only: bool = False) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls12_only:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
    if key is not None:
        context.load_cert_chain(cert, key)
    context.load_verify_locations(cafile=server_ca)
    context.set_alpn_protocols(["h2"])
    return context


async def test_server_negotiates_tls13_and_h2(serve: Serve, pki: PKI) -> None:
    _, _, port = await _started(serve, pki.server_files())
    context = operator_client_context(pki.client.cert, pki.client.key, pki.server_ca.cert_path)
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="barman-cloud")
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        assert ssl_object.version() == "TLSv1.3"
        assert ssl_object.selected_alpn_protocol() == "h2"
    finally:
        writer.close()
        # The server has already sent its HTTP/2 SETTINGS: a close_notify race, not a failure.
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()


async def test_client_without_certificate_is_refused(serve: Serve, pki: PKI) -> None:
    _, calls, port = await _started(serve, pki.server_files())
    with pytest.raises(REFUSED):
        await _handshake(port, _client(pki.client.cert, None, pki.server_ca.cert_path))
    assert calls == []


async def test_client_certificate_from_another_ca_is_refused(serve: Serve, pki: PKI, tmp_path: Path) -> None:
    _, calls, port = await _started(serve, pki.server_files())
    stranger = CertificateAuthority(tmp_path / "stranger", "stranger").issue(
        "client", "intruder", server=False
    )
    with pytest.raises(REFUSED):
        await _handshake(port, _client(stranger.cert, stranger.key, pki.server_ca.cert_path))
    assert calls == []


async def test_client_certificate_pinned_by_the_client_secret_is_accepted(
    serve: Serve, pki: PKI, tmp_path: Path
) -> None:
    """With a CA Issuer, the client Secret's ``tls.crt`` (the operator's --client-cert) is a leaf,
    not a root: that exact certificate is trusted, another leaf of the same CA is not."""
    files = pki.server_files()
    _replace(files.client_ca, pki.client.cert.read_bytes())
    _, _, port = await _started(serve, files)
    client = pki.client
    assert await _handshake(port, operator_client_context(client.cert, client.key, pki.server_ca.cert_path))
    sibling = pki.client_ca.issue("sibling", "another-client", server=False)
    with pytest.raises(REFUSED):
        await _handshake(port, _client(sibling.cert, sibling.key, pki.server_ca.cert_path))


async def test_tls12_client_is_refused(serve: Serve, pki: PKI) -> None:
    _, calls, port = await _started(serve, pki.server_files())
    with pytest.raises(REFUSED):
        await _handshake(
            port, _client(pki.client.cert, pki.client.key, pki.server_ca.cert_path, tls12_only=True)
        )
    assert calls == []


async def test_plaintext_client_is_refused(serve: Serve, pki: PKI) -> None:
    from grpclib.client import Channel

    from plugin_grpc.cnpg_caller import handshake as plain_handshake

    _, calls, port = await _started(serve, pki.server_files())
    channel = Channel("127.0.0.1", port)
    try:
        with pytest.raises(REFUSED):
            async with asyncio.timeout(10):
                await plain_handshake(channel)
    finally:
        channel.close()
    assert calls == []


async def test_rotated_server_certificate_is_served_on_the_next_connection(
    serve: Serve, pki: PKI, tmp_path: Path
) -> None:
    files = pki.server_files()
    server, _, port = await _started(serve, files)
    client = pki.client
    assert await _handshake(port, operator_client_context(client.cert, client.key, pki.server_ca.cert_path))

    renewed_ca = CertificateAuthority(tmp_path / "renewed", "renewed-server")
    renewed = renewed_ca.issue("server", "barman-cloud", server=True)
    _replace(files.server_key, renewed.key.read_bytes())
    _replace(files.server_cert, renewed.cert.read_bytes())

    # A client trusting only the new CA gets in; one trusting only the old CA no longer does.
    assert await _handshake(port, operator_client_context(client.cert, client.key, renewed_ca.cert_path))
    with pytest.raises(REFUSED):
        await _handshake(port, operator_client_context(client.cert, client.key, pki.server_ca.cert_path))
    assert server.tls is not None and server.tls.reloads == 1


async def test_rotated_client_ca_is_enforced_on_the_next_connection(
    serve: Serve, pki: PKI, tmp_path: Path
) -> None:
    files = pki.server_files()
    _, _, port = await _started(serve, files)
    new_client_ca = CertificateAuthority(tmp_path / "renewed", "renewed-client")
    new_client = new_client_ca.issue("client", "barman-cloud-client", server=False)
    _replace(files.client_ca, new_client_ca.cert_path.read_bytes())

    assert await _handshake(
        port, operator_client_context(new_client.cert, new_client.key, pki.server_ca.cert_path)
    )
    with pytest.raises(REFUSED):
        await _handshake(
            port, operator_client_context(pki.client.cert, pki.client.key, pki.server_ca.cert_path)
        )


async def test_half_written_rotation_keeps_the_previous_certificates(serve: Serve, pki: PKI) -> None:
    files = pki.server_files()
    server, _, port = await _started(serve, files)
    _replace(files.server_cert, b"-----BEGIN CERTIFICATE-----\ntruncated")
    context = operator_client_context(pki.client.cert, pki.client.key, pki.server_ca.cert_path)
    assert await _handshake(port, context)
    assert server.tls is not None and server.tls.reloads == 0
