"""The azure backend for the contract suite: Azurite over HTTP, the way upstream tests it.

The store is opened through the factory with an Azurite-style destination
(``http://127.0.0.1:<port>/devstoreaccount1/<container>/contract``) and the emulator's connection
string. ``single_put_max`` is lowered so that the suite's 20 MiB stream without a size hint goes
through staged blocks too, and the listing page size is lowered so that its 2,500 keys cross
pages.
"""

from __future__ import annotations

import contextlib

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob.aio import BlobServiceClient

from barman_cloud.storage import Store
from barman_cloud.storage.azure import AzureStore
from barman_cloud.storage.factory import open_store
from barman_cloud.storage.options import AzureCredentials, StoreOptions
from tests.harness.object_stores import Azurite

MiB = 1024 * 1024
CONTRACT_OPTIONS = StoreOptions(single_put_max=8 * MiB)
LIST_PAGE_SIZE = 1000

_created: set[tuple[int, str]] = set()


async def ensure_container(azurite: Azurite, container: str) -> None:
    """Create ``container`` on this Azurite once (the store itself never creates containers)."""
    if (azurite.port, container) in _created:
        return
    async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        with contextlib.suppress(ResourceExistsError):
            await service.create_container(container)
    _created.add((azurite.port, container))


async def open_test_store(request: pytest.FixtureRequest) -> Store:
    azurite: Azurite = request.getfixturevalue("azurite")
    await ensure_container(azurite, azurite.container)
    store = open_store(
        f"{azurite.endpoint}/{azurite.container}/contract",
        AzureCredentials(connection_string=azurite.connection_string),
        CONTRACT_OPTIONS,
    )
    assert isinstance(store, AzureStore)
    store.list_page_size = LIST_PAGE_SIZE
    return store


async def overwrite_keeping_metadata(store: Store, key: str, data: bytes) -> None:
    """Replace the blob's bytes but keep its metadata (its checksum), with the SDK directly."""
    assert isinstance(store, AzureStore)
    blob = store._blob(key)
    properties = await blob.get_blob_properties()
    await blob.upload_blob(data, overwrite=True, metadata=dict(properties.metadata or {}))
