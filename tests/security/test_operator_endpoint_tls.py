"""The operator-side endpoint as the CLI starts it (``barman-cloud-plugin operator`` with
upstream's flags): TCP only with mutual TLS 1.3. Plaintext HTTP/2, TLS 1.2, no client certificate
and a client certificate from another CA are all refused, before and after a certificate
rotation, and none of them reaches a handler or stops the endpoint from serving CloudNativePG.

tests/plugin_grpc/test_mutual_tls.py checks the same on an in-process server; this runs the
process a Deployment runs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from grpclib.client import Channel
from grpclib.exceptions import GRPCError, StreamTerminatedError

from plugin_grpc.cnpg_caller import handshake, operator_channel, operator_client_context
from tests.harness.certificates import PKI, CertificateAuthority
from tests.harness.processes import free_port, port_open

CLI = str(Path(sys.executable).with_name("barman-cloud-plugin"))
REFUSED = (ssl.SSLError, OSError, GRPCError, StreamTerminatedError, asyncio.TimeoutError)


@pytest.fixture
async def operator(pki: PKI, tmp_path: Path) -> AsyncIterator[tuple[int, asyncio.subprocess.Process]]:
    files = pki.server_files()
    # The operator needs a Kubernetes API configuration to start; the TLS checks never reach it.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: unused}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if k not in ("KUBERNETES_SERVICE_HOST",)}
    # A file, not a pipe nobody reads: a full pipe would block the operator's event loop.
    log = (tmp_path / "operator.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        CLI,
        "operator",
        f"--server-address=127.0.0.1:{port}",
        f"--server-cert={files.server_cert}",
        f"--server-key={files.server_key}",
        f"--client-cert={files.client_ca}",
        "--log-level=debug",
        stderr=log,
        stdin=asyncio.subprocess.DEVNULL,
        env={**environment, "SIDECAR_IMAGE": "registry.example/plugin:test", "KUBECONFIG": str(kubeconfig)},
    )
    try:
        for _ in range(600):
            if port_open(port):
                break
            assert process.returncode is None, (tmp_path / "operator.log").read_text()[-3000:]
            await asyncio.sleep(0.1)
        yield port, process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 60)
        log.close()


def _client(cert: Path | None, key: Path | None, server_ca: Path, *, tls12: bool = False) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if tls12:
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None and key is not None:
        context.load_cert_chain(cert, key)
    context.load_verify_locations(cafile=server_ca)
    context.set_alpn_protocols(["h2"])
    return context


async def _handshake(port: int, context: ssl.SSLContext) -> list[str]:
    channel = operator_channel("127.0.0.1", port, context)
    try:
        async with asyncio.timeout(15):
            return (await handshake(channel)).capabilities
    finally:
        channel.close()


async def _plaintext(port: int) -> None:
    channel = Channel("127.0.0.1", port)
    try:
        async with asyncio.timeout(15):
            await handshake(channel)
    finally:
        channel.close()


async def _tls_version(port: int, context: ssl.SSLContext) -> tuple[str | None, str | None]:
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="barman-cloud")
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        return ssl_object.version(), ssl_object.selected_alpn_protocol()
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()


async def _every_refusal(port: int, pki: PKI, server_ca: Path, stranger: CertificateAuthority) -> None:
    client = pki.client
    intruder = stranger.issue("intruder", "barman-cloud-client", server=False)
    with pytest.raises(REFUSED):
        await _plaintext(port)
    with pytest.raises(REFUSED):
        await _tls_version(port, _client(client.cert, client.key, server_ca, tls12=True))
    with pytest.raises(REFUSED):
        await _handshake(port, _client(client.cert, client.key, server_ca, tls12=True))
    with pytest.raises(REFUSED):
        await _handshake(port, _client(None, None, server_ca))
    with pytest.raises(REFUSED):
        await _handshake(port, _client(intruder.cert, intruder.key, server_ca))


async def test_only_mutual_tls13_gets_in(
    operator: tuple[int, asyncio.subprocess.Process], pki: PKI, tmp_path: Path
) -> None:
    port, process = operator
    stranger = CertificateAuthority(tmp_path / "stranger", "stranger")
    good = operator_client_context(pki.client.cert, pki.client.key, pki.server_ca.cert_path)

    assert await _tls_version(port, good) == ("TLSv1.3", "h2")
    await _every_refusal(port, pki, pki.server_ca.cert_path, stranger)
    assert "TYPE_LIFECYCLE_SERVICE" in await _handshake(port, good)

    # cert-manager renews the server certificate: the new one is served, the rules stay.
    files = pki.server_files()
    renewed_ca = CertificateAuthority(tmp_path / "renewed", "renewed-server")
    renewed = renewed_ca.issue("server", "barman-cloud", server=True)
    for source, target in ((renewed.key, files.server_key), (renewed.cert, files.server_cert)):
        staging = target.with_suffix(".new")
        staging.write_bytes(source.read_bytes())
        os.replace(staging, target)
    good = operator_client_context(pki.client.cert, pki.client.key, renewed_ca.cert_path)
    assert await _tls_version(port, good) == ("TLSv1.3", "h2")
    await _every_refusal(port, pki, renewed_ca.cert_path, stranger)
    assert "TYPE_LIFECYCLE_SERVICE" in await _handshake(port, good)
    assert process.returncode is None
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 60) == 0
    assert '"msg": "reloaded the gRPC server\'s TLS certificates"' in (tmp_path / "operator.log").read_text()
