"""``barman-cloud-plugin operator`` as its Deployment starts it: upstream's mutual-TLS flags,
``SIDECAR_IMAGE`` from the environment, and a Kubernetes API from a kubeconfig (kmock's
KubernetesEmulator over HTTP here: no schema validation, no RBAC). It serves CloudNativePG's
handshake and a LifecycleHook, and refuses to start without what it needs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from plugin_grpc.cnpg_caller import handshake, operator_channel, operator_client_context
from tests.harness.certificates import PKI
from tests.harness.processes import free_port, port_open
from tests.plugin_grpc.operator_side.conftest import (
    HANDSHAKE_TIMEOUT,
    SIDECAR_IMAGE,
    CloudNativePG,
    Kube,
    apply,
    load,
)

CLI = str(Path(sys.executable).with_name("barman-cloud-plugin"))


def _environment(**extra: str) -> dict[str, str]:
    """Ours, without anything that would point the operator at a real cluster or image."""
    cleaned = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SIDECAR_IMAGE", "KUBECONFIG", "KUBERNETES_SERVICE_HOST")
    }
    return {**cleaned, **extra}


def _kubeconfig(directory: Path, server: str) -> Path:
    path = directory / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "kmock", "cluster": {"server": server}}],
                "users": [{"name": "kmock", "user": {"token": "unused"}}],
                "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "kmock"}}],
                "current-context": "kmock",
            }
        )
    )
    return path


def _flags(pki: PKI, port: int) -> list[str]:
    files = pki.server_files()
    return [
        f"--server-address=127.0.0.1:{port}",
        f"--server-cert={files.server_cert}",
        f"--server-key={files.server_key}",
        f"--client-cert={files.client_ca}",
    ]


async def test_the_operator_process_serves_a_lifecycle_hook(kube: Kube, pki: PKI, tmp_path: Path) -> None:
    port = free_port()
    kubeconfig = _kubeconfig(tmp_path, str(kube.emulator.url).rstrip("/"))
    process = await asyncio.create_subprocess_exec(
        CLI, "operator", *_flags(pki, port),
        env=_environment(SIDECAR_IMAGE=SIDECAR_IMAGE, KUBECONFIG=str(kubeconfig)),
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        for _ in range(300):
            if port_open(port):
                break
            assert process.returncode is None, f"the operator exited with {process.returncode}"
            await asyncio.sleep(0.1)
        context = operator_client_context(pki.client.cert, pki.client.key, pki.server_ca.cert_path)
        channel = operator_channel("127.0.0.1", port, context)
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                await handshake(channel)
            pod = load("pod-instance.json")
            patched = apply(pod, await CloudNativePG(channel).evaluate(load("cluster.json"), pod))
        finally:
            channel.close()
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, stderr.decode()
    sidecar = patched["spec"]["initContainers"][-1]
    assert (sidecar["name"], sidecar["image"]) == ("plugin-barman-cloud", SIDECAR_IMAGE)
    log = [json.loads(line) for line in stderr.decode().splitlines() if line.startswith("{")]
    assert {"msg": "injecting the sidecar image", "image": SIDECAR_IMAGE}.items() <= next(
        entry for entry in log if entry["msg"] == "injecting the sidecar image"
    ).items()


def test_the_operator_refuses_to_start_without_sidecar_image(pki: PKI) -> None:
    result = subprocess.run(
        [CLI, "operator", *_flags(pki, free_port())],
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "barman-cloud-plugin operator: SIDECAR_IMAGE is not set" in result.stderr
    assert "set the SIDECAR_IMAGE environment variable" in result.stderr


def test_the_operator_refuses_to_start_without_a_kubernetes_api(pki: PKI, tmp_path: Path) -> None:
    missing = tmp_path / "no-kubeconfig"
    result = subprocess.run(
        [CLI, "operator", *_flags(pki, free_port())],
        env=_environment(SIDECAR_IMAGE=SIDECAR_IMAGE, KUBECONFIG=str(missing)),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "no usable Kubernetes API configuration" in result.stderr
    assert "--kubeconfig" in result.stderr
