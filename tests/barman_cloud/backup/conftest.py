from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest

from barman_cloud.format.keys import ServerLayout
from barman_cloud.storage import Store
from barman_cloud.storage.factory import open_store
from barman_cloud.storage.options import S3Credentials, StoreOptions
from tests.harness.object_stores import MotoS3
from tests.harness.postgres import PostgresServer


@pytest.fixture
async def fs_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = open_store(f"file://{tmp_path / 'bucket'}")
    yield store
    await store.close()


@pytest.fixture
def layout() -> ServerLayout:
    return ServerLayout("backups", "pg")


@pytest.fixture(scope="module")
def big_server() -> Iterator[PostgresServer]:
    """About 150 MB of table data: a backup that is still uploading when the test interferes."""
    server = PostgresServer(15)
    server.query(
        "CREATE TABLE big AS SELECT repeat(md5(g::text), 8) AS payload FROM generate_series(1, 500000) g"
    )
    server.query("CHECKPOINT")
    yield server
    server.destroy()


@pytest.fixture
async def s3_store(moto_s3: MotoS3) -> AsyncIterator[Store]:
    options = StoreOptions(endpoint_url=moto_s3.endpoint, part_size=5 * 1024 * 1024, max_concurrency=1)
    credentials = S3Credentials(moto_s3.access_key, moto_s3.secret_key, region=moto_s3.region)
    store = open_store(f"s3://{moto_s3.bucket}/backups-{uuid.uuid4().hex[:8]}", credentials, options)
    yield store
    await store.close()


@pytest.fixture
def s3(moto_s3: MotoS3) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=moto_s3.endpoint,
        aws_access_key_id=moto_s3.access_key,
        aws_secret_access_key=moto_s3.secret_key,
        region_name=moto_s3.region,
    )
