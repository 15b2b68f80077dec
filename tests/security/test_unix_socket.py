"""The sidecar's unix socket: mode 0660 whatever the process umask, never reachable with other
permissions, and nothing found at its path is followed, replaced or removed unless it is a stale
socket of our own kind. (tests/plugin_grpc/test_unix_socket.py covers the default path, stale and
live sockets and a regular file in the way.)"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from barman_cloud.errors import InvalidInput
from plugin_grpc.metadata import PLUGIN_NAME
from plugin_grpc.roles import Role, assemble
from plugin_grpc.server import PluginServer


@pytest.fixture
async def servers() -> AsyncIterator[list[PluginServer]]:
    started: list[PluginServer] = []
    yield started
    for server in started:
        await server.stop()


@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    previous = os.umask(0o022)
    os.umask(previous)

    def set_umask(mask: int) -> None:
        os.umask(mask)

    yield set_umask
    os.umask(previous)


def _connects(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


@pytest.mark.parametrize("mask", [0o000, 0o002, 0o022, 0o077, 0o777], ids=oct)
async def test_socket_mode_does_not_depend_on_the_umask(
    tmp_path: Path, servers: list[PluginServer], umask: Callable[[int], None], mask: int
) -> None:
    directory = tmp_path / "plugins"
    directory.mkdir()
    umask(mask)
    server = PluginServer(assemble(Role.INSTANCE))
    servers.append(server)
    await server.start_unix(directory / PLUGIN_NAME)
    umask(0o022)
    st = (directory / PLUGIN_NAME).lstat()
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    assert _connects(directory / PLUGIN_NAME)
    # No staging left behind: the directory holds the socket only.
    assert os.listdir(directory) == [PLUGIN_NAME]


async def test_a_stale_socket_open_to_everyone_is_replaced_by_a_restricted_one(
    tmp_path: Path, servers: list[PluginServer], umask: Callable[[int], None]
) -> None:
    path = tmp_path / PLUGIN_NAME
    umask(0)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()
    os.chmod(path, 0o777)  # noqa: S103 - what a careless earlier process could leave
    server = PluginServer(assemble(Role.INSTANCE))
    servers.append(server)
    await server.start_unix(path)
    assert stat.S_IMODE(path.lstat().st_mode) == 0o660 and _connects(path)


def _stale_socket(path: Path) -> None:
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()


def _file(path: Path) -> None:
    path.write_text("precious")
    path.chmod(0o600)


def _directory(path: Path) -> None:
    path.mkdir()


@pytest.mark.parametrize(
    "target_kind",
    [_stale_socket, _file, _directory, None],
    ids=["stale socket", "file", "directory", "dangling"],
)
async def test_a_symlink_at_the_socket_path_is_not_followed(
    tmp_path: Path, servers: list[PluginServer], target_kind: Callable[[Path], None] | None
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = elsewhere / "target"
    if target_kind is not None:
        target_kind(target)
    before = {p.name: (p.lstat().st_mode, p.lstat().st_mtime_ns) for p in elsewhere.rglob("*")}
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    link = plugins / PLUGIN_NAME
    link.symlink_to(target)

    server = PluginServer(assemble(Role.INSTANCE))
    servers.append(server)
    with pytest.raises(InvalidInput, match="exists and is not a unix socket: remove it or choose another"):
        await server.start_unix(link)

    assert link.is_symlink() and os.readlink(link) == str(target)
    assert {p.name: (p.lstat().st_mode, p.lstat().st_mtime_ns) for p in elsewhere.rglob("*")} == before
    if target_kind is _file:
        assert target.read_text() == "precious"
    assert sorted(os.listdir(plugins)) == [PLUGIN_NAME]
    await server.stop()
    assert link.is_symlink()  # a server that never started removes nothing
