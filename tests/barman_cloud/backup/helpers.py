"""Reading back what a backup wrote, and starting PostgreSQL on a restored directory.

Shared by the backup tests and the compatibility tests with barman-cloud.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from barman_cloud.format import compression
from barman_cloud.format.backup_info import BackupInfo, parse_backup_info
from barman_cloud.format.compression import Codec
from barman_cloud.storage import CommonPrefix, ObjectInfo, Store, read_all
from tests.harness.postgres import as_postgres
from tests.harness.processes import free_port, tail
from tests.harness.tools import postgres_bindir


class _Stream(io.RawIOBase):
    """A file object over decompressed bytes, for ``tarfile.open(mode="r|")``."""

    def __init__(self, data: bytes, codec: Codec | None) -> None:
        raw = data if codec is None else _decompress_single_stream(data, codec)
        self.size = len(raw)
        self._data = io.BytesIO(raw)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def _decompress_single_stream(data: bytes, codec: Codec) -> bytes:
    """Decompress, failing if the object holds more than one stream (format E-3)."""
    if codec is compression.GZIP:
        import zlib

        decompressor = zlib.decompressobj(31)
        out = decompressor.decompress(data)
        assert decompressor.eof and not decompressor.unused_data, "not exactly one gzip member"
        return out
    if codec is compression.BZIP2:
        import bz2

        bz = bz2.BZ2Decompressor()
        out = bz.decompress(data)
        assert bz.eof and not bz.unused_data, "not exactly one bzip2 stream"
        return out
    if codec is compression.LZ4:
        import lz4.frame

        lz = lz4.frame.LZ4FrameDecompressor()
        out = lz.decompress(data)
        assert lz.eof and not lz.unused_data, "not exactly one lz4 frame"
        return bytes(out)
    assert codec is compression.SNAPPY
    assert _only_first(data, b"\xff\x06\x00\x00sNaPpY"), "not exactly one snappy stream"
    return codec.decompress(data)


def _only_first(data: bytes, identifier: bytes) -> bool:
    """The snappy stream identifier chunk appears once, at the start (walking the chunks)."""
    position, seen = 0, 0
    while position < len(data):
        kind = data[position]
        length = int.from_bytes(data[position + 1 : position + 4], "little")
        if kind == 0xFF:
            seen += 1
            if position != 0:
                return False
        position += 4 + length
    return seen == 1 and position == len(data)


def codec_of(key: str) -> Codec | None:
    for codec in compression.BACKUP_CODECS:
        if key.endswith(".tar" + codec.suffix):
            return codec
    assert key.endswith(".tar"), key
    return None


def read_tar(data: bytes, codec: Codec | None) -> list[tuple[tarfile.TarInfo, bytes]]:
    """Every member (and its content) of one archive object, read the way barman reads it:
    Python's tarfile in stream mode."""
    members = []
    stream = _Stream(data, codec)
    with tarfile.open(fileobj=stream, mode="r|") as archive:
        for member in archive:
            content = b""
            if member.isfile():
                extracted = archive.extractfile(member)
                assert extracted is not None
                content = extracted.read()
            members.append((member, content))
        # Two zero blocks end the archive, padded to a 10240-byte record; nothing after that.
        end = archive.offset + 2 * tarfile.BLOCKSIZE
        assert stream.size == end + -end % tarfile.RECORDSIZE, "bytes after the end of the archive"
    return members


async def object_keys(store: Store, prefix: str) -> list[str]:
    return [entry.key async for entry in store.list(prefix) if isinstance(entry, ObjectInfo)]


async def archive_members(store: Store, key: str) -> list[tuple[tarfile.TarInfo, bytes]]:
    return read_tar(await read_all(store, key), codec_of(key))


async def backup_info(store: Store, key: str) -> BackupInfo:
    return parse_backup_info(await read_all(store, key))


@dataclass
class RecordingStore:
    """A real store, with a record of the keys written, in order (what reached the store)."""

    store: Store
    written: list[str] = field(default_factory=list)
    bodies: dict[str, list[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.location = self.store.location
        self.features = self.store.features

    async def put(
        self,
        key: str,
        data: bytes | AsyncIterable[bytes],
        *,
        size_hint: int | None = None,
        metadata: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        info = await self.store.put(key, data, size_hint=size_hint, metadata=metadata, tags=tags)
        self.written.append(key)
        if isinstance(data, bytes):
            self.bodies.setdefault(key, []).append(data)
        return info

    def get(self, key: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        return self.store.get(key, start=start, end=end)

    async def head(self, key: str) -> ObjectInfo:
        return await self.store.head(key)

    def list(self, prefix: str, *, delimiter: str | None = None) -> AsyncIterator[ObjectInfo | CommonPrefix]:
        return self.store.list(prefix, delimiter=delimiter)

    async def delete_many(self, keys: Iterable[str]) -> None:
        await self.store.delete_many(keys)

    async def close(self) -> None:
        await self.store.close()


def backup_sessions(conninfo: str) -> int:
    """Sessions of barman_cloud_backup still connected (a non-exclusive backup lives in one)."""
    with psycopg.connect(conninfo, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'barman_cloud_backup'"
        ).fetchone()
    assert row is not None
    return int(row[0])


class RestoredServer:
    """PostgreSQL started on a directory restored from a backup, recovering with ``restore_command``
    until the end of the archive (then promoted)."""

    def __init__(
        self, version: int, datadir: Path, restore_command: str, settings: dict[str, str] | None = None
    ):
        self.version = version
        self.datadir = datadir
        self.bindir = postgres_bindir(version)
        self.port = free_port()
        self.socket_dir = datadir.parent / f"sockets-{self.port}"
        self.log_path = datadir.parent / f"restored-{self.port}.log"
        subprocess.run(as_postgres(["mkdir", "-p", str(self.socket_dir)]), check=True)
        conf = {
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "archive_mode": "'off'",
            "restore_command": "'" + restore_command.replace("'", "''") + "'",
            **(settings or {}),
        }
        with open(datadir / "postgresql.auto.conf", "a") as handle:
            handle.writelines(f"{name} = {value}\n" for name, value in conf.items())
        (datadir / "recovery.signal").touch()
        if os.geteuid() == 0:
            for path in (datadir / "postgresql.auto.conf", datadir / "recovery.signal"):
                shutil.chown(path, "postgres", "postgres")
        self._pg_ctl("start", "-w", "-t", "120", "-l", str(self.log_path))

    def _pg_ctl(self, *args: str) -> None:
        result = subprocess.run(
            as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), *args]),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(f"pg_ctl {args[0]} failed: {result.stderr}\n{tail(self.log_path, 60)}")

    @property
    def conninfo(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def query(self, statement: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.conninfo, autocommit=True) as connection:
            cursor = connection.execute(statement.encode())
            return cursor.fetchall() if cursor.description else []

    def wait_promoted(self, timeout: float = 120) -> None:
        """Recovery replays every archived WAL file, then the server promotes itself."""
        deadline = time.monotonic() + timeout
        while self.query("SELECT pg_is_in_recovery()")[0][0]:
            assert time.monotonic() < deadline, f"still recovering:\n{tail(self.log_path, 40)}"
            time.sleep(0.2)

    def stop(self) -> None:
        if (self.datadir / "postmaster.pid").exists():
            self._pg_ctl("stop", "-m", "fast", "-w")


def write_script(path: Path, body: str, env: Mapping[str, str] | None = None) -> Path:
    """An executable shell script the postgres user can run (archive/restore commands)."""
    exports = "".join(f"export {name}='{value}'\n" for name, value in (env or {}).items())
    path.write_text(f"#!/bin/sh\n{exports}exec {body}\n")
    path.chmod(0o755)
    return path
