"""The sidecar's unix socket: created where CloudNativePG looks, with restrictive permissions,
replacing a stale socket but never a live one or a file that is not a socket."""

from __future__ import annotations

import socket
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from barman_cloud.errors import Conflict, InvalidInput
from plugin_grpc.metadata import DEFAULT_SOCKET_PATH, PLUGIN_NAME
from plugin_grpc.roles import Role
from plugin_grpc.server import PluginServer
from tests.plugin_grpc.conftest import CallLog

Serve = Callable[[Role], tuple[PluginServer, CallLog]]


def test_default_socket_is_the_plugin_name_under_plugins() -> None:
    assert DEFAULT_SOCKET_PATH == "/plugins/barman-cloud.cloudnative-pg.io"


async def test_socket_is_created_with_owner_and_group_access_only(serve: Serve, tmp_path: Path) -> None:
    server, _ = serve(Role.INSTANCE)
    path = tmp_path / "nested" / PLUGIN_NAME
    await server.start_unix(path)
    mode = path.stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o660
    await server.stop()
    assert not path.exists()


async def test_stale_socket_is_replaced(serve: Serve, tmp_path: Path) -> None:
    path = tmp_path / PLUGIN_NAME
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))  # bound, never listening, then abandoned: what a killed sidecar leaves
    dead.close()
    assert stat.S_ISSOCK(path.lstat().st_mode)
    server, _ = serve(Role.INSTANCE)
    await server.start_unix(path)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    finally:
        probe.close()


async def test_live_socket_is_not_taken_over(serve: Serve, tmp_path: Path) -> None:
    path = tmp_path / PLUGIN_NAME
    first, _ = serve(Role.INSTANCE)
    await first.start_unix(path)
    second, _ = serve(Role.INSTANCE)
    with pytest.raises(Conflict, match="another process is serving"):
        await second.start_unix(path)
    assert stat.S_ISSOCK(path.lstat().st_mode)


async def test_a_file_that_is_not_a_socket_is_left_alone(serve: Serve, tmp_path: Path) -> None:
    path = tmp_path / PLUGIN_NAME
    path.write_text("precious")
    server, _ = serve(Role.INSTANCE)
    with pytest.raises(InvalidInput, match="not a unix socket"):
        await server.start_unix(path)
    assert path.read_text() == "precious"
