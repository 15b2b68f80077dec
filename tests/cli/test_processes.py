"""The console script's processes, started as CloudNativePG's Pods start them, and its tools."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from grpclib.client import Channel

from barman_cloud import __version__
from plugin_grpc.cnpg_caller import handshake, operator_channel, operator_client_context
from plugin_grpc.healthcheck import EXIT_SERVING, check_unix
from plugin_grpc.metadata import PLUGIN_NAME
from tests.harness.certificates import PKI
from tests.harness.processes import free_port, port_open

CLI = str(Path(sys.executable).with_name("barman-cloud-plugin"))


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout, check=False)


async def _until(condition_met: object, process: asyncio.subprocess.Process, what: str) -> None:
    assert callable(condition_met)
    for _ in range(300):
        if await condition_met():
            return
        assert process.returncode is None, f"{what}: the process exited with {process.returncode}"
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what}: timed out")


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("instance", ["TYPE_WAL_SERVICE", "TYPE_BACKUP_SERVICE", "TYPE_METRICS"]),
        ("restore", ["TYPE_RESTORE_JOB", "TYPE_WAL_SERVICE"]),
    ],
)
async def test_sidecar_serves_until_sigterm_then_removes_its_socket(
    role: str, expected: list[str], tmp_path: Path
) -> None:
    socket_path = tmp_path / PLUGIN_NAME
    manifest = tmp_path / "store.yaml"
    manifest.write_text(
        "apiVersion: barmancloud.cnpg.io/v1\nkind: ObjectStore\nmetadata: {name: s}\n"
        f"spec: {{configuration: {{destinationPath: 'file://{tmp_path}/bucket'}}}}\n"
    )
    local = ["-f", str(manifest), "--server-name", "pg", "--spool-dir", str(tmp_path / "spool")]
    process = await asyncio.create_subprocess_exec(
        CLI,
        "--log-level",
        "debug",
        role,
        "--socket",
        str(socket_path),
        *local,
        stderr=asyncio.subprocess.PIPE,
    )

    async def healthy() -> bool:
        return (await check_unix(str(socket_path), timeout=2))[0] == EXIT_SERVING

    try:
        await _until(healthy, process, f"{role} sidecar health")
        channel = Channel(path=str(socket_path))
        try:
            assert (await handshake(channel)).capabilities == expected
        finally:
            channel.close()
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()
    assert not socket_path.exists()
    assert b'"msg": "shutting down"' in stderr


async def test_operator_serves_mutual_tls_on_its_server_address(pki: PKI, tmp_path: Path) -> None:
    files = pki.server_files()
    # The operator refuses to start without a Kubernetes API configuration; this test never calls it.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: unused}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n"
    )
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        CLI, "operator", f"--server-address=127.0.0.1:{port}", f"--server-cert={files.server_cert}",
        f"--server-key={files.server_key}", f"--client-cert={files.client_ca}",
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "SIDECAR_IMAGE": "registry.example/plugin:test", "KUBECONFIG": str(kubeconfig)},
    )  # fmt: skip

    async def listening() -> bool:
        return port_open(port)

    try:
        await _until(listening, process, "operator listener")
        context = operator_client_context(pki.client.cert, pki.client.key, pki.server_ca.cert_path)
        channel = operator_channel("127.0.0.1", port, context)
        try:
            result = await handshake(channel)
        finally:
            channel.close()
        assert "TYPE_LIFECYCLE_SERVICE" in result.capabilities
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()
    assert b"controller started" in stderr


def test_operator_refuses_tcp_without_mutual_tls() -> None:
    result = run("operator", "--server-address=:9090")
    assert result.returncode == 1
    assert "the operator serves TCP only with mutual TLS" in result.stderr
    assert "--server-cert, --server-key, --client-cert" in result.stderr


def test_operator_refuses_missing_certificate_files(tmp_path: Path) -> None:
    missing = tmp_path / "absent.crt"
    result = run(
        "operator", f"--server-address=127.0.0.1:{free_port()}", f"--server-cert={missing}",
        f"--server-key={missing}", f"--client-cert={missing}",
    )  # fmt: skip
    assert result.returncode == 1
    assert "cannot load the gRPC server's TLS files" in result.stderr


def test_version() -> None:
    result = run("--version")
    assert result.stdout.strip() == f"barman-cloud-plugin {__version__}"


def test_demo_archives_backs_up_and_recovers_through_the_sidecars() -> None:
    """`make demo`: real sidecars, a real PostgreSQL archiving, a base backup, a point-in-time recovery."""
    result = run("--log-level", "warning", "demo", timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"CloudNativePG's handshake: {PLUGIN_NAME} {__version__}" in out
    assert "0 failed" in out
    assert "rows before the backup   20000" in out
    assert "rows after the backup    20000" in out
    assert "rows after the target        0" in out
    assert "point-in-time recovery succeeded" in out


def test_sidecar_accepts_upstreams_injected_arguments(tmp_path: Path) -> None:
    """`instance <additionalContainerArgs> --log-level=debug`, as the operator side injects it."""
    socket = str(tmp_path / "s")
    manifests = str(tmp_path / "absent.yaml")
    extra = ["--pprof-server=0.0.0.0:6061", "--log-level=debug"]
    result = run(
        "instance", "--socket", socket, *extra, "--file", manifests, "--server-name", "pg", timeout=60
    )
    # It got past argument parsing (the manifests file is what is missing), and said what it ignored.
    assert "unrecognized arguments" not in result.stderr
    assert "cannot read" in result.stderr and "--pprof-server=0.0.0.0:6061" in result.stderr


def test_sidecar_in_a_pod_needs_its_pod_name(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if k != "POD_NAME"}
    command = [CLI, "instance", "--socket", str(tmp_path / "s")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, env=environment)
    assert result.returncode == 1
    assert "POD_NAME is not set" in result.stderr
