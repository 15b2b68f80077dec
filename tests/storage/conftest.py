"""The contract suite's backends: each module in tests/storage/backends/ opens a Store on a real
service (or a directory) for one test. Tests use a unique key prefix, so the session's shared
emulators never mix their objects."""

from __future__ import annotations

import gc
import importlib
import uuid
from collections.abc import AsyncIterator

import pytest

from barman_cloud.storage import Store

BACKENDS = ["filesystem", "s3", "azure", "gcs"]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    module = importlib.import_module(f"tests.storage.backends.{request.param}")
    opened: Store = await module.open_test_store(request)
    try:
        yield opened
    finally:
        await opened.close()
        # Finalise what the test left for the garbage collector now, inside this test, rather
        # than at a random moment of a later one.
        gc.collect()


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses."""
    return f"contract/{uuid.uuid4().hex[:12]}/"
