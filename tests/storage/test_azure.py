"""The Azure backend beyond the shared contract, on real Azurite: metadata and blob index tags,
aborted uploads over an existing blob, credentials (key, SAS, wrong key, refused combinations),
endpoints, errors that never carry a secret, and TLS with a private CA (``endpointCA``).

The SDK itself (``observer``) is used only to look at what the Store API cannot show: blob index
tags and uncommitted blocks.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import ipaddress
import json
import logging
import shutil
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import ContainerSasPermissions, generate_container_sas
from azure.storage.blob.aio import BlobClient, BlobServiceClient, ContainerClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from barman_cloud.errors import Conflict, Forbidden, InvalidInput, NotFound, Unavailable
from barman_cloud.storage import CommonPrefix, ObjectInfo, Store, exists, read_all
from barman_cloud.storage.azure import AzureStore
from barman_cloud.storage.factory import open_store
from barman_cloud.storage.options import AzureCredentials, Encryption, StoreOptions
from tests.harness.certificates import CertificateAuthority
from tests.harness.object_stores import AZURITE_ACCOUNT, AZURITE_KEY, Azurite
from tests.harness.processes import ManagedProcess, free_port, port_open
from tests.harness.tools import azurite_blob, node
from tests.storage.backends.azure import ensure_container

KiB = 1024
MiB = 1024 * KiB
# A well-formed account key that is not Azurite's (base64 of 64 bytes, like a real one).
WRONG_KEY = "V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXlXcm9uZ0tleVdyb25nS2V5V3JvbmdLZXlXcm9uZ0s="
# Small parts so that a few MiB make a multi-block upload.
BLOCK_OPTIONS = StoreOptions(single_put_max=1 * MiB, part_size=256 * KiB, max_attempts=2)


def destination(azurite: Azurite, container: str | None = None) -> str:
    return f"{azurite.endpoint}/{container or azurite.container}/pgdata"


@pytest.fixture
def prefix() -> str:
    return f"azure/{uuid.uuid4().hex[:12]}/"


@pytest.fixture
async def store(azurite: Azurite) -> AsyncIterator[AzureStore]:
    await ensure_container(azurite, azurite.container)
    opened = open_store(
        destination(azurite), AzureCredentials(connection_string=azurite.connection_string), BLOCK_OPTIONS
    )
    assert isinstance(opened, AzureStore)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def observer(azurite: Azurite) -> AsyncIterator[ContainerClient]:
    """The SDK straight on Azurite, to see tags and uncommitted blocks."""
    await ensure_container(azurite, azurite.container)
    async with ContainerClient.from_connection_string(azurite.connection_string, azurite.container) as client:
        yield client


async def chunks(size: int, seed: bytes = b"azure", chunk: int = 256 * KiB) -> AsyncIterator[bytes]:
    block = hashlib.sha256(seed).digest() * (chunk // 32)
    sent = 0
    while sent < size:
        piece = block[: min(chunk, size - sent)]
        sent += len(piece)
        yield piece


async def uncommitted_blocks(blob: BlobClient) -> list[str]:
    _, uncommitted = await blob.get_block_list("uncommitted")
    return [str(block.id) for block in uncommitted]


async def until_blocks_are_staged(blob: BlobClient) -> None:
    """Wait until the upload under way has staged at least one block (Azurite answers quickly;
    the bound only turns a hang into a failure)."""
    for _ in range(600):
        if await uncommitted_blocks(blob):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no block of {blob.blob_name} was ever staged")


# -- metadata, tags, encryption scope ------------------------------------------------------------


@pytest.mark.parametrize("size", [100, 3 * MiB], ids=["put-blob", "staged-blocks"])
async def test_metadata_and_tags_round_trip(
    store: AzureStore, observer: ContainerClient, prefix: str, size: int
) -> None:
    key = f"{prefix}base/20250101T000000/data.tar"
    metadata = {"origin": "barman_cloud", "compression": "gzip"}
    tags = {"backup_id": "20250101T000000", "kind": "base backup"}

    info = await store.put(key, chunks(size), size_hint=size, metadata=metadata, tags=tags)

    assert info.size == size and info.etag
    head = await store.head(key)
    assert head.size == size and head.etag == info.etag
    assert dict(head.metadata) == metadata
    assert await observer.get_blob_client(key).get_blob_tags() == tags  # blob index tags


async def test_metadata_azure_cannot_carry_is_refused_before_sending(store: AzureStore, prefix: str) -> None:
    with pytest.raises(InvalidInput, match="metadata name 'backup-id'"):
        await store.put(f"{prefix}k", b"x", metadata={"backup-id": "1"})
    with pytest.raises(InvalidInput, match="metadata value of 'label'"):
        await store.put(f"{prefix}k", b"x", metadata={"label": "line\nbreak"})
    assert not await exists(store, f"{prefix}k")


async def test_encryption_scope_is_sent_with_every_upload(azurite: Azurite, prefix: str) -> None:
    # Azurite accepts the scope without applying it: this checks that both upload paths pass it
    # in a form the service takes, not that the data is encrypted.
    await ensure_container(azurite, azurite.container)
    options = StoreOptions(
        single_put_max=1 * MiB, part_size=256 * KiB, encryption=Encryption(azure_encryption_scope="backups")
    )
    store = open_store(
        destination(azurite), AzureCredentials(connection_string=azurite.connection_string), options
    )
    try:
        await store.put(f"{prefix}small", b"x")
        await store.put(f"{prefix}large", chunks(2 * MiB), size_hint=2 * MiB)
        assert (await store.head(f"{prefix}large")).size == 2 * MiB
    finally:
        await store.close()


# -- uploads that do not complete --------------------------------------------------------------


@pytest.mark.parametrize("how", ["source-fails", "cancelled"])
async def test_aborted_upload_leaves_the_existing_blob_untouched(
    store: AzureStore, observer: ContainerClient, prefix: str, how: str
) -> None:
    key = f"{prefix}wals/0000000100000000/000000010000000000000001"
    await store.put(key, b"the good segment", metadata={"version": "1"})
    before = await store.head(key)
    blob = observer.get_blob_client(key)

    class SourceBroke(Exception):
        pass

    async def overwrite() -> AsyncIterator[bytes]:
        async for piece in chunks(2 * MiB, seed=b"replacement"):
            yield piece
        await until_blocks_are_staged(blob)
        if how == "source-fails":
            raise SourceBroke
        await asyncio.Event().wait()  # until cancelled

    upload = asyncio.create_task(store.put(key, overwrite(), size_hint=64 * MiB))
    if how == "source-fails":
        with pytest.raises(SourceBroke):
            await upload
    else:
        await until_blocks_are_staged(blob)
        upload.cancel()
        with pytest.raises(asyncio.CancelledError):
            await upload

    # The committed blob is exactly what it was; the staged blocks are only uncommitted ones.
    assert await read_all(store, key) == b"the good segment"
    after = await store.head(key)
    assert (after.etag, after.last_modified, dict(after.metadata)) == (
        before.etag,
        before.last_modified,
        {"version": "1"},
    )
    assert await uncommitted_blocks(blob)

    # The next complete upload of the key commits its own blocks; the leftovers are dropped.
    await store.put(key, chunks(2 * MiB, seed=b"retry"), size_hint=2 * MiB)
    assert await read_all(store, key) == b"".join([piece async for piece in chunks(2 * MiB, seed=b"retry")])
    assert await uncommitted_blocks(blob) == []


async def test_failed_upload_of_a_new_key_is_invisible(store: AzureStore, prefix: str) -> None:
    async def broken() -> AsyncIterator[bytes]:
        async for piece in chunks(2 * MiB):
            yield piece
        raise OSError("disk read error")

    with pytest.raises(OSError, match="disk read error"):
        await store.put(f"{prefix}new", broken(), size_hint=8 * MiB)
    assert not await exists(store, f"{prefix}new")
    assert [entry async for entry in store.list(prefix)] == []


# -- reads, listings, deletes ----------------------------------------------------------------------


async def test_ranges_at_and_past_the_end(store: AzureStore, prefix: str) -> None:
    await store.put(f"{prefix}ten", b"0123456789")
    assert [c async for c in store.get(f"{prefix}ten", start=10)] == []
    assert [c async for c in store.get(f"{prefix}ten", start=50)] == []
    assert b"".join([c async for c in store.get(f"{prefix}ten", start=8, end=50)]) == b"89"
    assert b"".join([c async for c in store.get(f"{prefix}ten", end=4)]) == b"0123"
    assert [c async for c in store.get(f"{prefix}ten", start=3, end=3)] == []
    with pytest.raises(NotFound):
        _ = [c async for c in store.get(f"{prefix}absent", start=3, end=3)]


async def test_listing_pages_with_a_delimiter(store: AzureStore, prefix: str) -> None:
    store.list_page_size = 3
    names = [f"{prefix}wals/{i:02d}/x" for i in range(7)] + [f"{prefix}wals/{i:02d}" for i in range(5)]
    for name in names:
        await store.put(name, b"x")
    entries = [entry async for entry in store.list(f"{prefix}wals/", delimiter="/")]
    listed = [e.key if isinstance(e, ObjectInfo) else e.prefix for e in entries]
    expected = sorted(
        [f"{prefix}wals/{i:02d}/" for i in range(7)] + [f"{prefix}wals/{i:02d}" for i in range(5)]
    )
    assert listed == expected
    assert [type(e) for e in entries].count(CommonPrefix) == 7


async def test_missing_container_lists_nothing_and_names_itself(azurite: Azurite, prefix: str) -> None:
    container = f"absent-{uuid.uuid4().hex[:12]}"
    store = open_store(
        destination(azurite, container), AzureCredentials(connection_string=azurite.connection_string)
    )
    try:
        assert [entry async for entry in store.list(prefix)] == []
        with pytest.raises(NotFound, match=f"container '{container}'.* the container does not exist"):
            await store.put(f"{prefix}k", b"x")
        with pytest.raises(NotFound, match=container):
            await store.head(f"{prefix}k")
        await store.delete_many([f"{prefix}a", f"{prefix}b"])  # nothing there: nothing to do
    finally:
        await store.close()


async def test_delete_many_mixes_present_and_absent_keys(store: AzureStore, prefix: str) -> None:
    present = [f"{prefix}d/{i:03d}" for i in range(300)]  # more than one batch of 256
    await asyncio.gather(*(store.put(key, b"x") for key in present))
    await store.delete_many([f"{prefix}d/never", *present, present[0]])
    assert [entry async for entry in store.list(f"{prefix}d/")] == []


async def test_a_protected_object_fails_its_delete_but_not_the_others(
    store: AzureStore, observer: ContainerClient, prefix: str
) -> None:
    keys = [f"{prefix}p/a", f"{prefix}p/leased", f"{prefix}p/b"]
    for key in keys:
        await store.put(key, b"x")
    lease = await observer.get_blob_client(keys[1]).acquire_lease(lease_duration=-1)
    try:
        with pytest.raises(Conflict, match="leased"):
            await store.delete_many(keys)
        remaining = [e.key async for e in store.list(f"{prefix}p/") if isinstance(e, ObjectInfo)]
        assert remaining == [keys[1]]
    finally:
        await lease.release()
    await store.delete_many(keys)
    assert [e async for e in store.list(f"{prefix}p/")] == []


# -- credentials ---------------------------------------------------------------------------------------


async def test_account_key_with_the_emulator_url(azurite: Azurite, prefix: str) -> None:
    await ensure_container(azurite, azurite.container)
    store = open_store(
        destination(azurite), AzureCredentials(storage_account=AZURITE_ACCOUNT, storage_key=AZURITE_KEY)
    )
    try:
        await store.put(f"{prefix}k", b"by key")
        assert await read_all(store, f"{prefix}k") == b"by key"
    finally:
        await store.close()


async def test_endpoint_url_wins_over_the_url_host(azurite: Azurite, prefix: str) -> None:
    await ensure_container(azurite, azurite.container)
    store = open_store(
        f"https://{AZURITE_ACCOUNT}.blob.core.windows.net/{azurite.container}/pgdata",
        AzureCredentials(storage_account=AZURITE_ACCOUNT, storage_key=AZURITE_KEY),
        StoreOptions(endpoint_url=azurite.endpoint),
    )
    try:
        await store.put(f"{prefix}k", b"via endpointURL")
        assert await read_all(store, f"{prefix}k") == b"via endpointURL"
    finally:
        await store.close()


def container_sas(azurite: Azurite, permission: ContainerSasPermissions) -> str:
    return generate_container_sas(
        AZURITE_ACCOUNT,
        azurite.container,
        account_key=AZURITE_KEY,
        permission=permission,
        expiry=datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1),
    )


async def test_sas_token_round_trip_and_its_permissions(azurite: Azurite, prefix: str) -> None:
    await ensure_container(azurite, azurite.container)
    full = container_sas(azurite, ContainerSasPermissions(read=True, write=True, delete=True, list=True))
    read_only = container_sas(azurite, ContainerSasPermissions(read=True, list=True))
    writer = open_store(
        destination(azurite),
        AzureCredentials(storage_account=AZURITE_ACCOUNT, sas_token=f"?{full}"),
        BLOCK_OPTIONS,
    )
    reader = open_store(
        destination(azurite), AzureCredentials(storage_account=AZURITE_ACCOUNT, sas_token=read_only)
    )
    try:
        await writer.put(f"{prefix}blocks", chunks(2 * MiB), size_hint=2 * MiB)
        await writer.put(f"{prefix}small", b"by SAS")
        assert await read_all(reader, f"{prefix}small") == b"by SAS"
        listed = [e.key async for e in reader.list(prefix) if isinstance(e, ObjectInfo)]
        assert listed == [f"{prefix}blocks", f"{prefix}small"]
        with pytest.raises(Forbidden) as refused:
            await reader.put(f"{prefix}other", b"x")
        assert read_only not in str(refused.value) and "sig=" not in str(refused.value)
        await writer.delete_many([f"{prefix}blocks", f"{prefix}small"])
        assert [e async for e in reader.list(prefix)] == []
    finally:
        await writer.close()
        await reader.close()


def full_text(error: BaseException) -> str:
    """Everything a log line with the traceback would show."""
    return "".join(traceback.format_exception(error))


@pytest.mark.parametrize("form", ["key", "connection-string"])
async def test_wrong_account_key_is_forbidden_and_never_shown(
    azurite: Azurite, prefix: str, form: str, caplog: pytest.LogCaptureFixture
) -> None:
    await ensure_container(azurite, azurite.container)
    caplog.set_level(logging.DEBUG)
    connection_string = azurite.connection_string.replace(AZURITE_KEY, WRONG_KEY)
    credentials = (
        AzureCredentials(storage_account=AZURITE_ACCOUNT, storage_key=WRONG_KEY)
        if form == "key"
        else AzureCredentials(connection_string=connection_string)
    )
    store = open_store(destination(azurite), credentials)
    try:
        with pytest.raises(Forbidden) as refused:
            await store.head(f"{prefix}anything")
        with pytest.raises(Forbidden):
            await store.put(f"{prefix}anything", b"x")
    finally:
        await store.close()
    shown = full_text(refused.value) + caplog.text
    assert azurite.container in str(refused.value)
    for secret in (WRONG_KEY, WRONG_KEY[:16], connection_string, "AccountKey"):
        assert secret not in shown


SAS = "sv=2024-01-01&sig=c2VjcmV0"
CONNECTION_STRING = f"AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY}"
# Combinations the upstream plugin documents as invalid (issue #705): the error lists what works.
REFUSED_COMBINATIONS = {
    "nothing": AzureCredentials(),
    "key-without-account": AzureCredentials(storage_key=AZURITE_KEY),
    "sas-without-account": AzureCredentials(sas_token=SAS),
    "account-alone": AzureCredentials(storage_account=AZURITE_ACCOUNT),
    "key-and-sas": AzureCredentials(storage_account=AZURITE_ACCOUNT, storage_key=AZURITE_KEY, sas_token=SAS),
    "connection-string-and-key": AzureCredentials(
        connection_string=CONNECTION_STRING, storage_key=AZURITE_KEY
    ),
    "connection-string-and-account": AzureCredentials(
        connection_string=CONNECTION_STRING, storage_account=AZURITE_ACCOUNT
    ),
    "both-identities": AzureCredentials(inherit_from_azure_ad=True, use_default_azure_credentials=True),
    "identity-and-key": AzureCredentials(
        inherit_from_azure_ad=True, storage_account=AZURITE_ACCOUNT, storage_key=AZURITE_KEY
    ),
    "default-and-sas": AzureCredentials(use_default_azure_credentials=True, sas_token=SAS),
}
# Values that are not what their field holds: the error names the field and the expected form.
MALFORMED_VALUES = {
    "connection-string-without-pairs": AzureCredentials(connection_string=AZURITE_KEY),
    "connection-string-without-secret": AzureCredentials(
        connection_string=f"AccountName={AZURITE_ACCOUNT};BlobEndpoint=http://127.0.0.1:1/x"
    ),
    "key-not-base64": AzureCredentials(storage_account=AZURITE_ACCOUNT, storage_key="not a key!"),
    "sas-without-signature": AzureCredentials(storage_account=AZURITE_ACCOUNT, sas_token="sv=2024-01-01"),
}
SECRETS = (AZURITE_KEY, "c2VjcmV0", "not a key!", "sv=2024-01-01")


@pytest.mark.parametrize("credentials", REFUSED_COMBINATIONS.values(), ids=REFUSED_COMBINATIONS.keys())
def test_refused_credential_combinations_list_the_accepted_ones(credentials: AzureCredentials) -> None:
    with pytest.raises(InvalidInput) as refused:
        open_store(f"https://{AZURITE_ACCOUNT}.blob.core.windows.net/backups/pgdata", credentials)
    message = str(refused.value)
    assert "accepted: connectionString alone; storageAccount with storageKey; storageAccount with " in message
    assert all(secret not in full_text(refused.value) for secret in SECRETS)


@pytest.mark.parametrize("credentials", MALFORMED_VALUES.values(), ids=MALFORMED_VALUES.keys())
def test_malformed_credentials_are_named_not_shown(credentials: AzureCredentials) -> None:
    with pytest.raises(InvalidInput, match="azureCredentials") as refused:
        open_store(f"https://{AZURITE_ACCOUNT}.blob.core.windows.net/backups/pgdata", credentials)
    assert all(secret not in full_text(refused.value) for secret in SECRETS)


def test_identity_credentials_need_https() -> None:
    with pytest.raises(InvalidInput, match="https"):
        open_store(
            f"http://127.0.0.1:1/{AZURITE_ACCOUNT}/backups/pgdata",
            AzureCredentials(inherit_from_azure_ad=True),
        )


# -- errors ---------------------------------------------------------------------------------------------


async def test_unreachable_endpoint_is_unavailable_after_retries(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    port = free_port()  # nothing listens there
    connection_string = (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
    )
    store = open_store(
        f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}/backups/pgdata",
        AzureCredentials(connection_string=connection_string),
        StoreOptions(max_attempts=2, connect_timeout=2),
    )
    try:
        with pytest.raises(Unavailable, match="backups"):
            await store.head(f"{prefix}k")
    finally:
        await store.close()
    assert "retrying" in caplog.text
    assert AZURITE_KEY not in caplog.text


async def test_a_closed_store_refuses_work(store: AzureStore, prefix: str) -> None:
    await store.put(f"{prefix}k", b"x")
    await store.close()
    with pytest.raises(Exception, match="closed"):
        await store.head(f"{prefix}k")
    await store.close()  # twice is fine


# -- TLS with a private CA ---------------------------------------------------------------------------------


@dataclass
class TLSAzurite:
    port: int
    ca_pem: bytes
    other_ca_pem: bytes
    container: str = "backups"

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}/{AZURITE_ACCOUNT}"


def issue_ip_certificate(ca: CertificateAuthority, address: str, directory: Path) -> tuple[Path, Path]:
    """A server certificate for an IP address (the harness's CA issues DNS names only)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
        .sign(ca.key, hashes.SHA256())
    )
    cert_path, key_path = directory / "azurite.crt", directory / "azurite.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSAzurite]:
    """A second Azurite serving HTTPS with a certificate from a private CA, for this module. It also
    takes Azure AD bearer tokens (``--oauth basic``: lifetime, issuer and audience are checked, the
    signature is not), which need HTTPS."""
    directory = tmp_path_factory.mktemp("azurite-tls")
    ca = CertificateAuthority(directory / "pki", "azurite")
    other = CertificateAuthority(directory / "pki", "other")
    cert, key = issue_ip_certificate(ca, "127.0.0.1", directory)
    port = free_port()
    location = directory / "data"
    location.mkdir()
    command = [
        node(), str(azurite_blob().resolve()), "--blobHost", "127.0.0.1", "--blobPort", str(port),
        "--location", str(location), "--silent", "--skipApiVersionCheck", "--disableTelemetry",
        "--cert", str(cert), "--key", str(key), "--oauth", "basic",
    ]  # fmt: skip
    process = ManagedProcess("azurite-tls", command, directory / "azurite.log")
    try:
        process.wait_until(lambda: port_open(port))
        yield TLSAzurite(port, ca.cert_path.read_bytes(), other.cert_path.read_bytes())
    finally:
        process.stop()
        shutil.rmtree(location, ignore_errors=True)


def tls_store(server: TLSAzurite, endpoint_ca: bytes | None) -> Store:
    return open_store(
        f"{server.endpoint}/{server.container}/pgdata",
        AzureCredentials(storage_account=AZURITE_ACCOUNT, storage_key=AZURITE_KEY),
        StoreOptions(endpoint_ca=endpoint_ca, single_put_max=1 * MiB, part_size=256 * KiB),
    )


async def create_tls_container(server: TLSAzurite, directory: Path) -> None:
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(server.ca_pem)
    connection_string = (
        f"DefaultEndpointsProtocol=https;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={server.endpoint};"
    )
    async with BlobServiceClient.from_connection_string(
        connection_string, connection_verify=str(ca_file)
    ) as service:
        with contextlib.suppress(ResourceExistsError):
            await service.create_container(server.container)


async def test_tls_endpoint_with_endpoint_ca(tls_azurite: TLSAzurite, tmp_path: Path, prefix: str) -> None:
    await create_tls_container(tls_azurite, tmp_path)
    store = tls_store(tls_azurite, tls_azurite.ca_pem)
    try:
        await store.put(f"{prefix}small", b"over TLS")
        await store.put(f"{prefix}blocks", chunks(2 * MiB), size_hint=2 * MiB)
        assert await read_all(store, f"{prefix}small") == b"over TLS"
        assert (await store.head(f"{prefix}blocks")).size == 2 * MiB
        listed = [e.key async for e in store.list(prefix) if isinstance(e, ObjectInfo)]
        assert listed == [f"{prefix}blocks", f"{prefix}small"]
        await store.delete_many(listed)
    finally:
        await store.close()


@pytest.mark.parametrize("trusted", ["system-store", "another-ca"])
async def test_tls_endpoint_without_its_ca_fails_clearly(
    tls_azurite: TLSAzurite, tmp_path: Path, prefix: str, trusted: str
) -> None:
    await create_tls_container(tls_azurite, tmp_path)
    store = tls_store(tls_azurite, None if trusted == "system-store" else tls_azurite.other_ca_pem)
    try:
        with pytest.raises(InvalidInput) as refused:
            await store.put(f"{prefix}k", b"x")
    finally:
        await store.close()
    message = str(refused.value)
    assert "TLS certificate verification failed" in message
    assert "endpointCA" in message


def test_endpoint_ca_that_is_not_pem_is_refused() -> None:
    with pytest.raises(InvalidInput, match="endpointCA"):
        open_store(
            "https://127.0.0.1:1/devstoreaccount1/backups/pgdata",
            AzureCredentials(storage_account=AZURITE_ACCOUNT, storage_key=AZURITE_KEY),
            StoreOptions(endpoint_ca=b"not a certificate"),
        )


# -- Azure AD identities (managed identity, DefaultAzureCredential) ------------------------------------------

IDENTITY_HEADER = "identity-header-value"
# Whatever else could steer azure-identity elsewhere (other managed-identity hosts, a service
# principal, workload identity): removed so that only the local endpoint answers.
OTHER_IDENTITY_SETTINGS = (
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_USERNAME",
    "AZURE_PASSWORD",
)


@dataclass
class IdentityEndpoint:
    """An App Service style managed-identity endpoint (IDENTITY_ENDPOINT/IDENTITY_HEADER): what
    azure-identity's ManagedIdentityCredential and DefaultAzureCredential ask for a token."""

    resources: list[str]
    refuse: bool = False


def unsigned_token(audience: str) -> str:
    def encode(part: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {
        "aud": audience,
        "iss": "https://sts.windows.net/00000000-0000-0000-0000-000000000000/",
        "iat": now - 60,
        "nbf": now - 60,
        "exp": now + 3600,
        "oid": "11111111-1111-1111-1111-111111111111",
        "tid": "00000000-0000-0000-0000-000000000000",
    }
    return f"{encode({'alg': 'RS256', 'typ': 'JWT'})}.{encode(claims)}.c2lnbmF0dXJl"


@pytest.fixture
async def identity_endpoint(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[IdentityEndpoint]:
    endpoint = IdentityEndpoint(resources=[])

    async def token(request: web.Request) -> web.Response:
        if request.headers.get("X-IDENTITY-HEADER") != IDENTITY_HEADER:
            return web.json_response({"error": "missing identity header"}, status=401)
        resource = request.query.get("resource", "")
        endpoint.resources.append(resource)
        if endpoint.refuse:
            return web.json_response(
                {"error": "invalid_request", "error_description": "no identity"}, status=400
            )
        body = {
            "access_token": unsigned_token(resource),
            "expires_on": str(int(time.time()) + 3600),
            "resource": resource,
            "token_type": "Bearer",
        }
        return web.json_response(body)

    app = web.Application()
    app.router.add_get("/token", token)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    for name in OTHER_IDENTITY_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{port}/token")
    monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER)
    try:
        yield endpoint
    finally:
        await runner.cleanup()


IDENTITIES = {
    "managed-identity": AzureCredentials(inherit_from_azure_ad=True),
    "default-credential": AzureCredentials(use_default_azure_credentials=True),
}


@pytest.mark.parametrize("credentials", IDENTITIES.values(), ids=IDENTITIES.keys())
async def test_identity_tokens_reach_the_service(
    tls_azurite: TLSAzurite,
    identity_endpoint: IdentityEndpoint,
    tmp_path: Path,
    prefix: str,
    credentials: AzureCredentials,
) -> None:
    await create_tls_container(tls_azurite, tmp_path)
    store = open_store(
        f"{tls_azurite.endpoint}/{tls_azurite.container}/pgdata",
        credentials,
        StoreOptions(endpoint_ca=tls_azurite.ca_pem),
    )
    try:
        await store.put(f"{prefix}k", b"with a token")
        assert await read_all(store, f"{prefix}k") == b"with a token"
    finally:
        await store.close()  # closes the credential too (an unclosed session would be reported)
    assert identity_endpoint.resources and set(identity_endpoint.resources) == {"https://storage.azure.com"}


async def test_refused_identity_is_forbidden_with_a_hint(
    tls_azurite: TLSAzurite, identity_endpoint: IdentityEndpoint, prefix: str
) -> None:
    identity_endpoint.refuse = True
    store = open_store(
        f"{tls_azurite.endpoint}/{tls_azurite.container}/pgdata",
        AzureCredentials(inherit_from_azure_ad=True),
        StoreOptions(endpoint_ca=tls_azurite.ca_pem),
    )
    try:
        with pytest.raises(Forbidden, match="no Azure AD token") as refused:
            await store.head(f"{prefix}k")
    finally:
        await store.close()
    assert "workload identity" in str(refused.value)
    assert IDENTITY_HEADER not in full_text(refused.value)
