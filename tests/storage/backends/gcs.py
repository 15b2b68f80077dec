"""The gcs backend for the contract suite: a GCSStore on the session's fake-gcs-server, over HTTP.

The endpoint is given as ``endpointURL`` (not ``STORAGE_EMULATOR_HOST``), with no credentials: the
store then sends no token and never looks for a metadata server.
"""

from __future__ import annotations

import pytest

from barman_cloud.storage import Store
from barman_cloud.storage.factory import open_store
from barman_cloud.storage.options import GoogleCredentials, StoreOptions
from tests.harness.object_stores import FakeGCS


async def open_test_store(request: pytest.FixtureRequest) -> Store:
    server: FakeGCS = request.getfixturevalue("fake_gcs")
    return open_store(
        f"gs://{server.bucket}/contract", GoogleCredentials(), StoreOptions(endpoint_url=server.endpoint)
    )
