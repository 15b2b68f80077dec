"""Google Cloud Storage (``gs://BUCKET[/path]``) over the JSON API, on one aiohttp session per store.

Credentials come from gcloud-aio-auth: its ``Token`` knows every credential file Google issues
(service account, authorized user, external account / workload identity federation, impersonation)
and the metadata server (GKE workload identity). The data path is our own small JSON-API client
rather than gcloud-aio-storage's ``Storage``, because ``Storage`` sends a resumable upload as one
``PUT`` of a whole file (a base backup would have to sit on disk or in memory first, the very
problem of barman-cloud#128), offers no way to resume a chunk or cancel a session, takes no
per-request TLS context, and bounds a streamed download by a total timeout rather than by idle time.

What the store sends where:

- the API root is ``endpointURL`` when set, else ``STORAGE_EMULATOR_HOST`` (as Google's libraries
  and gcloud-aio-storage honour it), else ``https://storage.googleapis.com``;
- a bearer token is sent when ``googleCredentials`` asks for one (``applicationCredentials`` or
  ``gkeEnvironment``), or when talking to Google itself with application default credentials.
  Against an emulator without credentials no token is fetched at all: that would mean a metadata
  server lookup, which hangs or fails outside Google Cloud;
- ``endpointCA`` is the only trust anchor for the storage endpoint. It is applied per request, not to
  the whole session, so the token exchange with Google (``oauth2.googleapis.com``) keeps the system
  trust store even when the storage endpoint is private.

Tags are stored as custom object metadata, as barman-cloud does on GCS (barman-cloud-format.md,
sections 7.3 and 7.4); ``encryption.gcs_kms_key_name`` becomes ``kmsKeyName`` on every upload.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import functools
import io
import json
import logging
import os
import ssl
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from datetime import datetime
from typing import Any, NoReturn
from urllib.parse import quote

import aiohttp
from gcloud.aio.auth import Token
from yarl import URL

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
    CHECKSUM_METADATA,
    Expected,
    RunningDigest,
    Verifier,
    digesting,
    expected_from_goog_hash,
    expected_from_metadata,
    sha256_hex,
    split_checksum,
)
from barman_cloud.storage.keys import check_key
from barman_cloud.storage.options import GoogleCredentials, MiB, StoreOptions
from barman_cloud.storage.parts import GCS_LIMITS, part_size_for, parts_of
from barman_cloud.storage.retry import backoff_delay, with_retries
from barman_cloud.storage.sessions import settle_closed_connections

log = logging.getLogger(__name__)

GOOGLE_API_ROOT = "https://storage.googleapis.com"
SCOPES = ["https://www.googleapis.com/auth/devstorage.read_write"]
"""Objects are read, written and deleted; nothing here needs ``full_control`` (ACLs, bucket IAM)."""
CHUNK_ALIGNMENT = 256 * 1024
"""Every chunk of a resumable upload but the last must be a multiple of 256 KiB."""
READ_CHUNK = 1 * MiB
"""Upper bound of one chunk yielded by ``get``."""
LIST_PAGE = 1000
LIST_FIELDS = "items(name,size,updated,etag,generation),prefixes,nextPageToken"
"""Partial response: a listing page without ACLs and checksums is a fraction of the size."""
DELETE_CONCURRENCY = 32
"""Deletes in flight at once. A delete holds no data, so this is not tied to ``max_concurrency``
(which bounds the memory of upload parts); 32 amortises round trips much like barman's batches of
100, without the batch endpoint's per-item error parsing."""
MIN_RATE = 64 * 1024
"""Bytes per second below which a request with a body is given up as stalled: its attempt timeout
is ``connect + read + size / MIN_RATE`` (aiohttp notices a silent response, not a stalled upload)."""
TOKEN_REFRESH_MARGIN = 300.0
"""Seconds before expiry at which a cached access token is replaced."""
ERROR_BODY_LIMIT = 16 * 1024
CREDENTIAL_TYPES = frozenset(
    {"service_account", "authorized_user", "external_account", "impersonated_service_account"}
)
_RETRYABLE_STATUS = frozenset({408, 429})


class GCSStore:
    """A bucket (and base path) on Google Cloud Storage or a GCS-compatible endpoint.

    Uploads up to ``options.single_put_max`` bytes go in one multipart request. Larger ones (by
    ``size_hint``, by length, or a stream that outgrows the limit) use a resumable upload session fed
    one chunk at a time while the next chunk is read from the source, so memory stays at about two
    chunks. Parallel parts are not used on GCS on purpose: a resumable session accepts its chunks
    strictly in order, and the alternative, parallel composite uploads (temporary objects then
    ``compose``), leaves visible temporary objects behind on failure, cannot delete them under a
    bucket retention policy or object lock (common on backup buckets), incurs early-deletion charges
    on Nearline/Coldline/Archive buckets, and produces objects without an MD5 hash. A failed or
    cancelled upload cancels its session: nothing appears under the key, and an object already there
    is left untouched.
    """

    features = frozenset({Feature.METADATA, Feature.TAGS, Feature.RANGED_GET, Feature.SERVER_SIDE_ENCRYPTION})

    def __init__(
        self, location: StoreLocation, credentials: GoogleCredentials, options: StoreOptions
    ) -> None:
        self.location = location
        self.options = options
        self._api_root, emulator = _api_root(options.endpoint_url)
        self._credentials_json = (
            _checked_credentials(credentials.application_credentials)
            if credentials.application_credentials is not None
            else None
        )
        explicit = self._credentials_json is not None or credentials.gke_environment
        self._sends_token = explicit or not emulator
        self._ssl: ssl.SSLContext | bool = (
            _trust_exactly(options.endpoint_ca) if options.endpoint_ca is not None else True
        )
        bucket = quote(location.bucket, safe="")
        self._objects_url = f"{self._api_root}/storage/v1/b/{bucket}/o"
        self._upload_url = URL(f"{self._api_root}/upload/storage/v1/b/{bucket}/o", encoded=True)
        self._session: aiohttp.ClientSession | None = None
        self._tokens: _AccessTokens | None = None
        self._tokens_lock = asyncio.Lock()
        self._closed = False

    # -- the Store protocol -------------------------------------------------------------------------

    async def put(
        self,
        key: str,
        data: bytes | AsyncIterable[bytes],
        *,
        size_hint: int | None = None,
        metadata: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        check_key(key)
        resource: dict[str, Any] = {"name": key, "contentType": "application/octet-stream"}
        custom = {**(tags or {}), **(metadata or {})}  # the engine's own metadata wins over user tags
        if custom:
            resource["metadata"] = {str(k): str(v) for k, v in custom.items()}
        limit = self.options.single_put_max
        chunk_size = self._chunk_size(size_hint)
        if isinstance(data, bytes):
            if len(data) <= limit:
                return await self._put_single(key, data, resource)
            return await self._put_resumable(key, _slices(data, chunk_size), chunk_size, resource)
        if size_hint is not None and size_hint > limit:
            return await self._put_resumable(key, parts_of(data, chunk_size), chunk_size, resource)
        # Unknown or small size: buffer up to the single-request limit to find out which it is.
        first, rest = await _read_up_to(data, limit)
        if rest is None:
            body = b"".join(first)
            first.clear()  # the pieces go as soon as they are joined
            return await self._put_single(key, body, resource)
        return await self._put_resumable(key, parts_of(_chain(first, rest), chunk_size), chunk_size, resource)

    async def get(self, key: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream the object; a broken download resumes from the last byte received.

        Resumed requests pin the generation seen first, so a download never splices two versions of
        an object that is replaced meanwhile.
        """
        check_key(key)
        if end is not None and end <= start:
            await self.head(key)  # an empty range still tells a missing object apart
            return
        position = start
        failures = 0
        response, generation = await self._open_download(key, position, end, None)
        whole = start == 0 and end is None
        verifier = Verifier(_expected(response) if whole else None, self._what(key))
        try:
            while response is not None and (end is None or position < end):
                try:
                    async for chunk in response.content.iter_chunked(READ_CHUNK):
                        if end is not None and position + len(chunk) > end:
                            chunk = chunk[: end - position]  # a server that ignored the range
                        position += len(chunk)
                        failures = 0
                        if chunk:
                            out = await verifier.push(chunk)
                            if out is not None:
                                yield out
                        if end is not None and position >= end:
                            break
                    break
                except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, TimeoutError) as error:
                    failures += 1
                    if failures >= self.options.max_attempts:
                        raise Unavailable(
                            f"download of {self._what(key)} broke at byte {position}, "
                            f"{failures} attempts: {_describe(error)}"
                        ) from error
                    response.release()
                    response = None
                    await asyncio.sleep(backoff_delay(failures))
                    response, generation = await self._open_download(key, position, end, generation)
            tail = await verifier.finish()
            if tail is not None:
                yield tail
        finally:
            if response is not None:
                response.release()
            await verifier.aclose()

    async def head(self, key: str) -> ObjectInfo:
        check_key(key)
        url = self._object_url(key)

        async def attempt() -> dict[str, Any]:
            return await self._json("GET", url, key=key, params={"projection": "noAcl"})

        resource = await with_retries(
            attempt,
            what=f"head {self._what(key)}",
            attempts=self.options.max_attempts,
            timeout=self._timeout(),
        )
        return _info(resource)

    async def list(
        self, prefix: str, *, delimiter: str | None = None
    ) -> AsyncIterator[ObjectInfo | CommonPrefix]:
        """Every page of ``objects.list``, objects and common prefixes merged in name order."""
        url = URL(self._objects_url, encoded=True)
        params: dict[str, str] = {"maxResults": str(LIST_PAGE), "fields": LIST_FIELDS}
        if prefix:
            params["prefix"] = prefix
        if delimiter:
            params["delimiter"] = delimiter
        while True:
            page = await with_retries(
                functools.partial(self._json, "GET", url, key=prefix, listing=True, params=dict(params)),
                what=f"list {self._what(prefix)}*",
                attempts=self.options.max_attempts,
                timeout=self._timeout(),
            )
            entries: builtins.list[ObjectInfo | CommonPrefix] = [
                _info(item, checksum=False) for item in page.get("items", [])
            ]
            entries.extend(CommonPrefix(str(p)) for p in page.get("prefixes", []))
            entries.sort(key=lambda e: e.key if isinstance(e, ObjectInfo) else e.prefix)
            for entry in entries:
                yield entry
            token = page.get("nextPageToken")
            if not token:
                return
            params["pageToken"] = str(token)

    async def delete_many(self, keys: Iterable[str]) -> None:
        """One ``DELETE`` per object, ``DELETE_CONCURRENCY`` at a time; missing objects are fine."""
        names = builtins.list(dict.fromkeys(check_key(key) for key in keys))
        slots = asyncio.Semaphore(DELETE_CONCURRENCY)

        async def one(key: str) -> None:
            try:
                await with_retries(
                    lambda: self._delete(key),
                    what=f"delete {self._what(key)}",
                    attempts=self.options.max_attempts,
                    timeout=self._timeout(),
                )
            finally:
                slots.release()

        try:
            async with asyncio.TaskGroup() as group:
                for key in names:
                    await slots.acquire()
                    group.create_task(one(key))
        except BaseExceptionGroup as failures:
            raise failures.exceptions[0] from None

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None
            await settle_closed_connections()

    # -- uploads --------------------------------------------------------------------------------------

    def _chunk_size(self, size_hint: int | None) -> int:
        size = part_size_for(size_hint, GCS_LIMITS, self.options.part_size)
        return -(-size // CHUNK_ALIGNMENT) * CHUNK_ALIGNMENT

    def _upload_params(self, **params: str) -> dict[str, str]:
        kms_key = self.options.encryption.gcs_kms_key_name
        return {**params, "kmsKeyName": kms_key} if kms_key else params

    async def _put_single(self, key: str, body: bytes, resource: dict[str, Any]) -> ObjectInfo:
        """One ``uploadType=multipart`` request: the resource (name, metadata) and the bytes."""
        params = self._upload_params(uploadType="multipart")
        digest = await sha256_hex(body)
        resource = {**resource, "metadata": {**resource.get("metadata", {}), CHECKSUM_METADATA: digest}}

        async def attempt() -> dict[str, Any]:
            writer = aiohttp.MultipartWriter("related")
            writer.append_json(resource)
            # BytesIO (sharing the bytes, not copying them) is written in pieces between which the
            # event loop runs; raw bytes would go out in one blocking write.
            writer.append(io.BytesIO(body), {"Content-Type": "application/octet-stream"})
            return await self._json("POST", self._upload_url, key=key, params=params, data=writer)

        result = await with_retries(
            attempt,
            what=f"upload {self._what(key)}",
            attempts=self.options.max_attempts,
            timeout=self._timeout(len(body)),
        )
        return dataclasses.replace(_info(result), sha256=digest)

    async def _put_resumable(
        self, key: str, chunks: AsyncIterator[bytes], chunk_size: int, resource: dict[str, Any]
    ) -> ObjectInfo:
        """Feed a resumable session chunk by chunk, reading the next chunk while one is sent.

        A chunk shorter than ``chunk_size`` is the last one and carries the total size; when the
        source ends on a chunk boundary the session is finalised by an empty request.
        """
        # The session's metadata is fixed before the first byte: the object gets no checksum of
        # ours (GCS's own MD5 serves on reads); the digest is returned for the caller's records.
        whole = RunningDigest()
        chunks = aiter(digesting(chunks, whole))
        session = await self._start_session(key, resource)
        upcoming: asyncio.Task[bytes | None] | None = None
        try:
            offset = 0
            reading = upcoming = asyncio.create_task(_next(chunks))
            while True:
                chunk = await reading
                upcoming = None
                if chunk is None:
                    result = await self._send_chunk(session, key, b"", offset, final=True)
                    break
                final = len(chunk) < chunk_size
                if not final:
                    reading = upcoming = asyncio.create_task(_next(chunks))
                result = await self._send_chunk(session, key, chunk, offset, final=final)
                offset += len(chunk)
                if final:
                    break
        except BaseException:
            if upcoming is not None:
                await _discard(upcoming)
            await asyncio.shield(self._cancel_session(session, key))
            raise
        if result is None:
            raise Unavailable(f"upload of {self._what(key)}: the server did not confirm the finished object")
        return dataclasses.replace(_info(result), sha256=whole.hexdigest())

    async def _start_session(self, key: str, resource: dict[str, Any]) -> URL:
        params = self._upload_params(uploadType="resumable", name=key)

        async def attempt() -> URL:
            response = await self._send(
                "POST",
                self._upload_url,
                params=params,
                json_body=resource,
                headers={"X-Upload-Content-Type": "application/octet-stream"},
            )
            try:
                if response.status not in (200, 201):
                    await self._raise_for(response, key, bucket_call=True)
                location = response.headers.get("Location")
                if not location:
                    raise Unavailable(f"upload of {self._what(key)}: no session URI in the server's answer")
                return response.url.join(URL(location, encoded=True))
            finally:
                response.release()

        return await with_retries(
            attempt,
            what=f"start upload of {self._what(key)}",
            attempts=self.options.max_attempts,
            timeout=self._timeout(),
        )

    async def _send_chunk(
        self, session: URL, key: str, chunk: bytes, offset: int, *, final: bool
    ) -> dict[str, Any] | None:
        """Send ``chunk`` at ``offset``; the object resource once the upload is complete.

        After a failed attempt the next one first asks the session how much it has committed and
        sends only the rest: a chunk that failed half-way, or whose answer was lost, is resumed, not
        sent twice.
        """
        end = offset + len(chunk)
        total = str(end) if final else "*"
        committed = offset
        failed_before = False

        async def attempt() -> dict[str, Any] | None:
            nonlocal committed, failed_before
            if failed_before:
                status = await self._session_status(session, key)
                if isinstance(status, dict):
                    return status
                if status < offset:
                    raise Unavailable(
                        f"upload of {self._what(key)}: the session lost bytes it had confirmed "
                        f"({status} < {offset})"
                    )
                committed = status
            failed_before = True
            while True:
                body = chunk if committed == offset else chunk[committed - offset :]
                if not body and not final:
                    failed_before = False
                    return None
                content_range = f"bytes {committed}-{end - 1}/{total}" if body else f"bytes */{total}"
                response = await self._send(
                    "PUT", session, data=io.BytesIO(body), headers={"Content-Range": content_range}
                )
                try:
                    if response.status in (200, 201):
                        failed_before = False
                        return await _read_json(response, f"upload of {self._what(key)}")
                    if response.status == 308:
                        confirmed = _committed(response.headers.get("Range"))
                        if confirmed <= committed and body:
                            raise Unavailable(f"upload of {self._what(key)}: the server accepted no bytes")
                        committed = confirmed
                        if committed >= end and not final:
                            failed_before = False
                            return None
                        continue  # part of the chunk was not persisted: send the rest
                    await self._raise_for_session(response, key)
                finally:
                    response.release()

        return await with_retries(
            attempt,
            what=f"upload of {self._what(key)} at byte {offset}",
            attempts=self.options.max_attempts,
            timeout=self._timeout(len(chunk)),
        )

    async def _session_status(self, session: URL, key: str) -> int | dict[str, Any]:
        """Bytes the session has committed, or the object resource if the upload already finished."""
        response = await self._send("PUT", session, data=b"", headers={"Content-Range": "bytes */*"})
        try:
            if response.status in (200, 201):
                return await _read_json(response, f"upload of {self._what(key)}")
            if response.status == 308:
                return _committed(response.headers.get("Range"))
            await self._raise_for_session(response, key)
        finally:
            response.release()

    async def _cancel_session(self, session: URL, key: str) -> None:
        """Best effort: an uncancelled session expires by itself after a week and is never billed."""
        try:
            async with asyncio.timeout(self._timeout()):
                response = await self._send("DELETE", session)
                response.release()
        except Exception as error:  # the upload's own error is the one to report
            log.warning(
                "could not cancel an upload session",
                extra={"object": self._what(key), "error": _describe(error)},
            )

    async def _raise_for_session(self, response: aiohttp.ClientResponse, key: str) -> NoReturn:
        if response.status in (404, 410):
            raise Unavailable(
                f"upload of {self._what(key)}: the upload session no longer exists",
                hint="retry the upload: a new session starts again from the first byte",
            )
        await self._raise_for(response, key)

    # -- downloads, deletes ---------------------------------------------------------------------------

    async def _open_download(
        self, key: str, position: int, end: int | None, generation: str | None
    ) -> tuple[aiohttp.ClientResponse | None, str | None]:
        """A response positioned at ``position`` (headers received, body not read yet), or None
        when the range starts at or past the end of the object (no bytes to read)."""
        url = self._object_url(key)
        params = {"alt": "media"}
        if generation:
            params["generation"] = generation
        headers = {"Accept-Encoding": "identity"}
        if position > 0 or end is not None:
            headers["Range"] = f"bytes={position}-{'' if end is None else end - 1}"

        async def attempt() -> aiohttp.ClientResponse | None:
            response = await self._send("GET", url, params=params, headers=headers, raw=True)
            if response.status == 206 or (response.status == 200 and position == 0):
                return response
            try:
                if response.status == 416:
                    return None
                if response.status == 200:
                    raise InvalidInput(
                        f"download of {self._what(key)}: the endpoint ignored the Range header",
                        hint="use an endpointURL that implements the GCS JSON API fully",
                    )
                await self._raise_for(response, key)
            finally:
                response.release()

        response = await with_retries(
            attempt,
            what=f"download {self._what(key)}",
            attempts=self.options.max_attempts,
            timeout=self._timeout(),
        )
        if response is None:
            return None, generation
        return response, generation or response.headers.get("X-Goog-Generation")

    async def _delete(self, key: str) -> None:
        response = await self._send("DELETE", self._object_url(key))
        try:
            if response.status in (200, 204, 404):
                return
            await self._raise_for(response, key)
        finally:
            response.release()

    # -- HTTP ---------------------------------------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        if self._closed:
            raise BarmanCloudError(f"the store for {self.location.url} is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    sock_connect=self.options.connect_timeout,
                    sock_read=self.options.read_timeout,
                ),
                trust_env=True,  # HTTPS_PROXY / NO_PROXY, as Google's own libraries honour them
            )
        return self._session

    async def _auth_headers(self) -> dict[str, str]:
        if not self._sends_token:
            return {}
        if self._tokens is None:
            async with self._tokens_lock:
                if self._tokens is None:
                    self._tokens = await self._make_tokens()
        return {"Authorization": f"Bearer {await self._tokens.get(self._timeout())}"}

    async def _make_tokens(self) -> _AccessTokens:
        session = self._client()
        secret = self._credentials_json

        def build() -> Token:
            # The key stays in memory: gcloud-aio-auth reads a file-like object as well as a path.
            service_file = io.StringIO(secret) if secret is not None else None
            # gcloud-aio-auth annotates ``session`` with its requests-flavoured build's type.
            return Token(service_file=service_file, session=session, scopes=SCOPES)  # type: ignore[arg-type]

        try:
            token = await asyncio.to_thread(build)  # without a key it reads the ADC file from disk
        except (OSError, ValueError, KeyError) as error:
            raise InvalidInput(
                f"Google application default credentials could not be loaded ({type(error).__name__})",
                hint="check GOOGLE_APPLICATION_CREDENTIALS, or set googleCredentials.applicationCredentials",
            ) from None
        except Exception:  # gcloud-aio-auth raises bare Exception for some
            raise InvalidInput(
                "the Google credentials cannot be used for a token",
                hint="impersonated credentials need their source credentials and scopes",
            ) from None
        return _AccessTokens(token)

    async def _send(
        self,
        method: str,
        url: URL,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        json_body: Any = None,
        raw: bool = False,
    ) -> aiohttp.ClientResponse:
        """One request with credentials; connection failures become engine errors.

        ``raw`` (object bytes): no transparent decompression, so ranges count stored bytes. JSON
        answers are decompressed (Google gzips them when the client accepts it).

        Messages never carry the URL: a resumable session URI is itself a credential for its upload.
        """
        session = self._client()
        request_headers = await self._auth_headers()
        request_headers.update(headers or {})
        try:
            return await session.request(
                method,
                url,
                params=params,
                headers=request_headers,
                data=data,
                json=json_body,
                ssl=self._ssl,
                allow_redirects=False,
                auto_decompress=not raw,
            )
        except aiohttp.ClientConnectorCertificateError as error:
            raise InvalidInput(
                f"TLS verification of {self._endpoint()} failed: {error.certificate_error}",
                hint="set endpointCA to the PEM bundle of the certificate authority that signed the "
                "endpoint's certificate, or fix endpointURL",
            ) from error
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as error:
            raise Unavailable(f"{method} to {self._endpoint()} failed: {_describe(error)}") from error

    async def _json(
        self,
        method: str,
        url: URL,
        *,
        key: str,
        listing: bool = False,
        params: Mapping[str, str] | None = None,
        data: Any = None,
    ) -> dict[str, Any]:
        """A JSON API call; ``listing``: ``key`` is a prefix and a 404 means the bucket is missing."""
        response = await self._send(method, url, params=params, data=data)
        what = f"{self._what(key)}{'*' if listing else ''}"
        try:
            if 200 <= response.status < 300:
                return await _read_json(response, f"{method} {what}")
            # A listing or an insert (POST) names no existing object: its 404 is about the bucket.
            await self._raise_for(response, key, what=what, bucket_call=listing or method == "POST")
        finally:
            response.release()

    async def _raise_for(
        self,
        response: aiohttp.ClientResponse,
        key: str,
        *,
        what: str | None = None,
        bucket_call: bool = False,
    ) -> NoReturn:
        """Map an HTTP error answer to the engine's errors. ``bucket_call`` (listings, uploads): a 404
        means the bucket is missing rather than the object."""
        status = response.status
        detail = await _error_detail(response)
        bucket = self.location.bucket
        if status == 404:
            if bucket_call:
                raise NotFound(
                    f"bucket {bucket!r} does not exist at {self._endpoint()}",
                    hint="create the bucket, or fix destinationPath",
                )
            raise NotFound(f"object {key!r} not found in bucket {bucket!r}")
        what = what or self._what(key)
        if status in (401, 403):
            hint = (
                "check googleCredentials (applicationCredentials or gkeEnvironment) and that the account "
                f"may read and write objects in bucket {bucket!r} (for example roles/storage.objectAdmin)"
            )
            if not self._sends_token:
                hint = (
                    "no token was sent because the endpoint is an emulator endpoint (endpointURL or "
                    "STORAGE_EMULATOR_HOST); set googleCredentials to authenticate to a private endpoint"
                )
            raise Forbidden(f"access to {what} refused (HTTP {status}): {detail}", hint=hint)
        if status in _RETRYABLE_STATUS or status >= 500:
            raise Unavailable(f"{what}: HTTP {status}: {detail}")
        if status in (409, 412):
            raise Conflict(f"{what}: HTTP {status}: {detail}")
        if status == 400:
            raise InvalidInput(f"{what}: rejected by the server (HTTP 400): {detail}")
        raise BarmanCloudError(f"{what}: unexpected HTTP {status}: {detail}")

    # -- naming -------------------------------------------------------------------------------------

    def _object_url(self, key: str) -> URL:
        return URL(f"{self._objects_url}/{quote(key, safe='')}", encoded=True)

    def _what(self, key: str) -> str:
        return f"gs://{self.location.bucket}/{key}"

    def _endpoint(self) -> str:
        return str(URL(self._api_root).origin()).rstrip("/")

    def _timeout(self, body_size: int = 0) -> float:
        return self.options.connect_timeout + self.options.read_timeout + body_size / MIN_RATE


class _AccessTokens:
    """Bearer tokens from gcloud-aio-auth, cached until shortly before they expire.

    ``Token.refresh`` does one exchange with the token endpoint or metadata server. ``Token.get`` is
    not used: it retries internally (tenacity, five tries, up to a minute of waits), which would hide
    a refused credential behind minutes of retries and stack under the store's own retries. Here a
    refusal is a :class:`Forbidden` at once and a network failure an :class:`Unavailable` that the
    request's retry loop handles.
    """

    def __init__(self, token: Token) -> None:
        self._token = token
        self._value: str | None = None
        self._valid_until = 0.0
        self._lock = asyncio.Lock()

    async def get(self, timeout: float) -> str:
        if self._value is not None and time.monotonic() < self._valid_until:
            return self._value
        async with self._lock:
            if self._value is not None and time.monotonic() < self._valid_until:
                return self._value
            try:
                answer = await self._token.refresh(timeout=max(1, int(timeout)))
            except aiohttp.ClientResponseError as error:
                raise _token_refused(error.status, error.message) from None
            except (aiohttp.ClientConnectionError, TimeoutError) as error:
                raise Unavailable(f"cannot reach the Google token endpoint: {_describe(error)}") from None
            except (KeyError, ValueError, TypeError) as error:
                # A malformed key (jwt/cryptography) or answer; the error text may quote key material.
                raise InvalidInput(
                    f"the Google credentials could not be used to obtain a token ({type(error).__name__})",
                    hint="check that googleCredentials.applicationCredentials is a complete key file",
                ) from None
            lifetime = float(answer.expires_in)
            margin = TOKEN_REFRESH_MARGIN if lifetime > 2 * TOKEN_REFRESH_MARGIN else lifetime / 2
            self._value = str(answer.value)
            self._valid_until = time.monotonic() + lifetime - margin
            return self._value


def _token_refused(status: int, message: str) -> BarmanCloudError:
    """gcloud-aio-auth's error message is ``reason: body``; keep only OAuth's error fields."""
    detail = ""
    with contextlib.suppress(ValueError, IndexError, AttributeError):
        body = json.loads(message.split(": ", 1)[1])
        detail = ": " + ": ".join(str(body[f]) for f in ("error", "error_description") if body.get(f))
    if status in (400, 401, 403):
        return Forbidden(
            f"Google refused the credentials (HTTP {status} from the token endpoint){detail}",
            hint="check googleCredentials (a valid, enabled service-account key, or the workload "
            "identity binding of the pod's service account)",
        )
    if status in _RETRYABLE_STATUS or status >= 500:
        return Unavailable(f"the Google token endpoint answered HTTP {status}{detail}")
    return BarmanCloudError(f"the Google token endpoint answered HTTP {status}{detail}")


def _api_root(endpoint_url: str | None) -> tuple[str, bool]:
    """The JSON API root and whether it is an emulator-style endpoint (no token unless asked)."""
    if endpoint_url:
        return endpoint_url.rstrip("/"), True
    host = os.environ.get("STORAGE_EMULATOR_HOST")
    if host:
        return (host if host.startswith("http") else f"http://{host}").rstrip("/"), True
    return GOOGLE_API_ROOT, False


def _checked_credentials(text: str) -> str:
    """Validate the key file's shape without ever quoting it (it holds a private key)."""
    hint = "use the JSON key file as Google Cloud issues it (service account or external account)"
    try:
        data = json.loads(text)
    except ValueError:
        raise InvalidInput("googleCredentials.applicationCredentials is not valid JSON", hint=hint) from None
    kind = data.get("type") if isinstance(data, dict) else None
    if kind not in CREDENTIAL_TYPES:
        raise InvalidInput(
            "googleCredentials.applicationCredentials has no supported 'type'",
            hint=f"expected one of {', '.join(sorted(CREDENTIAL_TYPES))}",
        )
    if kind == "service_account":
        missing = [field for field in ("client_email", "private_key") if not data.get(field)]
        if missing:
            raise InvalidInput(
                f"googleCredentials.applicationCredentials lacks {', '.join(missing)}", hint=hint
            )
    return text


def _trust_exactly(pem: bytes) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cadata=pem.decode("ascii"))
    except (ssl.SSLError, ValueError, UnicodeDecodeError) as error:
        raise InvalidInput(
            "endpointCA is not a PEM bundle of CA certificates",
            hint=f"give the PEM-encoded certificate authority of the endpoint ({type(error).__name__})",
        ) from None


def _info(resource: Mapping[str, Any], *, checksum: bool = True) -> ObjectInfo:
    """An object resource as ObjectInfo; ``checksum=False`` for listings (which Google sends
    without metadata: the same ObjectInfo whatever the endpoint)."""
    metadata = resource.get("metadata") or {}
    etag = resource.get("etag") or resource.get("generation")
    custom, digest = split_checksum({str(k): str(v) for k, v in metadata.items() if v is not None})
    return ObjectInfo(
        key=str(resource["name"]),
        size=int(resource.get("size") or 0),
        last_modified=_timestamp(resource.get("updated")),
        etag=str(etag) if etag else None,
        metadata=custom,
        sha256=digest if checksum else None,
    )


def _expected(response: aiohttp.ClientResponse | None) -> Expected | None:
    """What a whole download must hash to, from its own headers: our checksum when GCS returns
    the custom metadata (``x-goog-meta-bcp_sha256``), else the MD5 GCS computed at upload.

    Nothing for an object stored with a ``Content-Encoding`` (another tool's upload, such as
    ``gsutil cp -Z``; we never set one) that GCS decompressed on the way (decompressive
    transcoding: we ask for ``identity``): both hashes describe the stored bytes, not the ones
    served, which are the object's content as barman's client reads it too."""
    if response is None:
        return None
    stored_encoding = response.headers.get("x-goog-stored-content-encoding", "identity")
    served_encoding = response.headers.get("Content-Encoding", "identity")
    if stored_encoding.lower() != "identity" and served_encoding.lower() != stored_encoding.lower():
        return None
    ours = response.headers.get(f"x-goog-meta-{CHECKSUM_METADATA}")
    if ours is not None:
        expected = expected_from_metadata({CHECKSUM_METADATA: ours})
        if expected is not None:
            return expected
    return expected_from_goog_hash(response.headers.get("x-goog-hash"))


def _timestamp(value: object) -> datetime | None:
    """RFC 3339 with ``Z``; fractions are cut to microseconds (``fromisoformat`` takes at most six)."""
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    if "." in text:
        whole, rest = text.split(".", 1)
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{whole}.{rest[: min(digits, 6)]}{rest[digits:]}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _committed(range_header: str | None) -> int:
    """Bytes committed, from a 308's ``Range: bytes=0-N`` (no header: none yet)."""
    if not range_header:
        return 0
    try:
        return int(range_header.rsplit("-", 1)[1]) + 1
    except (IndexError, ValueError):
        raise Unavailable(f"unreadable Range header in an upload answer: {range_header!r}") from None


async def _read_json(response: aiohttp.ClientResponse, what: str) -> dict[str, Any]:
    """The answer's JSON object; a cut or garbled answer is Unavailable (the call is retried)."""
    try:
        result = await response.json(content_type=None)
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, ValueError) as error:
        raise Unavailable(f"{what}: incomplete answer ({_describe(error)})") from error
    if not isinstance(result, dict):
        raise Unavailable(f"{what}: the answer is not a JSON object")
    return result


async def _error_detail(response: aiohttp.ClientResponse) -> str:
    """The server's own message (GCS JSON errors carry ``error.message``), short."""
    try:
        raw = await response.content.read(ERROR_BODY_LIMIT)
    except (aiohttp.ClientError, TimeoutError):
        return response.reason or "no details"
    text = raw.decode("utf-8", errors="replace").strip()
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        message = json.loads(text)["error"]["message"]
        if isinstance(message, str) and message:
            return message[:300]
    return text[:200] or response.reason or "no details"


def _describe(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


async def _next(chunks: AsyncIterator[bytes]) -> bytes | None:
    return await anext(chunks, None)


async def _discard(task: asyncio.Task[bytes | None]) -> None:
    """Stop a read-ahead whose chunk is no longer wanted, and consume its outcome."""
    task.cancel()
    with contextlib.suppress(BaseException):
        await task


async def _slices(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, max(len(data), 1), size):
        yield data[start : start + size]


async def _read_up_to(
    data: AsyncIterable[bytes], limit: int
) -> tuple[list[bytes], AsyncIterator[bytes] | None]:
    """The stream's first chunks until more than ``limit`` bytes; the rest of the stream, or None if
    it ended within the limit."""
    iterator = aiter(data)
    chunks: list[bytes] = []
    size = 0
    async for chunk in iterator:
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return chunks, iterator
    return chunks, None


async def _chain(first: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``first`` then ``rest``, letting go of each buffered chunk as soon as it is handed over."""
    pending = deque(first)
    first.clear()
    while pending:
        yield pending.popleft()
    async for chunk in rest:
        yield chunk
