"""The s3 backend for the contract suite: an S3Store on the session's moto server, over HTTP."""

from __future__ import annotations

import pytest

from barman_cloud.storage import Store
from barman_cloud.storage.factory import open_store
from barman_cloud.storage.options import S3Credentials, StoreOptions
from barman_cloud.storage.s3 import S3Store
from tests.harness.object_stores import MotoS3


def credentials(moto: MotoS3) -> S3Credentials:
    return S3Credentials(access_key_id=moto.access_key, secret_access_key=moto.secret_key, region=moto.region)


async def open_test_store(request: pytest.FixtureRequest) -> Store:
    moto: MotoS3 = request.getfixturevalue("moto_s3")
    return open_store(
        f"s3://{moto.bucket}/contract", credentials(moto), StoreOptions(endpoint_url=moto.endpoint)
    )


async def overwrite_keeping_metadata(store: Store, key: str, data: bytes) -> None:
    """Replace the object's bytes but keep its user metadata (its checksum), with a plain
    PutObject: what a storage fault or a careless tool does."""
    assert isinstance(store, S3Store)
    client = await store._get_client()
    head = await client.head_object(Bucket=store.bucket, Key=key)
    await client.put_object(Bucket=store.bucket, Key=key, Body=data, Metadata=head.get("Metadata") or {})
