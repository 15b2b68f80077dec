from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest

from barman_cloud.format.keys import ServerLayout
from barman_cloud.storage import CommonPrefix, ObjectInfo, Store
from barman_cloud.storage.factory import open_store


class CountingStore:
    """A real store, with the number of requests of each kind counted (not a mock: every call
    goes to the wrapped store)."""

    def __init__(self, store: Store) -> None:
        self.inner = store
        self.location = store.location
        self.features = store.features
        self.calls: Counter[str] = Counter()

    def get(self, key: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        self.calls["get"] += 1
        return self.inner.get(key, start=start, end=end)

    async def head(self, key: str) -> ObjectInfo:
        self.calls["head"] += 1
        return await self.inner.head(key)

    def list(self, prefix: str, *, delimiter: str | None = None) -> AsyncIterator[ObjectInfo | CommonPrefix]:
        self.calls["list"] += 1
        return self.inner.list(prefix, delimiter=delimiter)

    async def put(self, key: str, data: bytes | AsyncIterable[bytes], **kwargs: Any) -> ObjectInfo:
        return await self.inner.put(key, data, **kwargs)

    async def delete_many(self, keys: Iterable[str]) -> None:
        self.calls["delete_many"] += 1
        await self.inner.delete_many(keys)

    async def close(self) -> None:
        await self.inner.close()


@pytest.fixture
async def fs_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = open_store(f"file://{tmp_path / 'bucket'}")
    yield store
    await store.close()


@pytest.fixture
def layout() -> ServerLayout:
    return ServerLayout("", "pg")
