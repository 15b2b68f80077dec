"""The long-running processes and the quick start, behind the argument parser of ``main``.

Imports are local to each command so that the startup probe (``healthcheck``, run every second
until the sidecar answers) loads only what it uses.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import tempfile
from pathlib import Path


def run_operator(args: argparse.Namespace) -> int:
    from barman_cloud_operator import process

    config = process.OperatorConfig(
        server_address=args.server_address,
        server_cert=args.server_cert,
        server_key=args.server_key,
        client_cert=args.client_cert,
        plugin_path=args.plugin_path,
    )
    config.tls_files()  # refuse a bad flag combination before anything starts
    asyncio.run(process.run(config))
    return 0


def _run_sidecar(socket_path: str, role_name: str) -> int:
    from plugin_grpc.roles import Role, assemble
    from plugin_grpc.server import PluginServer, serve_until_signalled

    async def serve() -> None:
        server = PluginServer(assemble(Role(role_name)))
        await server.start_unix(socket_path)
        await serve_until_signalled(server)

    asyncio.run(serve())
    return 0


def run_instance(args: argparse.Namespace) -> int:
    return _run_sidecar(args.socket, "instance")


def run_restore(args: argparse.Namespace) -> int:
    return _run_sidecar(args.socket, "restore")


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
    """Start the instance sidecar as its own process, then be CloudNativePG for a moment."""
    from grpclib.client import Channel

    from plugin_grpc.cnpg_caller import handshake

    async def demo() -> None:
        with tempfile.TemporaryDirectory(prefix="barman-cloud-plugin-demo-") as workdir:
            socket_path = str(Path(workdir) / "barman-cloud.cloudnative-pg.io")
            command = [_console_script(), "--log-level", args.log_level, "instance", "--socket", socket_path]
            print(f"starting the instance sidecar: {' '.join(command)}")
            process = await asyncio.create_subprocess_exec(*command)
            try:
                await _wait_healthy(socket_path, process)
                channel = Channel(path=socket_path)
                try:
                    result = await handshake(channel)
                finally:
                    channel.close()
            finally:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
                await process.wait()
        meta = result.metadata
        print(f"\nCloudNativePG's handshake with the instance sidecar ({socket_path}):")
        print(f"  plugin        {meta.name} {meta.version} ({meta.display_name}, {meta.maturity})")
        print(f"  capabilities  {', '.join(result.capabilities)}")
        for service, rpcs in result.services.items():
            print(f"  {service:<13} {', '.join(rpcs)}")
        print(f"  probe         ready={result.ready}")
        print(f"\nthe sidecar stopped with status {process.returncode}")
        print("WAL archiving, backups and restores arrive with issues #4-#6; see README.md.")

    asyncio.run(demo())
    return 0
