"""Tar archives built in the tests, harmless or hostile, compressed like barman's."""

from __future__ import annotations

import io
import tarfile
import time

from barman_cloud.format.compression import Codec


def member(
    name: str,
    data: bytes | None = None,
    *,
    kind: bytes = tarfile.REGTYPE,
    link: str = "",
    mode: int = 0o600,
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = int(time.time()) - 3600
    info.linkname = link
    if kind == tarfile.REGTYPE:
        info.size = len(data or b"")
    return info, data


def directory(name: str, mode: int = 0o700) -> tuple[tarfile.TarInfo, bytes | None]:
    return member(name, kind=tarfile.DIRTYPE, mode=mode)


def symlink(name: str, target: str) -> tuple[tarfile.TarInfo, bytes | None]:
    return member(name, kind=tarfile.SYMTYPE, link=target, mode=0o777)


def hardlink(name: str, target: str) -> tuple[tarfile.TarInfo, bytes | None]:
    return member(name, kind=tarfile.LNKTYPE, link=target)


def build(members: list[tuple[tarfile.TarInfo, bytes | None]], codec: Codec | None = None) -> bytes:
    """A PAX tar (barman's format) of ``members``, compressed as one stream by ``codec``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    body = raw.getvalue()
    return codec.compress(body) if codec else body
