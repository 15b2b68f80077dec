"""Fault injection: a fault proxy (tests/harness/fault_proxy.py) in front of each real emulator,
stores that talk through it (short client timeouts, so that stalls cost seconds), direct stores to
check what really is in the bucket, and the table of counts printed at the end of the session."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from barman_cloud.format.keys import ServerLayout
from barman_cloud.storage import Store
from barman_cloud.storage.factory import open_store
from barman_cloud.storage.location import parse_destination
from barman_cloud.storage.options import (
    AzureCredentials,
    Credentials,
    GoogleCredentials,
    S3Credentials,
    StoreOptions,
)
from tests.compat.conftest import _ensure_container
from tests.faults import ledger
from tests.harness.fault_proxy import FaultProxy, Flavour
from tests.harness.object_stores import AZURITE_ACCOUNT, AZURITE_KEY, Azurite, FakeGCS, MotoS3

STORES = ["s3", "azure", "gcs"]
# Client timeouts of the stores under test: a stalled request costs READ_TIMEOUT, not a minute.
CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 2.0
MAX_ATTEMPTS = 4


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = ledger.table()
    if not lines:
        return
    terminalreporter.section("fault injection: what was injected, attempted and lost")
    for line in lines:
        terminalreporter.write_line(line)
    terminalreporter.write_line(
        "acked-missing: acknowledged to the caller (PostgreSQL, WAL.Archive, a backup listed DONE, a "
        "restore) but not complete and byte-identical afterwards; the tests assert it is 0."
    )


def _azure_connection_string(endpoint: str) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={endpoint};"
    )


@pytest.fixture(scope="session")
def s3_proxy(moto_s3: MotoS3) -> Iterator[FaultProxy]:
    proxy = FaultProxy(moto_s3.port, "s3").start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="session")
def azure_proxy(azurite: Azurite) -> Iterator[FaultProxy]:
    proxy = FaultProxy(azurite.port, "azure").start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="session")
def gcs_proxy(fake_gcs: FakeGCS) -> Iterator[FaultProxy]:
    proxy = FaultProxy(fake_gcs.port, "gcs").start()
    yield proxy
    proxy.stop()


@dataclass
class Target:
    """One emulator, its proxy, and a fresh prefix in its bucket for one test."""

    name: str
    proxy: FaultProxy
    upstream: str
    """The emulator's own endpoint (``http://127.0.0.1:port``)."""
    prefix: str
    server: str = "pg"
    _stores: list[Store] = field(default_factory=list)

    @property
    def flavour(self) -> Flavour:
        return self.proxy.flavour

    def destination(self, via_proxy: bool) -> str:
        if self.name == "azure":
            endpoint = self.proxy.endpoint if via_proxy else self.upstream
            return f"{endpoint}/{AZURITE_ACCOUNT}/backups/{self.prefix}"
        scheme = "s3" if self.name == "s3" else "gs"
        return f"{scheme}://backups/{self.prefix}"

    def _endpoint(self, via_proxy: bool) -> str:
        base = self.proxy.endpoint if via_proxy else self.upstream
        return f"{base}/{AZURITE_ACCOUNT}" if self.name == "azure" else base

    def credentials(self, via_proxy: bool) -> Credentials:
        if self.name == "s3":
            return S3Credentials("testing-access-key", "testing-secret-key", region="us-east-1")
        if self.name == "azure":
            return AzureCredentials(connection_string=_azure_connection_string(self._endpoint(via_proxy)))
        return GoogleCredentials()

    def store(self, *, via_proxy: bool = True, **options: Any) -> Store:
        """A store through the proxy (short timeouts) or straight to the emulator (to check)."""
        settings: dict[str, Any] = {
            "connect_timeout": CONNECT_TIMEOUT,
            "read_timeout": READ_TIMEOUT,
            "max_attempts": MAX_ATTEMPTS,
        }
        settings.update(options)
        if self.name != "azure":
            settings["endpoint_url"] = self._endpoint(via_proxy)
        store = open_store(self.destination(via_proxy), self.credentials(via_proxy), StoreOptions(**settings))
        self._stores.append(store)
        return store

    @property
    def layout(self) -> ServerLayout:
        return ServerLayout(parse_destination(self.destination(False)).prefix, self.server)

    def manifest(self, *, via_proxy: bool = True, extra: str = "", name: str = "faulty") -> str:
        """The ObjectStore (and Secret) a user would apply, through the proxy by default."""
        destination = self.destination(via_proxy)
        endpoint = self._endpoint(via_proxy)
        if self.name == "s3":
            credentials = (
                f"    endpointURL: {endpoint}\n"
                "    s3Credentials:\n"
                "      accessKeyId: {name: creds, key: ID}\n"
                "      secretAccessKey: {name: creds, key: SECRET}\n"
                "      region: {name: creds, key: REGION}\n"
            )
            secret = "stringData: {ID: testing-access-key, SECRET: testing-secret-key, REGION: us-east-1}"
        elif self.name == "azure":
            credentials = "    azureCredentials:\n      connectionString: {name: creds, key: CONN}\n"
            secret = f'stringData: {{CONN: "{_azure_connection_string(endpoint)}"}}'
        else:
            credentials = f"    endpointURL: {endpoint}\n"
            secret = "stringData: {}"
        return (
            f"apiVersion: barmancloud.cnpg.io/v1\nkind: ObjectStore\nmetadata: {{name: {name}}}\n"
            f"spec:\n  configuration:\n    destinationPath: {destination}\n{credentials}{extra}"
            f"---\napiVersion: v1\nkind: Secret\nmetadata: {{name: creds}}\n{secret}\n"
        )

    async def close(self) -> None:
        for store in self._stores:
            await store.close()


@pytest.fixture
async def target(request: pytest.FixtureRequest) -> AsyncIterator[Target]:
    """The store named by the test's ``store`` parameter, behind its proxy."""
    name = request.param if hasattr(request, "param") else request.getfixturevalue("store")
    proxy: FaultProxy = request.getfixturevalue(f"{name}_proxy")
    if name == "s3":
        upstream = request.getfixturevalue("moto_s3").endpoint
    elif name == "azure":
        azurite = request.getfixturevalue("azurite")
        await _ensure_container(azurite)
        upstream = f"http://127.0.0.1:{azurite.port}"
    else:
        upstream = request.getfixturevalue("fake_gcs").endpoint
    found = Target(name, proxy, upstream, f"faults-{uuid.uuid4().hex[:10]}")
    try:
        yield found
    finally:
        proxy.clear()
        await found.close()
