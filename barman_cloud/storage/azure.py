"""Placeholder while the backend is being written (issue #3)."""

from __future__ import annotations

from barman_cloud.errors import InvalidInput
from barman_cloud.storage import StoreLocation
from barman_cloud.storage.options import AzureCredentials, StoreOptions


class AzureStore:
    def __init__(self, location: StoreLocation, credentials: AzureCredentials, options: StoreOptions) -> None:
        raise InvalidInput(f"the {location.provider.value} backend is not implemented yet (issue #3)")
