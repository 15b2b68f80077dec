"""The same bucket seen by barman-cloud 3.19 (its own CLIs, in their own virtual environment) and
by us (an ObjectStore manifest with its Secrets), on each emulator."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from barman_cloud.config.manifests import parse_manifests
from barman_cloud.config.secrets import resolve
from barman_cloud.format.keys import ServerLayout
from barman_cloud.storage import Store
from barman_cloud.storage.factory import open_store
from barman_cloud.storage.location import parse_destination
from tests.harness.object_stores import Azurite, FakeGCS, MotoS3
from tests.harness.tools import barman_cloud_bin

PROVIDERS = ["s3", "azure", "gcs"]
# Every compression runs on S3; on Azure and GCS two representative ones, the rest with FULL=1.
FAST_CODECS_ELSEWHERE = ("gzip", "lz4")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A conftest's collection hook sees the whole session's items: only this folder's are ours.
    here = Path(__file__).parent
    for item in items:
        if here not in item.path.parents:
            continue
        params = getattr(item, "callspec", None)
        if params is None or "codec" not in params.params or params.params.get("shared_bucket") == "s3":
            continue
        codec = params.params["codec"]
        if (codec.name if codec else "none") not in FAST_CODECS_ELSEWHERE:
            item.add_marker(pytest.mark.slow)


@dataclass
class SharedBucket:
    provider: str
    destination: str
    server: str
    barman_args: list[str]
    """Options every barman-cloud command needs before its positionals (provider, endpoint)."""
    barman_env: dict[str, str]
    manifest: str
    """What a user applies for us: the ObjectStore and its Secrets."""
    store: Store
    layout: ServerLayout

    def barman(self, command: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``barman-cloud-<command> [provider options] [args...]`` (args include positionals)."""
        result = subprocess.run(
            [str(barman_cloud_bin(f"barman-cloud-{command}")), *self.barman_args, *args],
            env={"PATH": "/usr/bin:/bin", **self.barman_env},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"barman-cloud-{command} failed ({result.returncode}): {result.stderr[-2000:]}"
            )
        return result


def _s3(moto: MotoS3, prefix: str) -> tuple[str, list[str], dict[str, str], str]:
    destination = f"s3://{moto.bucket}/{prefix}"
    manifest = f"""
apiVersion: barmancloud.cnpg.io/v1
kind: ObjectStore
metadata: {{name: shared}}
spec:
  configuration:
    destinationPath: {destination}
    endpointURL: {moto.endpoint}
    s3Credentials:
      accessKeyId: {{name: aws, key: ACCESS_KEY_ID}}
      secretAccessKey: {{name: aws, key: ACCESS_SECRET_KEY}}
      region: {{name: aws, key: REGION}}
---
apiVersion: v1
kind: Secret
metadata: {{name: aws}}
stringData: {{ACCESS_KEY_ID: {moto.access_key}, ACCESS_SECRET_KEY: {moto.secret_key}, REGION: {moto.region}}}
"""
    args = ["--cloud-provider", "aws-s3", "--endpoint-url", moto.endpoint]
    return destination, args, moto.env(), manifest


def _azure(azurite: Azurite, prefix: str) -> tuple[str, list[str], dict[str, str], str]:
    destination = f"{azurite.endpoint}/{azurite.container}/{prefix}"
    manifest = f"""
apiVersion: barmancloud.cnpg.io/v1
kind: ObjectStore
metadata: {{name: shared}}
spec:
  configuration:
    destinationPath: {destination}
    azureCredentials:
      connectionString: {{name: azure, key: AZURE_CONNECTION_STRING}}
---
apiVersion: v1
kind: Secret
metadata: {{name: azure}}
stringData: {{AZURE_CONNECTION_STRING: "{azurite.connection_string}"}}
"""
    env = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
    return destination, ["--cloud-provider", "azure-blob-storage"], env, manifest


def _gcs(gcs: FakeGCS, prefix: str) -> tuple[str, list[str], dict[str, str], str]:
    destination = f"gs://{gcs.bucket}/{prefix}"
    manifest = f"""
apiVersion: barmancloud.cnpg.io/v1
kind: ObjectStore
metadata: {{name: shared}}
spec:
  configuration:
    destinationPath: {destination}
    endpointURL: {gcs.endpoint}
"""
    env = {"STORAGE_EMULATOR_HOST": gcs.endpoint, "GOOGLE_CLOUD_PROJECT": gcs.project}
    return destination, ["--cloud-provider", "google-cloud-storage"], env, manifest


async def _ensure_container(azurite: Azurite) -> None:
    from azure.storage.blob.aio import BlobServiceClient

    async with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        container = service.get_container_client(azurite.container)
        if not await container.exists():
            await container.create_container()


@pytest.fixture(params=PROVIDERS)
async def shared_bucket(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SharedBucket]:
    prefix = f"compat-{uuid.uuid4().hex[:10]}"
    if request.param == "s3":
        destination, args, env, manifest = _s3(request.getfixturevalue("moto_s3"), prefix)
    elif request.param == "azure":
        azurite = request.getfixturevalue("azurite")
        await _ensure_container(azurite)
        destination, args, env, manifest = _azure(azurite, prefix)
    else:
        destination, args, env, manifest = _gcs(request.getfixturevalue("fake_gcs"), prefix)
    manifests = parse_manifests(manifest)
    resolved = await resolve(manifests.object_store(), manifests, environ={})
    store = open_store(resolved.destination, resolved.credentials, resolved.options)
    layout = ServerLayout(parse_destination(destination).prefix, "pg")
    try:
        yield SharedBucket(
            request.param, destination, "pg", args, {**env, "TMPDIR": str(tmp_path)}, manifest, store, layout
        )
    finally:
        await store.close()


async def provider_manifest(request: pytest.FixtureRequest, provider: str, prefix: str) -> tuple[str, str]:
    """A destination on ``provider``'s emulator (or a directory) and the ObjectStore manifest, with
    its Secrets, a user would apply for it."""
    if provider == "s3":
        destination, _, _, manifest = _s3(request.getfixturevalue("moto_s3"), prefix)
    elif provider == "azure":
        azurite = request.getfixturevalue("azurite")
        await _ensure_container(azurite)
        destination, _, _, manifest = _azure(azurite, prefix)
    elif provider == "gcs":
        destination, _, _, manifest = _gcs(request.getfixturevalue("fake_gcs"), prefix)
    else:
        raise ValueError(f"unknown provider {provider}")
    return destination, manifest
