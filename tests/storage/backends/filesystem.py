"""The filesystem backend for the contract suite: a fresh directory per test."""

from __future__ import annotations

import pytest

from barman_cloud.storage import Store
from barman_cloud.storage.factory import open_store
from barman_cloud.storage.filesystem import FilesystemStore


async def open_test_store(request: pytest.FixtureRequest) -> Store:
    root = request.getfixturevalue("tmp_path") / "store"
    return open_store(f"file://{root}")


async def overwrite_keeping_metadata(store: Store, key: str, data: bytes) -> None:
    """Change the object's bytes in place, as a disk fault would: its checksum attribute stays."""
    assert isinstance(store, FilesystemStore)
    with open(store.root / key, "r+b") as handle:
        handle.write(data)
        handle.truncate()
