"""ObjectStores and Secrets read through a Kubernetes API: kmock's KubernetesEmulator over real
HTTP (no API server can run here). The emulator does not check schemas, RBAC or resourceVersions;
what is checked here is our requests, decoding, error mapping and cache."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio import client

from barman_cloud.config.secrets import resolve
from barman_cloud.errors import NotFound
from barman_cloud.storage.options import S3Credentials
from plugin_grpc.kube import KubernetesReader

STORE = {
    "apiVersion": "barmancloud.cnpg.io/v1",
    "kind": "ObjectStore",
    "metadata": {"name": "store", "namespace": "db"},
    "spec": {
        "configuration": {
            "destinationPath": "s3://backups/pg",
            "s3Credentials": {
                "accessKeyId": {"name": "aws", "key": "ACCESS_KEY_ID"},
                "secretAccessKey": {"name": "aws", "key": "ACCESS_SECRET_KEY"},
            },
        }
    },
}


@pytest.fixture
async def reader(kmock: Any) -> AsyncIterator[KubernetesReader]:
    kmock.resources["v1/secrets"] = {"kind": "Secret", "namespaced": True, "verbs": ["get", "list", "create"]}
    kmock.resources["barmancloud.cnpg.io/v1/objectstores"] = {
        "kind": "ObjectStore",
        "namespaced": True,
        "verbs": ["get", "list", "create"],
    }
    configuration = client.Configuration(host=str(kmock.url).rstrip("/"))
    api = client.ApiClient(configuration)
    secret: Any = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "aws", "namespace": "db"},
        "data": {
            "ACCESS_KEY_ID": base64.b64encode(b"AKIAK8S").decode(),
            "ACCESS_SECRET_KEY": base64.b64encode(b"from-the-api").decode(),
        },
    }
    await client.CoreV1Api(api).create_namespaced_secret("db", secret)
    await client.CustomObjectsApi(api).create_namespaced_custom_object(
        "barmancloud.cnpg.io", "v1", "db", "objectstores", STORE
    )
    reader = KubernetesReader(api, ttl=60)
    yield reader
    await reader.close()


async def test_object_store_and_secrets_resolve_through_the_api(reader: KubernetesReader) -> None:
    store = await reader.get_object_store("db", "store")
    resolved = await resolve(store, reader, environ={})
    assert resolved.credentials == S3Credentials(access_key_id="AKIAK8S", secret_access_key="from-the-api")


async def test_missing_objects_are_not_found(reader: KubernetesReader) -> None:
    with pytest.raises(NotFound, match="ObjectStore db/absent does not exist"):
        await reader.get_object_store("db", "absent")
    with pytest.raises(NotFound, match="Secret db/absent does not exist"):
        await reader.get_secret("db", "absent")


async def test_reads_are_cached_within_the_ttl(reader: KubernetesReader, kmock: Any) -> None:
    await reader.get_secret("db", "aws")
    before = len(kmock)
    await reader.get_secret("db", "aws")
    await reader.get_secret("db", "aws")
    assert len(kmock) == before
    reader.forget("db", "aws")
    await reader.get_secret("db", "aws")
    assert len(kmock) == before + 1
