"""The filesystem backend for the contract suite: a fresh directory per test."""

from __future__ import annotations

import pytest

from barman_cloud.storage import Store
from barman_cloud.storage.factory import open_store


async def open_test_store(request: pytest.FixtureRequest) -> Store:
    root = request.getfixturevalue("tmp_path") / "store"
    return open_store(f"file://{root}")
