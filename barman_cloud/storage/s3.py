"""Placeholder while the backend is being written (issue #3)."""

from __future__ import annotations

from barman_cloud.errors import InvalidInput
from barman_cloud.storage import StoreLocation
from barman_cloud.storage.options import S3Credentials, StoreOptions


class S3Store:
    def __init__(self, location: StoreLocation, credentials: S3Credentials, options: StoreOptions) -> None:
        raise InvalidInput(f"the {location.provider.value} backend is not implemented yet (issue #3)")
