"""Azure Blob Storage (azure-storage-blob aio): block blobs in one container of one account.

Credentials follow barman-cloud's precedence (format doc 7.2) and the combinations the upstream
plugin documents but does not enforce (issue #705): ``useDefaultAzureCredentials``
(DefaultAzureCredential), ``inheritFromAzureAD`` (ManagedIdentityCredential), a connection string
alone (account, endpoint and key or SAS come from it), or ``storageAccount`` with exactly one of
``storageKey`` and ``storageSasToken``. Anything else is refused up front with the list of accepted
combinations, never with a secret value.

The account endpoint is ``endpointURL`` when given (the account's blob service URL, e.g.
``http://azurite:10000/devstoreaccount1``), else the connection string's, else the one the
destination URL implies (``https://ACCOUNT.blob.core.windows.net`` or the Azurite-style
``http://HOST:PORT/ACCOUNT``).

Uploads. An object up to ``single_put_max`` bytes (bytes, or a stream that ends within that size)
is one Put Blob: atomic, nothing visible before it completes. A larger one is staged as blocks in
parallel (Put Block) and made visible by one Put Block List. A failed or cancelled staged upload
does not commit anything, so the key keeps what it had: the previous committed blob if there was
one, else nothing. The staged blocks stay *uncommitted*: they are invisible to reads, listings and
``head``, and the service discards them when the next Put Block List on that key commits (Azure
also on a Put Blob; Azurite only on Put Block List), or after seven days without activity.
We deliberately do **not** do what barman-cloud does on abort (commit an empty block list, then
delete the blob): that replaces an existing object with an empty one and then deletes it, losing a
good WAL segment or backup file that an interrupted overwrite was meant to leave alone, and it
briefly shows an empty object to readers. Block ids are unique per upload (a random upload id
plus the part number, fixed width, base64-encoded by the SDK), so the leftovers of an aborted
upload never mix with a concurrent or later upload of the same key.

Deletes go in Blob Batch requests of up to 256 names. An endpoint that does not understand the
batch (Azurite before 3.37 answers one ``400 InvalidInput`` for the whole of it) is detected once
per store and served by single deletes with bounded concurrency. A name that is already gone is
fine; any other per-object failure (a lease, an immutability policy, a missing permission) is
raised once the rest of its batch has been deleted, and ends the call.

One aiohttp session (one connection pool, with the ``endpointCA`` trust store when given) and one
BlobServiceClient are created on first use and reused until :meth:`AzureStore.close`. The SDK's own
retries are off: every request goes through :func:`~barman_cloud.storage.retry.with_retries`, which
retries only what the error mapping calls Unavailable, and bounds each attempt.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
import contextlib
import functools
import io
import logging
import re
import ssl
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar, cast
from urllib.parse import urlsplit

import aiohttp
from azure.core import MatchConditions
from azure.core.async_paging import AsyncItemPaged, AsyncPageIterator
from azure.core.credentials import AzureNamedKeyCredential, AzureSasCredential
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    IncompleteReadError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import AioHttpTransport
from azure.storage.blob import BlobBlock, BlobProperties
from azure.storage.blob.aio import BlobClient, BlobServiceClient, ContainerClient

from barman_cloud.errors import (
    BarmanCloudError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    Unavailable,
)
from barman_cloud.storage import CommonPrefix, Feature, ObjectInfo, StoreLocation
from barman_cloud.storage.integrity import (
    RunningDigest,
    Verifier,
    digesting,
    expected_from_metadata,
    sha256_hex,
    split_checksum,
    with_checksum,
)
from barman_cloud.storage.keys import check_key
from barman_cloud.storage.options import AzureCredentials, StoreOptions
from barman_cloud.storage.parts import AZURE_LIMITS, part_size_for, parts_of, upload_parallel
from barman_cloud.storage.retry import backoff_delay, with_retries
from barman_cloud.storage.sessions import settle_closed_connections

log = logging.getLogger(__name__)
# The SDK's HTTP logging policy logs every request's URL and headers at INFO: keep it out of our
# logs whatever the configured level (the Authorization header is redacted by the SDK, but a SAS
# query string or an account name is still more than an operator's log needs).
logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)

T = TypeVar("T")
MiB = 1024 * 1024

AZURE_HOST_SUFFIX = "blob.core.windows.net"
BATCH_DELETE_MAX = 256
"""Sub-requests in one Blob Batch request (the service's limit)."""
SINGLE_DELETE_CONCURRENCY = 32
"""Single deletes in flight when the endpoint has no Blob Batch."""
PUT_BLOB_MAX = 5000 * MiB
"""Largest Put Blob the service accepts; a larger ``single_put_max`` is capped to it."""
DOWNLOAD_CHUNK = 4 * MiB
"""Bytes per ranged GET while streaming a download (the SDK holds one chunk in memory)."""
LIST_PAGE_SIZE = 5000
"""Results per List Blobs request: the service's maximum, so a big WAL archive takes few requests."""
STREAMED_BODY_MIN = 1024 * 1024
"""Request bodies above this size are streamed to aiohttp (its threshold for warning)."""
CONNECTION_POOL_SIZE = 64
"""Connections to the endpoint kept by the store's one session (parts, listings, deletes)."""
MIN_TRANSFER_RATE = MiB
"""Bytes per second an upload attempt is granted before it is abandoned and retried: aiohttp has
no write timeout, so a stalled upload is bounded only by the attempt's deadline."""

ACCEPTED_CREDENTIALS = (
    "accepted: connectionString alone; storageAccount with storageKey; storageAccount with "
    "storageSasToken; inheritFromAzureAD (managed identity); or useDefaultAzureCredentials "
    "(environment, workload identity, managed identity)"
)

_REQUEST_ID_LINE = re.compile(r"^(RequestId|Time):", re.MULTILINE)
_URL_QUERY = re.compile(r"(https?://[^\s?'\"]+)\?[^\s'\"]*")
_METADATA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_METADATA_VALUE = re.compile(r"[\x20-\x7e]*")
_SIGNATURE = re.compile(r"(sig=)[^&\s'\"]+", re.IGNORECASE)


@dataclass(frozen=True)
class _Access:
    """How to reach and authenticate to the account, resolved and validated from the inputs."""

    endpoint: str
    """The account's blob service URL, without a trailing slash or query string."""
    method: Literal["key", "sas", "managed-identity", "default"]
    account: str | None = None
    key: str | None = field(default=None, repr=False)
    sas: str | None = field(default=None, repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """Every secret value given, to scrub from any text we pass on."""

    def credential(self) -> AzureNamedKeyCredential | AzureSasCredential | AsyncTokenCredential:
        if self.method == "key":
            assert self.account is not None and self.key is not None
            return AzureNamedKeyCredential(self.account, self.key)
        if self.method == "sas":
            assert self.sas is not None
            return AzureSasCredential(self.sas)
        # Imported here: azure-identity (and msal under it) is only needed for these two modes.
        from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

        if self.method == "managed-identity":
            return ManagedIdentityCredential()
        return DefaultAzureCredential()


def resolve_access(location: StoreLocation, credentials: AzureCredentials, options: StoreOptions) -> _Access:
    """Check the credential combination and work out the endpoint; InvalidInput says what to fix."""
    given = {
        "connectionString": credentials.connection_string,
        "storageAccount": credentials.storage_account,
        "storageKey": credentials.storage_key,
        "storageSasToken": credentials.sas_token,
    }
    secrets = tuple(value for name, value in given.items() if value and name != "storageAccount")
    account = credentials.storage_account or location.account
    implied = location.endpoint or (f"https://{account}.{AZURE_HOST_SUFFIX}" if account else None)
    if credentials.use_default_azure_credentials or credentials.inherit_from_azure_ad:
        method = _identity_method(credentials, [n for n, v in given.items() if v and n != "storageAccount"])
        endpoint = _endpoint(location, options, implied)
        if not endpoint.startswith("https:"):
            raise InvalidInput(
                f"Azure AD credentials cannot be sent to {endpoint}",
                hint="the SDK sends bearer tokens over https only: use an https endpoint",
            )
        return _Access(endpoint, method, account, secrets=secrets)
    if credentials.connection_string:
        extra = [name for name, value in given.items() if value and name != "connectionString"]
        if extra:
            raise InvalidInput(
                f"azureCredentials combines connectionString with {', '.join(extra)}",
                hint=f"a connection string carries the account and its key or SAS; {ACCEPTED_CREDENTIALS}",
            )
        parsed = _parse_connection_string(credentials.connection_string)
        return _Access(
            _endpoint(location, options, parsed.endpoint),
            "key" if parsed.key else "sas",
            parsed.account,
            key=parsed.key,
            sas=parsed.sas,
            secrets=secrets,
        )
    endpoint = _endpoint(location, options, implied)
    return _account_access(credentials, endpoint, secrets)


def _identity_method(
    credentials: AzureCredentials, secret_names: builtins.list[str]
) -> Literal["managed-identity", "default"]:
    if credentials.use_default_azure_credentials and credentials.inherit_from_azure_ad:
        raise InvalidInput(
            "azureCredentials sets both inheritFromAzureAD and useDefaultAzureCredentials",
            hint=f"choose one; {ACCEPTED_CREDENTIALS}",
        )
    flag = "useDefaultAzureCredentials" if credentials.use_default_azure_credentials else "inheritFromAzureAD"
    if secret_names:
        raise InvalidInput(
            f"azureCredentials combines {flag} with {', '.join(secret_names)}",
            hint=f"an identity needs no secret: remove them; {ACCEPTED_CREDENTIALS}",
        )
    return "default" if credentials.use_default_azure_credentials else "managed-identity"


def _account_access(credentials: AzureCredentials, endpoint: str, secrets: tuple[str, ...]) -> _Access:
    """storageAccount with exactly one of storageKey and storageSasToken."""
    if credentials.storage_key and credentials.sas_token:
        raise InvalidInput(
            "azureCredentials sets both storageKey and storageSasToken",
            hint=f"give one of them; {ACCEPTED_CREDENTIALS}",
        )
    if credentials.storage_key or credentials.sas_token:
        name = "storageKey" if credentials.storage_key else "storageSasToken"
        account = credentials.storage_account
        if not account:
            raise InvalidInput(
                f"azureCredentials sets {name} without storageAccount", hint=ACCEPTED_CREDENTIALS
            )
        if credentials.storage_key:
            _check_account_key(credentials.storage_key, "storageKey")
            return _Access(endpoint, "key", account, key=credentials.storage_key, secrets=secrets)
        assert credentials.sas_token is not None
        sas = _check_sas(credentials.sas_token, "storageSasToken")
        return _Access(endpoint, "sas", account, sas=sas, secrets=secrets)
    if credentials.storage_account:
        raise InvalidInput(
            "azureCredentials sets storageAccount without storageKey or storageSasToken",
            hint=ACCEPTED_CREDENTIALS,
        )
    raise InvalidInput("no Azure credentials", hint=ACCEPTED_CREDENTIALS)


def _endpoint(location: StoreLocation, options: StoreOptions, implied: str | None) -> str:
    chosen = options.endpoint_url or implied
    if not chosen:
        raise InvalidInput(
            f"no Azure endpoint for {location.url}",
            hint="use https://ACCOUNT.blob.core.windows.net/CONTAINER or set endpointURL",
        )
    return _clean_endpoint(chosen)


@dataclass(frozen=True)
class _ConnectionString:
    endpoint: str
    account: str | None
    key: str | None = field(default=None, repr=False)
    sas: str | None = field(default=None, repr=False)


def _parse_connection_string(text: str) -> _ConnectionString:
    """Parse ``Key=Value;...`` the way azure-storage-blob does, with errors that never quote it."""
    settings: dict[str, str] = {}
    for item in text.strip().rstrip(";").split(";"):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise InvalidInput(
                "azureCredentials.connectionString is malformed",
                hint="expected Name=Value pairs separated by ';' (AccountName, AccountKey or "
                "SharedAccessSignature, BlobEndpoint or EndpointSuffix)",
            )
        settings[name.strip().upper()] = value.strip()
    if settings.get("USEDEVELOPMENTSTORAGE", "").lower() == "true":
        raise InvalidInput(
            "azureCredentials.connectionString uses UseDevelopmentStorage=true",
            hint="spell the emulator out: AccountName=...;AccountKey=...;BlobEndpoint=http://HOST:PORT/ACCOUNT",
        )
    account = settings.get("ACCOUNTNAME") or None
    key = settings.get("ACCOUNTKEY") or None
    sas = settings.get("SHAREDACCESSSIGNATURE") or None
    if key and not account:
        raise InvalidInput("azureCredentials.connectionString has AccountKey but no AccountName")
    if not key and not sas:
        raise InvalidInput(
            "azureCredentials.connectionString has neither AccountKey nor SharedAccessSignature",
            hint="use the account's connection string (Access keys) or a SAS connection string",
        )
    if key:
        _check_account_key(key, "connectionString AccountKey")
    else:
        assert sas is not None
        sas = _check_sas(sas, "connectionString SharedAccessSignature")
    endpoint = settings.get("BLOBENDPOINT")
    if not endpoint:
        if not account:
            raise InvalidInput(
                "azureCredentials.connectionString has neither BlobEndpoint nor AccountName",
                hint="add BlobEndpoint=https://ACCOUNT.blob.core.windows.net",
            )
        protocol = settings.get("DEFAULTENDPOINTSPROTOCOL", "https")
        suffix = settings.get("ENDPOINTSUFFIX", "core.windows.net")
        endpoint = f"{protocol}://{account}.blob.{suffix}"
    return _ConnectionString(_clean_endpoint(endpoint), account, key, None if key else sas)


def _check_account_key(key: str, name: str) -> None:
    try:
        base64.b64decode(key, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(
            f"azureCredentials {name} is not base64",
            hint="copy the storage account's access key exactly (it is base64 and ends with '==')",
        ) from None


def _check_sas(sas: str, name: str) -> str:
    token = sas.strip().lstrip("?")
    if "sig=" not in token:
        raise InvalidInput(
            f"azureCredentials {name} is not a SAS token (no sig= parameter)",
            hint="use the query string of a SAS URL (sv=...&sig=...), without the URL",
        )
    return token


def _clean_endpoint(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidInput(
            "the Azure endpoint is not an http(s) URL", hint="e.g. https://ACCOUNT.blob.core.windows.net"
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


class _Transport(AioHttpTransport):  # type: ignore[misc]  # the SDK exports it lazily, untyped
    """The SDK's aiohttp transport, handing large request bodies to aiohttp as a stream.

    The SDK gives aiohttp every body (a Put Blob, a staged block) as one ``bytes``. aiohttp then
    copies it into the socket's buffer in one go and warns (ResourceWarning) that this can stall
    the event loop. Wrapped in ``io.BytesIO`` the same bytes are written in 64 KiB pieces with
    backpressure, yielding to the loop in between, and without the copy.
    """

    async def send(self, request: Any, **config: Any) -> Any:
        body = getattr(request, "data", None)
        if not isinstance(body, bytes) or len(body) <= STREAMED_BODY_MIN:
            return await super().send(request, **config)
        request.data = io.BytesIO(body)
        try:
            return await super().send(request, **config)
        finally:
            request.data = body  # the request object is the SDK's: give it back as it was


def _ssl_context(endpoint_ca: bytes | None) -> ssl.SSLContext | None:
    """A context trusting only the ``endpointCA`` bundle (no system store), or None for the default."""
    if endpoint_ca is None:
        return None
    try:
        return ssl.create_default_context(cadata=endpoint_ca.decode("ascii"))
    except (UnicodeDecodeError, ssl.SSLError, ValueError) as error:
        raise InvalidInput(
            "endpointCA is not a PEM certificate bundle",
            hint=f"give the CA certificate(s) that signed the endpoint's certificate, PEM-encoded ({error})",
        ) from None


class AzureStore:
    """``https://ACCOUNT.blob.core.windows.net/CONTAINER/...`` and Azurite-style URLs."""

    features = frozenset({Feature.TAGS, Feature.METADATA, Feature.RANGED_GET, Feature.SERVER_SIDE_ENCRYPTION})

    def __init__(self, location: StoreLocation, credentials: AzureCredentials, options: StoreOptions) -> None:
        self.location = location
        self.options = options
        self._access = resolve_access(location, credentials, options)
        self._ssl = _ssl_context(options.endpoint_ca) if self._access.endpoint.startswith("https:") else None
        self._single_put_max = min(options.single_put_max, PUT_BLOB_MAX)
        self._request_timeout = options.connect_timeout + options.read_timeout
        self.list_page_size = LIST_PAGE_SIZE
        """Results per List Blobs request (the service caps it at 5000); tests lower it to cross
        page boundaries with few objects."""
        self._batch_delete: bool | None = None
        """Whether the endpoint serves Blob Batch: None until the first batch says."""
        self._session: aiohttp.ClientSession | None = None
        self._service: BlobServiceClient | None = None
        self._credential: AsyncTokenCredential | None = None
        self._client: ContainerClient | None = None
        self._closed = False

    # -- client lifecycle ------------------------------------------------------------------

    def _container(self) -> ContainerClient:
        """The container client, created on first use (inside the running loop) and then reused."""
        if self._closed:
            raise BarmanCloudError(f"the store for {self._where()} is closed")
        if self._client is None:
            connector = aiohttp.TCPConnector(limit=CONNECTION_POOL_SIZE, ssl=self._ssl or True)
            # Like the transport's own session: proxies from the environment, no cookies, and the
            # body left compressed (the SDK checks Content-MD5/CRC of what was stored).
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                trust_env=True,
            )
            transport = _Transport(
                session=self._session,
                session_owner=False,
                connection_timeout=self.options.connect_timeout,
                read_timeout=self.options.read_timeout,
            )
            credential = self._access.credential()
            if isinstance(credential, AsyncTokenCredential):
                self._credential = credential
            self._service = BlobServiceClient(
                self._access.endpoint,
                credential=credential,
                transport=transport,
                retry_total=0,
                max_single_put_size=self._single_put_max,
                max_single_get_size=DOWNLOAD_CHUNK,
                max_chunk_get_size=DOWNLOAD_CHUNK,
            )
            self._client = self._service.get_container_client(self.location.bucket)
        return self._client

    def _blob(self, key: str) -> BlobClient:
        return self._container().get_blob_client(check_key(key))

    async def close(self) -> None:
        """Close the client, its session (connection pool) and any identity credential."""
        self._closed = True
        service, session, credential = self._service, self._session, self._credential
        self._service = self._session = self._credential = self._client = None
        try:
            if service is not None:
                await service.close()
        finally:
            try:
                if session is not None:
                    await session.close()
                    await settle_closed_connections()
            finally:
                if credential is not None:
                    await credential.close()

    # -- requests, retries and errors --------------------------------------------------------

    def _where(self, key: str | None = None) -> str:
        container = f"container {self.location.bucket!r} at {self._access.endpoint}"
        return f"{key!r} in {container}" if key is not None else container

    async def _call(
        self,
        operation: Callable[[], Awaitable[T]],
        *,
        what: str,
        key: str | None = None,
        timeout: float | None = None,
    ) -> T:
        """Run one request with retries; SDK errors become engine errors inside each attempt."""

        async def attempt() -> T:
            try:
                return await operation()
            except AzureError as error:
                raise self._translate(error, what, key) from None

        return await with_retries(
            attempt,
            what=f"{what} {self._where(key)}",
            attempts=self.options.max_attempts,
            timeout=timeout or self._request_timeout,
        )

    def _transfer_timeout(self, size: int) -> float:
        return self._request_timeout + size / MIN_TRANSFER_RATE

    def _scrub(self, text: str) -> str:
        """Remove secret values, SAS signatures and URL query strings from a message we pass on."""
        for secret in self._access.secrets:
            text = text.replace(secret, "***")
        return _SIGNATURE.sub(r"\1***", _URL_QUERY.sub(r"\1?***", text))

    def _detail(self, error: AzureError) -> str:
        lines = [line.strip() for line in str(error.message or error).splitlines() if line.strip()]
        lines = [line for line in lines if not _REQUEST_ID_LINE.match(line)]
        return self._scrub(lines[0][:300]) if lines else type(error).__name__

    def _translate(self, error: AzureError, what: str, key: str | None) -> BarmanCloudError:
        """The engine's error for an SDK error: the retry decision is in the type."""
        where = self._where(key)
        certificate = _certificate_failure(error)
        if certificate is not None:
            hint = (
                "the certificate is not signed by a CA in endpointCA, or is not valid for the host"
                if self.options.endpoint_ca
                else "set endpointCA to the CA bundle that signed the endpoint's certificate"
            )
            return InvalidInput(
                f"cannot {what} {where}: TLS certificate verification failed ({certificate})", hint=hint
            )
        # An answer cut short (reset, truncated body) is an IncompleteReadError, an HttpResponseError
        # without a status; once the SDK's own download retries are spent it comes wrapped in another
        # status-less HttpResponseError. Both are as transient as a reset before the answer.
        interrupted = (IncompleteReadError, ServiceResponseError)
        if isinstance(error, ServiceRequestError | ServiceResponseError | IncompleteReadError) or (
            isinstance(error, HttpResponseError)
            and error.status_code is None
            and isinstance(getattr(error, "inner_exception", None), interrupted)
        ):
            return Unavailable(f"cannot {what} {where}: {self._detail(error)}")
        if not isinstance(error, HttpResponseError):
            return BarmanCloudError(f"cannot {what} {where}: {self._detail(error)}")
        status = error.status_code
        code = _error_code(error)
        detail = f"HTTP {status} {code}".strip() if status else self._detail(error)
        if isinstance(error, ClientAuthenticationError) and status not in (401, 403):
            # An azure-identity credential could not get a token (no identity, no federation, or
            # the identity endpoint refused): the status, if any, is the identity endpoint's.
            return Forbidden(
                f"cannot {what} {where}: no Azure AD token ({self._detail(error)})",
                hint="check the pod's managed or workload identity (azure.workload.identity/use, "
                "AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE)",
            )
        if status == 404 or isinstance(error, ResourceNotFoundError):
            if code == "ContainerNotFound":
                return NotFound(
                    f"cannot {what} {where}: the container does not exist",
                    hint="create it, or fix the container in destinationPath",
                )
            return NotFound(f"object {key!r} not found in container {self.location.bucket!r}")
        if status in (401, 403):
            return Forbidden(
                f"cannot {what} {where}: {detail}",
                hint="check the storage account key, SAS token (permissions, expiry) or the identity's "
                "role (Storage Blob Data Contributor)",
            )
        if status in (408, 429) or (status is not None and status >= 500) or code in ("ServerBusy",):
            return Unavailable(f"cannot {what} {where}: {detail}: {self._detail(error)}")
        if status in (409, 412):
            return Conflict(f"cannot {what} {where}: {detail}: {self._detail(error)}")
        if status is not None and 400 <= status < 500:
            return InvalidInput(f"cannot {what} {where}: {detail}: {self._detail(error)}")
        return BarmanCloudError(f"cannot {what} {where}: {detail}: {self._detail(error)}")

    # -- put ----------------------------------------------------------------------------------

    async def put(
        self,
        key: str,
        data: bytes | AsyncIterable[bytes],
        *,
        size_hint: int | None = None,
        metadata: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        blob = self._blob(key)
        attributes = _Attributes(
            metadata=_check_metadata(metadata) if metadata else None,
            tags=dict(tags) if tags else None,
            encryption_scope=self.options.encryption.azure_encryption_scope,
        )
        if isinstance(data, bytes | bytearray | memoryview):
            body = bytes(data)
            if len(body) <= self._single_put_max:
                return await self._put_single(blob, key, body, attributes)
            part_size = part_size_for(len(body), AZURE_LIMITS, self.options.part_size)
            return await self._put_blocks(blob, key, _slices(body, part_size), attributes)
        stream = aiter(data)
        if size_hint is None or size_hint <= self._single_put_max:
            # Read ahead up to the single-request limit: a stream that ends there is one Put Blob.
            head, ended = await _read_up_to(stream, self._single_put_max)
            if ended:
                return await self._put_single(blob, key, bytes(head), attributes)
            stream = _chain(head, stream)
        part_size = part_size_for(size_hint, AZURE_LIMITS, self.options.part_size)
        return await self._put_blocks(blob, key, parts_of(stream, part_size, AZURE_LIMITS), attributes)

    async def _put_single(
        self, blob: BlobClient, key: str, body: bytes, attributes: _Attributes
    ) -> ObjectInfo:
        digest = await sha256_hex(body)
        metadata = with_checksum(attributes.metadata, digest)

        async def upload() -> dict[str, Any]:
            return await blob.upload_blob(
                body,
                length=len(body),
                overwrite=True,
                metadata=metadata,
                tags=attributes.tags,
                encryption_scope=attributes.encryption_scope,
            )

        result = await self._call(upload, what="upload", key=key, timeout=self._transfer_timeout(len(body)))
        return ObjectInfo(
            key=key,
            size=len(body),
            last_modified=result.get("last_modified"),
            etag=result.get("etag"),
            metadata=attributes.metadata or {},
            sha256=digest,
        )

    async def _put_blocks(
        self, blob: BlobClient, key: str, parts: AsyncIterable[bytes], attributes: _Attributes
    ) -> ObjectInfo:
        upload_id = uuid.uuid4().hex

        async def stage(number: int, body: bytes) -> tuple[str, int]:
            # Same width for every id of the blob (a service rule), unique to this upload.
            block_id = f"{upload_id}-{number:06d}"

            async def request() -> None:
                await blob.stage_block(
                    block_id, body, length=len(body), encryption_scope=attributes.encryption_scope
                )

            await self._call(
                request, what=f"upload block {number} of", key=key, timeout=self._transfer_timeout(len(body))
            )
            return block_id, len(body)

        # On failure or cancellation nothing is committed: see the module docstring.
        whole = RunningDigest()
        staged = await upload_parallel(digesting(parts, whole), stage, self.options.max_concurrency)
        blocks = [BlobBlock(block_id=block_id) for block_id, _ in staged]
        # Put Block List sets the metadata once every byte is known: the checksum goes with it.
        digest = whole.hexdigest()
        metadata = with_checksum(attributes.metadata, digest)

        async def commit() -> dict[str, Any]:
            return await blob.commit_block_list(
                blocks,
                metadata=metadata,
                tags=attributes.tags,
                encryption_scope=attributes.encryption_scope,
            )

        result = await self._call(commit, what="commit the blocks of", key=key)
        return ObjectInfo(
            key=key,
            size=sum(size for _, size in staged),
            last_modified=result.get("last_modified"),
            etag=result.get("etag"),
            metadata=attributes.metadata or {},
            sha256=digest,
        )

    # -- get / head -----------------------------------------------------------------------------

    async def get(self, key: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        blob = self._blob(key)
        if end is not None and end <= start:
            await self.head(key)  # an empty range of a missing object is still NotFound
            return
        download = functools.partial(self._open_download, blob, end=end)
        downloader = await self._call(functools.partial(download, start, None), what="read", key=key)
        if downloader is None:
            return
        etag = getattr(getattr(downloader, "properties", None), "etag", None)
        position, interruptions = start, 0
        # The first GET's answer carries the blob's metadata: a whole read is verified with it.
        metadata = getattr(getattr(downloader, "properties", None), "metadata", None)
        expected = expected_from_metadata(metadata) if start == 0 and end is None else None
        verifier = Verifier(expected, f"{self._where(key)}")
        try:
            # Each chunk is one ranged GET read to its end (the SDK pins the ETag, so a blob
            # replaced mid-read fails instead of mixing versions); nothing stays open in between.
            # A chunk's GET that fails for a transient reason is resumed where it stopped (the
            # SDK's own chunk retries are few and immediate).
            while downloader is not None:
                try:
                    async for chunk in downloader.chunks():
                        position += len(chunk)
                        interruptions = 0  # progress: a long read may be cut several times
                        out = await verifier.push(chunk)
                        if out is not None:
                            yield out
                    break
                except AzureError as error:
                    translated = self._translate(error, "read", key)
                    interruptions += 1
                    if not isinstance(translated, Unavailable) or interruptions >= self.options.max_attempts:
                        raise translated from None
                    await asyncio.sleep(backoff_delay(interruptions))
                    downloader = await self._call(
                        functools.partial(download, position, etag), what="read", key=key
                    )
            tail = await verifier.finish()
            if tail is not None:
                yield tail
        except AzureError as error:
            raise self._translate(error, "read", key) from None
        finally:
            await verifier.aclose()

    @staticmethod
    async def _open_download(blob: BlobClient, position: int, etag: str | None, *, end: int | None) -> Any:
        """The SDK's downloader from ``position`` (to ``end``), pinned to ``etag`` when resuming (the
        same blob or a clear 412, never a mix of two versions); None when the range starts at or
        past the end of the blob."""
        length = None if end is None else end - position
        pinned: dict[str, Any] = (
            {"etag": etag, "match_condition": MatchConditions.IfNotModified} if etag else {}
        )
        try:
            # The SDK wants an offset whenever a length is given; without either it reads all.
            offset = position if position or length is not None else None
            return await blob.download_blob(offset=offset, length=length, max_concurrency=1, **pinned)
        except HttpResponseError as error:
            if error.status_code == 416:  # the range starts at or past the end: nothing to read
                return None
            raise

    async def head(self, key: str) -> ObjectInfo:
        blob = self._blob(key)
        properties: BlobProperties = await self._call(
            blob.get_blob_properties, what="read the properties of", key=key
        )
        metadata, digest = split_checksum(properties.metadata)
        return ObjectInfo(
            key=key,
            size=int(properties.size),
            last_modified=properties.last_modified,
            etag=properties.etag,
            metadata=metadata,
            sha256=digest,
        )

    # -- list -----------------------------------------------------------------------------------

    async def list(
        self, prefix: str, *, delimiter: str | None = None
    ) -> AsyncIterator[ObjectInfo | CommonPrefix]:
        token: str | None = None
        while True:
            entries, token = await self._call(
                functools.partial(self._list_page, prefix, delimiter, token), what=f"list {prefix!r} in"
            )
            for entry in entries:
                yield entry
            if not token:
                return

    async def _list_page(
        self, prefix: str, delimiter: str | None, token: str | None
    ) -> tuple[builtins.list[ObjectInfo | CommonPrefix], str | None]:
        """One page of the listing (retried as a whole) and the token of the next, if any."""
        container = self._container()
        paged: AsyncItemPaged[Any]
        if delimiter:
            paged = container.walk_blobs(
                name_starts_with=prefix or None, delimiter=delimiter, results_per_page=self.list_page_size
            )
        else:
            paged = container.list_blobs(
                name_starts_with=prefix or None, results_per_page=self.list_page_size
            )
        pages = cast("AsyncPageIterator[Any]", paged.by_page(continuation_token=token))
        try:
            page = await anext(pages)
        except StopAsyncIteration:
            return [], None
        except ResourceNotFoundError:
            return [], None  # no container yet: nothing under any prefix
        entries: builtins.list[ObjectInfo | CommonPrefix] = []
        async for item in page:
            if isinstance(item, BlobProperties):
                entries.append(
                    ObjectInfo(item.name, int(item.size), last_modified=item.last_modified, etag=item.etag)
                )
            else:  # azure.storage.blob.aio.BlobPrefix, for a delimited listing
                entries.append(CommonPrefix(str(item.name)))
        if delimiter:
            # The SDK puts a page's prefixes before its blobs; the service sent them interleaved in
            # key order, page after page, so sorting each page restores the listing's order.
            entries.sort(key=lambda entry: entry.key if isinstance(entry, ObjectInfo) else entry.prefix)
        next_token = pages.continuation_token
        return entries, str(next_token) if next_token else None

    async def abort_incomplete_uploads(
        self, prefix: str, *, initiated_before: datetime, keep_prefix: str | None = None
    ) -> int:
        """Drop the staged blocks of uploads under ``prefix`` (not under ``keep_prefix``, last
        touched before ``initiated_before``) that were never committed, under names that hold no
        committed blob: what a process killed in the middle of a staged upload left behind (the
        service keeps them a week). Each such name is committed empty only if no blob exists
        (``If-None-Match: *``), which discards its blocks, and that empty blob is deleted at once
        (``If-Match``): an existing object is never touched. Returns how many were dropped."""
        container = self._container()

        async def listed(include: builtins.list[str] | None) -> dict[str, datetime | None]:
            found: dict[str, datetime | None] = {}
            async for item in container.list_blobs(name_starts_with=prefix or None, include=include):
                found[str(item.name)] = item.last_modified
            return found

        everything = await self._call(
            functools.partial(listed, ["uncommittedblobs"]), what=f"list uncommitted blobs {prefix!r} in"
        )
        committed = await self._call(functools.partial(listed, None), what=f"list {prefix!r} in")
        stale = sorted(
            name
            for name, touched in everything.items()
            if name not in committed
            and (keep_prefix is None or not name.startswith(keep_prefix))
            and (touched is None or touched < initiated_before)
        )
        for name in stale:
            blob = self._blob(name)
            try:
                result = await self._call(
                    functools.partial(blob.commit_block_list, [], match_condition=MatchConditions.IfMissing),
                    what="discard the uncommitted blocks of",
                    key=name,
                )
                etag = str(result.get("etag") or "")
                await self._call(
                    functools.partial(
                        blob.delete_blob, etag=etag, match_condition=MatchConditions.IfNotModified
                    ),
                    what="delete the emptied",
                    key=name,
                )
            except BarmanCloudError as error:
                log.warning(
                    "uncommitted blocks not discarded: the service drops them after seven days",
                    extra={"key": name, "error": str(error)},
                )
        return len(stale)

    # -- delete ---------------------------------------------------------------------------------

    async def delete_many(self, keys: Iterable[str]) -> None:
        """Delete ``keys`` (duplicates once), 256 per request; see the module docstring for failures."""
        names = list(dict.fromkeys(check_key(key) for key in keys))
        for first in range(0, len(names), BATCH_DELETE_MAX):
            batch = names[first : first + BATCH_DELETE_MAX]
            if len(batch) > 1 and self._batch_delete is not False and await self._delete_batch(batch):
                continue
            await self._delete_each(batch)

    async def _delete_batch(self, names: builtins.list[str]) -> bool:
        """Delete ``names`` in one Blob Batch; False when the endpoint does not serve batches."""
        container = self._container()

        async def request() -> builtins.list[tuple[int, str]] | None:
            try:
                responses = await container.delete_blobs(*names, raise_on_any_failure=False)
                results = [
                    (r.status_code, str(r.headers.get("x-ms-error-code") or "")) async for r in responses
                ]
            except HttpResponseError as error:
                if error.status_code in (400, 405, 409, 501):
                    return None  # the batch request itself is not understood
                if _error_code(error) == "ContainerNotFound":
                    return [(404, "ContainerNotFound")] * len(names)
                raise
            if len(results) != len(names) or all(status == 400 for status, _ in results):
                return None  # one answer for the whole batch (Azurite < 3.37): batches unsupported
            failed = [
                (name, status, code)
                for name, (status, code) in zip(names, results, strict=True)
                if not (200 <= status < 300 or status == 404)
            ]
            if failed:
                raise self._batch_failure(failed, len(names))
            return results

        results = await self._call(request, what=f"delete {len(names)} objects from")
        if results is None:
            if self._batch_delete is None:
                log.info(
                    "the endpoint does not serve Blob Batch requests: deleting objects one by one",
                    extra={"endpoint": self._access.endpoint},
                )
            self._batch_delete = False
            return False
        self._batch_delete = True
        return True

    def _batch_failure(self, failed: builtins.list[tuple[str, int, str]], total: int) -> BarmanCloudError:
        name, status, code = failed[0]
        message = (
            f"cannot delete {len(failed)} of {total} objects in {self._where()}: "
            f"first {name!r}: HTTP {status} {code}".rstrip()
        )
        if any(s in (408, 429) or s >= 500 for _, s, _ in failed):
            return Unavailable(message)  # retried: objects already deleted answer 404 next time
        if status in (401, 403):
            return Forbidden(message, hint="the credentials need delete permission on the container")
        if status in (409, 412):
            return Conflict(message, hint="a lease, snapshots or an immutability policy protect the object")
        return BarmanCloudError(message)

    async def _delete_each(self, names: builtins.list[str]) -> None:
        """One Delete Blob per name, a bounded number at a time. Like a batch, every name is tried
        before the first failure is raised, so one protected object does not keep the rest."""
        container = self._container()
        slots = asyncio.Semaphore(SINGLE_DELETE_CONCURRENCY)
        failures: builtins.list[BarmanCloudError] = []

        async def delete(name: str) -> None:
            async def request() -> None:
                with contextlib.suppress(ResourceNotFoundError):  # already gone: fine for delete_many
                    await container.delete_blob(name)

            async with slots:
                try:
                    await self._call(request, what="delete", key=name)
                except BarmanCloudError as error:
                    failures.append(error)

        async with asyncio.TaskGroup() as group:
            for name in names:
                group.create_task(delete(name))
        if failures:
            first = failures[0]
            raise type(first)(
                f"{len(failures)} of {len(names)} deletes failed, first: {first.message}", hint=first.hint
            )


@dataclass(frozen=True)
class _Attributes:
    """What every request of one upload carries besides the bytes."""

    metadata: dict[str, str] | None
    tags: dict[str, str] | None
    encryption_scope: str | None


def _check_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """Refuse what Azure would answer with a bare "400 Bad Request": names must be C# identifiers
    and values plain ASCII (they travel as ``x-ms-meta-<name>`` headers)."""
    for name, value in metadata.items():
        if not _METADATA_NAME.fullmatch(name):
            raise InvalidInput(
                f"metadata name {name!r} is not valid on Azure",
                hint="use letters, digits and '_', not starting with a digit",
            )
        if not _METADATA_VALUE.fullmatch(value):
            raise InvalidInput(
                f"metadata value of {name!r} is not valid on Azure",
                hint="use printable ASCII without line breaks",
            )
    return dict(metadata)


def _error_code(error: HttpResponseError) -> str:
    """The service's error code (``x-ms-error-code``): a plain string or a StorageErrorCode member."""
    code = getattr(error, "error_code", None)
    return str(getattr(code, "value", code) or "")


def _certificate_failure(error: BaseException) -> str | None:
    """The verification message if a TLS certificate check caused ``error``, else None."""
    pending: builtins.list[BaseException] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, aiohttp.ClientConnectorCertificateError):
            # (also an ssl.SSLCertVerificationError by inheritance, without its attributes)
            return _verify_message(current.certificate_error)
        if isinstance(current, ssl.SSLCertVerificationError):
            return _verify_message(current)
        for linked in (current.__cause__, current.__context__, getattr(current, "inner_exception", None)):
            if isinstance(linked, BaseException):
                pending.append(linked)
    return None


def _verify_message(error: BaseException) -> str:
    message = getattr(error, "verify_message", None) or getattr(error, "reason", None)
    return str(message or error)


async def _read_up_to(stream: AsyncIterator[bytes], limit: int) -> tuple[bytearray, bool]:
    """Read until more than ``limit`` bytes are buffered or the stream ends (then True)."""
    buffer = bytearray()
    while len(buffer) <= limit:
        try:
            chunk = await anext(stream)
        except StopAsyncIteration:
            return buffer, True
        buffer += chunk
    return buffer, False


async def _chain(head: bytearray, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The bytes read ahead, then the rest of the stream."""
    view = memoryview(head)
    for offset in range(0, len(head), MiB):
        yield bytes(view[offset : offset + MiB])
    view.release()
    head.clear()  # the read-ahead buffer is not needed once handed on
    async for chunk in rest:
        yield chunk


async def _slices(body: bytes, part_size: int) -> AsyncIterator[bytes]:
    for offset in range(0, len(body), part_size):
        yield body[offset : offset + part_size]
