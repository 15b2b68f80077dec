"""`barman-cloud-plugin healthcheck unix`, the sidecar's startup probe, run as a real process
against a real server: 0 SERVING, 1 RPC error, 2 UNKNOWN, 3 NOT_SERVING."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

from plugin_grpc.metadata import PLUGIN_NAME
from plugin_grpc.roles import Role
from plugin_grpc.server import PluginServer
from tests.plugin_grpc.conftest import CallLog

Serve = Callable[[Role], tuple[PluginServer, CallLog]]
CLI = str(Path(sys.executable).with_name("barman-cloud-plugin"))


async def _probe(socket_path: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        CLI, "healthcheck", "unix", "--socket", str(socket_path), "--timeout", "5",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, (stdout + stderr).decode()


async def test_exit_codes_follow_the_serving_status(serve: Serve, tmp_path: Path) -> None:
    socket_path = tmp_path / PLUGIN_NAME
    server, _ = serve(Role.INSTANCE)
    await server.start_unix(socket_path)
    assert await _probe(socket_path) == (0, f"{socket_path}: SERVING\n")
    server.set_serving(None)
    code, output = await _probe(socket_path)
    assert (code, output.strip()) == (2, f"{socket_path}: UNKNOWN")
    server.set_serving(False)
    code, output = await _probe(socket_path)
    assert (code, output.strip()) == (3, f"{socket_path}: NOT_SERVING")


async def test_exit_code_is_1_when_nothing_listens(tmp_path: Path) -> None:
    code, output = await _probe(tmp_path / "absent")
    assert code == 1
    assert "health check on" in output and "failed" in output
