"""The gcs backend for the contract suite: a GCSStore on the session's fake-gcs-server, over HTTP.

The endpoint is given as ``endpointURL`` (not ``STORAGE_EMULATOR_HOST``), with no credentials: the
store then sends no token and never looks for a metadata server.
"""

from __future__ import annotations

import io

import aiohttp
import pytest

from barman_cloud.storage import Store
from barman_cloud.storage.factory import open_store
from barman_cloud.storage.gcs import GCSStore
from barman_cloud.storage.integrity import CHECKSUM_METADATA
from barman_cloud.storage.options import GoogleCredentials, StoreOptions
from tests.harness.object_stores import FakeGCS


async def open_test_store(request: pytest.FixtureRequest) -> Store:
    server: FakeGCS = request.getfixturevalue("fake_gcs")
    return open_store(
        f"gs://{server.bucket}/contract", GoogleCredentials(), StoreOptions(endpoint_url=server.endpoint)
    )


async def overwrite_keeping_metadata(store: Store, key: str, data: bytes) -> None:
    """Replace the object's bytes but keep its custom metadata (our checksum), with one plain
    JSON-API upload (GCS computes a new MD5 of its own, our checksum goes stale)."""
    assert isinstance(store, GCSStore)
    info = await store.head(key)
    bucket = store.location.bucket
    async with aiohttp.ClientSession() as session:
        writer = aiohttp.MultipartWriter("related")
        metadata = {**info.metadata, **({CHECKSUM_METADATA: info.sha256} if info.sha256 else {})}
        writer.append_json({"name": key, "metadata": metadata})
        writer.append(io.BytesIO(data), {"Content-Type": "application/octet-stream"})
        url = f"{store._api_root}/upload/storage/v1/b/{bucket}/o"
        async with session.post(url, params={"uploadType": "multipart"}, data=writer) as response:
            assert response.status == 200, await response.text()
