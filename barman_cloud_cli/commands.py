"""The long-running processes and the quick start, behind the argument parser of ``main``.

Imports are local to each command so that the startup probe (``healthcheck``, run every second
until the sidecar answers) loads only what it uses.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path


def run_operator(args: argparse.Namespace) -> int:
    from barman_cloud_operator import process

    config = process.OperatorConfig(
        server_address=args.server_address,
        server_cert=args.server_cert,
        server_key=args.server_key,
        client_cert=args.client_cert,
        plugin_path=args.plugin_path,
        sidecar_image=args.sidecar_image,
        kubeconfig=args.kubeconfig,
        health_probe_bind_address=args.health_probe_bind_address,
        leader_elect=args.leader_elect,
        metrics_bind_address=args.metrics_bind_address,
    )
    config.validate()  # refuse bad flags, TLS files or a missing SIDECAR_IMAGE before anything starts
    asyncio.run(process.run(config))
    return 0


def _run_sidecar(args: argparse.Namespace, role_name: str) -> int:
    from barman_cloud_cli.sidecars import run_sidecar

    return run_sidecar(args, role_name)


def run_instance(args: argparse.Namespace) -> int:
    return _run_sidecar(args, "instance")


def run_restore(args: argparse.Namespace) -> int:
    return _run_sidecar(args, "restore")


def run_healthcheck(args: argparse.Namespace) -> int:
    from plugin_grpc.healthcheck import check_unix

    code, explanation = asyncio.run(check_unix(args.socket, timeout=args.timeout))
    print(explanation, file=sys.stderr if code else sys.stdout)
    return code


async def _wait_healthy(socket_path: str, process: asyncio.subprocess.Process, timeout: float = 30.0) -> None:
    from plugin_grpc.healthcheck import EXIT_SERVING, check_unix

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if process.returncode is not None:
            raise RuntimeError(f"the sidecar exited with status {process.returncode} before serving")
        code, _ = await check_unix(socket_path, timeout=2.0)
        if code == EXIT_SERVING:
            return
        if loop.time() > deadline:
            raise RuntimeError(f"the sidecar did not become healthy on {socket_path} within {timeout:.0f}s")
        await asyncio.sleep(0.1)


def _console_script() -> str:
    """Our own console script, beside the interpreter running us (the virtual environment's bin)."""
    beside = Path(sys.executable).with_name("barman-cloud-plugin")
    return str(beside) if beside.exists() else "barman-cloud-plugin"


def run_demo(args: argparse.Namespace) -> int:
    """The local quick start (barman_cloud_cli/demo.py)."""
    from barman_cloud_cli import demo

    return demo.run(args.log_level, args.file)
