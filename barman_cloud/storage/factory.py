"""One ``Store`` per destination: picked by the URL's provider, built from resolved inputs."""

from __future__ import annotations

from typing import TypeVar

from barman_cloud.errors import InvalidInput
from barman_cloud.storage import Provider, Store
from barman_cloud.storage.location import parse_destination
from barman_cloud.storage.options import (
    AzureCredentials,
    Credentials,
    GoogleCredentials,
    S3Credentials,
    StoreOptions,
)

T = TypeVar("T", S3Credentials, AzureCredentials, GoogleCredentials)


def open_store(
    destination: str, credentials: Credentials = None, options: StoreOptions | None = None
) -> Store:
    """A store for ``destinationPath``. Backends are imported on demand (each pulls its SDK)."""
    location = parse_destination(destination)
    options = options or StoreOptions()
    if location.provider is Provider.FILESYSTEM:
        from barman_cloud.storage.filesystem import FilesystemStore

        return FilesystemStore(location)
    if location.provider is Provider.S3:
        from barman_cloud.storage.s3 import S3Store

        return S3Store(location, _expect(credentials, S3Credentials, destination), options)
    if location.provider is Provider.AZURE:
        from barman_cloud.storage.azure import AzureStore

        return AzureStore(location, _expect(credentials, AzureCredentials, destination), options)
    from barman_cloud.storage.gcs import GCSStore

    return GCSStore(location, _expect(credentials, GoogleCredentials, destination), options)


def _expect(credentials: Credentials, kind: type[T], destination: str) -> T:
    if credentials is None:
        return kind()
    if not isinstance(credentials, kind):
        raise InvalidInput(
            f"{type(credentials).__name__} given for {destination}",
            hint=f"this destination needs {kind.__name__}: check the ObjectStore's credentials section",
        )
    return credentials
