from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from barman_cloud.format.keys import ServerLayout
from barman_cloud.storage import Store
from barman_cloud.storage.factory import open_store

SEGMENT = 16 * 1024 * 1024


def segment_bytes(name: str, size: int = SEGMENT) -> bytes:
    """Deterministic content per name: WAL-like in size, different for every segment."""
    block = hashlib.sha256(name.encode()).digest() * 2048  # 64 KiB
    return (block * (size // len(block) + 1))[:size]


def make_pg_wal(root: Path, names: list[str], *, ready: bool = True) -> Path:
    pg_wal = root / "pg_wal"
    (pg_wal / "archive_status").mkdir(parents=True, exist_ok=True)
    for name in names:
        (pg_wal / name).write_bytes(segment_bytes(name))
        if ready:
            (pg_wal / "archive_status" / f"{name}.ready").touch()
    return pg_wal


@pytest.fixture
def fs_store(tmp_path: Path) -> Store:
    return open_store(f"file://{tmp_path / 'bucket'}")


@pytest.fixture
def layout() -> ServerLayout:
    return ServerLayout("archive", "pg")
