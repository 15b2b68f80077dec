"""AWS S3 and S3-compatible stores (MinIO, Ceph RGW, ...) through aiobotocore.

One aiobotocore client (one aiohttp connection pool) per store, created on first use and shared by
every call, so uploads, listings and WAL pushes reuse warm connections instead of paying a TCP and
TLS handshake each. botocore's own retries are off: every call goes through
:func:`~barman_cloud.storage.retry.with_retries`, which retries only what the error mapping below
calls :class:`~barman_cloud.errors.Unavailable` and bounds every attempt with a timeout.

Compatibility choices (barman-cloud-format.md, section 7.1):

- checksums are only sent where an operation requires one (``StoreOptions.s3_checksums``), because
  several S3-compatible stores reject or store verbatim the default CRC32 ``aws-chunked`` trailers
  (upstream issue #393);
- DeleteObjects always carries ``Content-MD5``, which the S3 specification requires and which every
  S3-compatible store understands (botocore would send only a CRC32 header); stores that still refuse
  it (``MissingContentMD5``) get one DeleteObject per key, as barman 3.16+ does;
- tags are the URL-encoded ``k=v&k2=v2`` query string barman writes.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import hashlib
import logging
import os
import ssl
import tempfile
import weakref
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterable, Mapping
from datetime import datetime
from typing import Any, cast
from urllib.parse import quote_plus, urlencode

import aiobotocore.session
import aiohttp
import botocore.auth  # type: ignore[import-untyped]
from aiobotocore.config import AioConfig
from botocore import exceptions as botocore_errors

from barman_cloud.errors import (
    BarmanCloudError,
    Conflict,
    FailedPrecondition,
    Forbidden,
    InvalidInput,
    NotFound,
    Unavailable,
)
from barman_cloud.storage import CommonPrefix, Feature, ObjectInfo, StoreLocation
from barman_cloud.storage.integrity import (
    RunningDigest,
    digesting,
    expected_from_metadata,
    sha256_hex,
    split_checksum,
    verified,
    with_checksum,
)
from barman_cloud.storage.keys import check_key
from barman_cloud.storage.options import MiB, S3Credentials, StoreOptions
from barman_cloud.storage.parts import S3_LIMITS, part_size_for, parts_of, upload_parallel
from barman_cloud.storage.retry import backoff_delay, with_retries
from barman_cloud.storage.sessions import settle_closed_connections

log = logging.getLogger(__name__)

DEFAULT_REGION = "us-east-1"
DELETE_BATCH = 1000
"""DeleteObjects accepts at most 1000 keys per request."""
READ_CHUNK = 1 * MiB
"""Upper bound of one chunk yielded by ``get`` (aiohttp hands over what it has buffered)."""
EXTRA_CONNECTIONS = 8
"""Pool connections beyond ``max_concurrency``: listings, heads and other objects' uploads run
beside one object's parallel parts without waiting for a connection (waiting eats the attempt's
timeout)."""
MIN_POOL = 32
MIN_RATE = 64 * 1024
"""Bytes per second below which a request with a body is given up as stalled (the per-attempt
timeout is ``connect + read + size / MIN_RATE``: aiohttp detects a stalled response, not a stalled
upload body)."""
PER_KEY_DELETE_CONCURRENCY = 16

_NOT_FOUND = frozenset({"NoSuchKey", "NotFound", "404", "NoSuchVersion"})
_FORBIDDEN = frozenset(
    {
        "AccessDenied",
        "403",
        "Forbidden",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AllAccessDisabled",
        "AccountProblem",
        "InvalidSecurity",
        "InvalidClientTokenId",
    }
)
_RETRYABLE = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "ProvisionedThroughputExceededException",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "OperationAborted",
        "PriorRequestNotComplete",
        "XAmzContentSHA256Mismatch",
        "BadDigest",
    }
)
_CERTIFICATE_FAILURES = ("certificate verify failed", "certificate_verify_failed")


class S3Store:
    """``s3://BUCKET/path`` on AWS or any S3-compatible endpoint (``endpointURL``)."""

    features = frozenset({Feature.TAGS, Feature.METADATA, Feature.RANGED_GET, Feature.SERVER_SIDE_ENCRYPTION})

    def __init__(self, location: StoreLocation, credentials: S3Credentials, options: StoreOptions) -> None:
        self.location = location
        self.bucket = location.bucket
        self._credentials = credentials
        self._options = options
        self._client: Any = None
        self._client_context: Any = None
        self._opening = asyncio.Lock()
        self._closed = False
        self._ca_file: str | None = None
        self._ca_cleanup: weakref.finalize[Any, Any] | None = None
        self._aborts: set[asyncio.Task[None]] = set()
        self._per_key_delete = False
        # Values never to be echoed in an error message, whatever the server put in its answer.
        self._secrets = tuple(
            value
            for value in (credentials.secret_access_key, credentials.session_token, credentials.access_key_id)
            if value
        )

    # -- the client -------------------------------------------------------------------------------

    async def _get_client(self) -> Any:
        """The store's client, created on first use (creating it needs a running loop)."""
        if self._client is not None:
            return self._client
        async with self._opening:
            if self._closed:
                raise BarmanCloudError(f"the store for s3://{self.bucket} is closed")
            if self._client is None:
                self._client = await self._open_client()
        return self._client

    async def _open_client(self) -> Any:
        options = self._options
        session = aiobotocore.session.get_session()
        config = AioConfig(
            connect_timeout=options.connect_timeout,
            read_timeout=options.read_timeout,
            max_pool_connections=max(MIN_POOL, options.max_concurrency + EXTRA_CONNECTIONS),
            retries={"total_max_attempts": 1, "mode": "standard"},
            s3={"addressing_style": options.s3_addressing_style},
            request_checksum_calculation=options.s3_checksums,
            response_checksum_validation=options.s3_checksums,
        )
        credentials = self._credentials
        keys: dict[str, str] = {}
        if not credentials.inherit_from_iam_role and credentials.access_key_id:
            if not credentials.secret_access_key:
                raise InvalidInput(
                    f"S3 credentials for s3://{self.bucket} have an access key ID but no secret access key",
                    hint="set secretAccessKey in the ObjectStore (or use inheritFromIAMRole)",
                )
            keys = {
                "aws_access_key_id": credentials.access_key_id,
                "aws_secret_access_key": credentials.secret_access_key,
            }
            if credentials.session_token:
                keys["aws_session_token"] = credentials.session_token
        # botocore's chain reads AWS_DEFAULT_REGION and the profile; AWS_REGION (set by EKS for
        # IRSA pods, read by the other AWS SDKs) is the next best guess.
        region = (
            credentials.region
            or session.get_config_variable("region")
            or os.environ.get("AWS_REGION")
            or DEFAULT_REGION
        )
        verify = await asyncio.to_thread(self._write_endpoint_ca) if options.endpoint_ca else None
        context = session.create_client(
            "s3",
            region_name=region,
            endpoint_url=options.endpoint_url,
            verify=verify,
            config=config,
            **keys,
        )
        client = await context.__aenter__()
        client.meta.events.register("before-sign.s3.DeleteObjects", self._add_content_md5)
        self._client_context = context
        return client

    def _write_endpoint_ca(self) -> str:
        """botocore trusts a CA bundle given as a file path only: a private copy, removed on close."""
        assert self._options.endpoint_ca is not None
        pem = self._options.endpoint_ca
        try:
            ssl.create_default_context(cadata=pem.decode("ascii"))
        except (ssl.SSLError, ValueError, UnicodeDecodeError) as error:
            raise InvalidInput(
                f"endpointCA for s3://{self.bucket} is not a PEM certificate bundle",
                hint="give the PEM-encoded CA certificate(s) that signed the endpoint's certificate",
            ) from error
        descriptor, path = tempfile.mkstemp(prefix="barman-cloud-endpoint-ca-", suffix=".pem")  # mode 0600
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)
        self._ca_file = path
        self._ca_cleanup = weakref.finalize(self, _remove_file, path)
        return path

    def _add_content_md5(self, request: Any, **_: Any) -> None:
        """DeleteObjects: the S3 specification requires Content-MD5 (or a checksum header).

        botocore sends only a CRC32 header (``x-amz-checksum-crc32``), which older S3-compatible
        stores do not know; Content-MD5 is understood everywhere. With checksums "when_required"
        the flexible-checksum headers are dropped too, for stores that reject them outright.
        """
        body = request.body
        if isinstance(body, str):
            body = body.encode()
        if not isinstance(body, bytes | bytearray):
            return
        request.headers["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode("ascii")  # noqa: S324 - required by the protocol
        if self._options.s3_checksums == "when_required":
            for name in [n for n in request.headers if n.lower().startswith("x-amz-checksum-")]:
                del request.headers[name]
            if "x-amz-sdk-checksum-algorithm" in request.headers:
                del request.headers["x-amz-sdk-checksum-algorithm"]

    async def close(self) -> None:
        """Wait for pending multipart aborts, then close the connection pool and drop the CA file."""
        if self._closed:
            return
        self._closed = True
        if self._aborts:
            await asyncio.gather(*self._aborts, return_exceptions=True)
        async with self._opening:
            context, self._client_context, self._client = self._client_context, None, None
        try:
            if context is not None:
                await context.__aexit__(None, None, None)
                await settle_closed_connections()
        finally:
            if self._ca_cleanup is not None:
                self._ca_cleanup()

    # -- calls with retries and error mapping --------------------------------------------------

    async def _call(self, operation: str, key: str | None, *, body_size: int = 0, **params: Any) -> Any:
        """Call one S3 API method (``operation`` is its snake_case name), with retries.

        ``body_size`` stretches the attempt's timeout for requests carrying data.
        """
        client = await self._get_client()
        method = getattr(client, operation)
        what = self._describe(operation, key)

        async def attempt() -> Any:
            try:
                return await method(Bucket=self.bucket, **params)
            except BarmanCloudError:
                raise
            except Exception as error:
                translated = self._translate(error, what)
                if translated is None:
                    raise
                raise translated from error

        return await with_retries(
            attempt, what=what, attempts=self._options.max_attempts, timeout=self._attempt_timeout(body_size)
        )

    def _attempt_timeout(self, body_size: int) -> float:
        options = self._options
        return options.connect_timeout + options.read_timeout + body_size / MIN_RATE

    def _describe(self, operation: str, key: str | None) -> str:
        target = f"s3://{self.bucket}/{key}" if key is not None else f"s3://{self.bucket}"
        return f"{operation.replace('_', ' ')} {target}"

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _translate(self, error: BaseException, what: str) -> BarmanCloudError | None:
        """The engine error for a botocore/aiohttp failure; None for errors that are not the store's."""
        if isinstance(error, botocore_errors.ClientError):
            return self._translate_client_error(error, what)
        if isinstance(error, botocore_errors.SSLError):
            return self._translate_tls_error(error, what)
        if isinstance(
            error,
            botocore_errors.HTTPClientError
            | botocore_errors.ConnectionError
            | botocore_errors.IncompleteReadError
            | botocore_errors.ChecksumError
            | aiohttp.ClientError
            | TimeoutError
            | OSError,
        ):
            return Unavailable(f"{what}: {self._redact(str(error))}")
        if isinstance(
            error,
            botocore_errors.NoCredentialsError
            | botocore_errors.PartialCredentialsError
            | botocore_errors.CredentialRetrievalError,
        ):
            return Forbidden(
                f"{what}: no usable S3 credentials ({type(error).__name__})",
                hint="set accessKeyId and secretAccessKey in the ObjectStore, or inheritFromIAMRole "
                "with a service account bound to an IAM role",
            )
        if isinstance(error, botocore_errors.ParamValidationError):
            return InvalidInput(f"{what}: {self._redact(str(error))}")
        if isinstance(error, botocore_errors.BotoCoreError):
            return BarmanCloudError(f"{what}: {self._redact(str(error))}")
        return None

    def _translate_tls_error(self, error: BaseException, what: str) -> BarmanCloudError:
        text = self._redact(str(error))
        if any(marker in text.lower() for marker in _CERTIFICATE_FAILURES):
            endpoint = self._options.endpoint_url or "the S3 endpoint"
            return InvalidInput(
                f"{what}: the TLS certificate of {endpoint} is not trusted ({text})",
                hint="set endpointCA in the ObjectStore to the CA that signed the endpoint's certificate"
                if self._options.endpoint_ca is None
                else "the endpointCA given does not verify the endpoint's certificate (wrong CA, or the "
                "certificate does not name the endpoint's host)",
            )
        return Unavailable(f"{what}: TLS failure: {text}")

    def _translate_client_error(self, error: Any, what: str) -> BarmanCloudError:
        details = error.response.get("Error", {}) if isinstance(error.response, dict) else {}
        code = str(details.get("Code") or "")
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        message = self._redact(str(details.get("Message") or code or error))
        text = f"{what}: {code}: {message}" if code and code != message else f"{what}: {message}"
        if code == "NoSuchBucket":
            return NotFound(
                f"{what}: bucket {self.bucket!r} does not exist",
                hint="create the bucket, or fix the bucket in destinationPath (and endpointURL)",
            )
        if code in _NOT_FOUND or code == "NoSuchUpload" or status == 404:
            return NotFound(f"{what}: not found" if code in ("404", "NotFound", "") else text)
        if code == "RequestTimeTooSkewed":
            return Forbidden(text, hint="this machine's clock differs from the store's by minutes: fix NTP")
        if code in _FORBIDDEN or status == 403:
            return Forbidden(
                f"{what}: access denied ({code or status})",
                hint="check the ObjectStore credentials and that they allow this operation on the bucket",
            )
        if code == "NotImplemented" or status == 501:
            return InvalidInput(text, hint="this S3-compatible store does not implement the request")
        if code in _RETRYABLE or status in (408, 429) or status >= 500:
            return Unavailable(text)
        if code in (
            "AuthorizationHeaderMalformed",
            "PermanentRedirect",
            "IllegalLocationConstraintException",
        ):
            return InvalidInput(text, hint="the bucket is in another region: set the region (AWS_REGION)")
        if code == "InvalidObjectState":
            return FailedPrecondition(text, hint="the object is archived (Glacier): restore it first")
        if status in (409, 412):
            return Conflict(text)
        if 400 <= status < 500:
            return InvalidInput(text)
        return BarmanCloudError(text)

    # -- put ------------------------------------------------------------------------------------

    async def put(
        self,
        key: str,
        data: bytes | AsyncIterable[bytes],
        *,
        size_hint: int | None = None,
        metadata: Mapping[str, str] | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """One PutObject up to ``single_put_max`` bytes, else a multipart upload with parallel parts.

        A stream is read up to ``single_put_max`` bytes before deciding (unless ``size_hint``
        already says it is larger): short streams (WAL segments, backup.info) cost one request.
        """
        check_key(key)
        extra = self._write_args(metadata, tags)
        options = self._options
        if isinstance(data, bytes | bytearray | memoryview):
            body = bytes(data)
            if len(body) <= options.single_put_max:
                return await self._put_single(key, body, extra)
            size_hint = len(body)
            data = _slices(body, part_size_for(size_hint, S3_LIMITS, options.part_size))
        part_size = part_size_for(size_hint, S3_LIMITS, options.part_size)
        # The part size grows every 1000 parts, so that a stream of unknown size (or longer than
        # its hint) still fits in S3's 10,000 parts.
        stream = cast(AsyncGenerator[bytes, None], parts_of(data, part_size, S3_LIMITS))
        async with contextlib.aclosing(stream) as parts:
            buffered: builtins.list[bytes] = []
            if size_hint is None or size_hint <= options.single_put_max:
                total = 0
                async for part in parts:
                    buffered.append(part)
                    total += len(part)
                    if total > options.single_put_max:
                        break
                else:
                    return await self._put_single(key, b"".join(buffered), extra)
            return await self._put_multipart(key, _chain(buffered, parts), extra)

    def _write_args(
        self, metadata: Mapping[str, str] | None, tags: Mapping[str, str] | None
    ) -> dict[str, Any]:
        args: dict[str, Any] = {}
        if metadata:
            for name, value in metadata.items():
                if not (name.isascii() and value.isascii()):
                    raise InvalidInput(
                        f"metadata {name!r} for s3://{self.bucket} is not ASCII",
                        hint="S3 user metadata travels in HTTP headers",
                    )
            args["Metadata"] = dict(metadata)
        if tags:
            args["Tagging"] = urlencode(list(tags.items()), quote_via=quote_plus)
        encryption = self._options.encryption
        if encryption.s3:
            args["ServerSideEncryption"] = encryption.s3
            if encryption.s3 == "aws:kms" and encryption.s3_kms_key_id:
                args["SSEKMSKeyId"] = encryption.s3_kms_key_id
        return args

    async def _put_single(self, key: str, body: bytes, extra: dict[str, Any]) -> ObjectInfo:
        digest = await sha256_hex(body)  # in a thread; also the SigV4 payload hash (see _Body)
        extra = {**extra, "Metadata": with_checksum(extra.get("Metadata"), digest)}
        response = await self._call(
            "put_object", key, body_size=len(body), Key=key, Body=_Body(body, digest), **extra
        )
        return ObjectInfo(key=key, size=len(body), etag=response.get("ETag"), sha256=digest)

    async def _put_multipart(
        self, key: str, parts: AsyncIterable[bytes], extra: dict[str, Any]
    ) -> ObjectInfo:
        created = await self._call("create_multipart_upload", key, Key=key, **extra)
        upload_id: str = created["UploadId"]
        size = 0
        # The whole object's digest (returned, for manifests: the metadata was fixed at creation),
        # and each part's own for its request signature; both in worker threads.
        whole = RunningDigest()

        async def upload(number: int, body: bytes) -> dict[str, Any]:
            nonlocal size
            part_digest = await sha256_hex(body)
            response = await self._call(
                "upload_part",
                key,
                body_size=len(body),
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=_Body(body, part_digest),
            )
            size += len(body)
            return {"PartNumber": number, "ETag": response["ETag"]}

        try:
            completed = await upload_parallel(digesting(parts, whole), upload, self._options.max_concurrency)
            etag = await self._complete(key, upload_id, completed)
        except BaseException:
            await self._abort(key, upload_id)
            raise
        return ObjectInfo(key=key, size=size, etag=etag, sha256=whole.hexdigest())

    async def _complete(self, key: str, upload_id: str, parts: builtins.list[dict[str, Any]]) -> str | None:
        try:
            response = await self._call(
                "complete_multipart_upload",
                key,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
        except NotFound:
            # NoSuchUpload after a retried CompleteMultipartUpload: the first attempt may have
            # completed it before its answer was lost. The multipart ETag tells whether the object
            # now under the key is ours.
            expected = _multipart_etag(parts)
            try:
                current = (await self.head(key)).etag
            except NotFound:
                current = None
            if expected is None or current != expected:
                raise
            return current
        etag: str | None = response.get("ETag")
        return etag

    async def _abort(self, key: str, upload_id: str) -> None:
        """Abort the multipart upload, even if the caller is cancelled again meanwhile.

        The abort runs as its own task: a second cancellation stops our wait, not the abort, and
        ``close`` waits for it before closing the pool.
        """
        task = asyncio.get_running_loop().create_task(self._abort_upload(key, upload_id))
        self._aborts.add(task)
        task.add_done_callback(self._aborts.discard)
        await asyncio.shield(task)

    async def _abort_upload(self, key: str, upload_id: str) -> None:
        try:
            await self._call("abort_multipart_upload", key, Key=key, UploadId=upload_id)
        except NotFound:
            pass  # NoSuchUpload: already gone
        except BarmanCloudError as error:
            log.warning(
                "multipart upload not aborted: its parts stay billable until a lifecycle rule "
                "(AbortIncompleteMultipartUpload) removes them",
                extra={"bucket": self.bucket, "key": key, "upload_id": upload_id, "error": str(error)},
            )

    async def abort_incomplete_uploads(
        self, prefix: str, *, initiated_before: datetime, keep_prefix: str | None = None
    ) -> int:
        """Abort the multipart uploads under ``prefix`` (but not under ``keep_prefix``) initiated
        before ``initiated_before``: what a process killed in the middle of an upload left behind
        (no abort ran). Returns how many."""
        params: dict[str, Any] = {"Prefix": prefix}
        stale: builtins.list[tuple[str, str]] = []
        while True:
            page = await self._call("list_multipart_uploads", prefix or None, **params)
            for upload in page.get("Uploads") or ():
                initiated = upload.get("Initiated")
                key = str(upload["Key"])
                if keep_prefix is not None and key.startswith(keep_prefix):
                    continue
                if isinstance(initiated, datetime) and initiated < initiated_before:
                    stale.append((key, str(upload["UploadId"])))
            if not page.get("IsTruncated"):
                break
            params["KeyMarker"] = page.get("NextKeyMarker") or ""
            params["UploadIdMarker"] = page.get("NextUploadIdMarker") or ""
        for key, upload_id in stale:
            await self._abort_upload(key, upload_id)
        return len(stale)

    # -- get / head / list --------------------------------------------------------------------------

    async def get(self, key: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream the object; an interrupted download resumes where it stopped (same ETag only).

        A whole read of an object with a checksum is verified (:mod:`.integrity`)."""
        check_key(key)
        if start < 0 or (end is not None and end < start):
            raise InvalidInput(f"invalid byte range [{start}, {end}) for s3://{self.bucket}/{key}")
        if end == start:
            await self.head(key)  # an empty range still needs the object to exist
            return
        opened = await self._open_body(key, start, end, None)
        if opened is None:
            return
        body, etag, metadata = opened
        expected = expected_from_metadata(metadata) if start == 0 and end is None else None
        stream = cast(AsyncGenerator[bytes, None], self._read(key, body, etag, start, end))
        async with contextlib.aclosing(stream) as chunks:
            checked = verified(chunks, expected, f"s3://{self.bucket}/{key}")
            async with contextlib.aclosing(checked) as out:
                async for chunk in out:
                    yield chunk

    async def _read(
        self, key: str, body: Any, etag: str | None, start: int, end: int | None
    ) -> AsyncIterator[bytes]:
        """The bytes of an opened GetObject; a broken read is resumed (If-Match the same ETag)."""
        position = start
        interruptions = 0
        try:
            while True:
                try:
                    chunk: bytes = await body.read(READ_CHUNK)
                except Exception as error:
                    translated = self._translate(error, self._describe("get_object", key))
                    if translated is None:
                        raise
                    if not isinstance(translated, Unavailable):
                        raise translated from error
                    interruptions += 1
                    if interruptions >= self._options.max_attempts:
                        raise translated from error
                    body.close()
                    await asyncio.sleep(backoff_delay(interruptions))
                    opened = await self._open_body(key, position, end, etag)
                    if opened is None:
                        return
                    body, _, _ = opened
                    continue
                if not chunk:
                    return
                position += len(chunk)
                interruptions = 0  # progress: a long read may be cut several times
                yield chunk
        finally:
            body.close()

    async def _open_body(
        self, key: str, start: int, end: int | None, etag: str | None
    ) -> tuple[Any, str | None, Mapping[str, str]] | None:
        """GetObject from ``start`` (body, ETag, user metadata); None when the range is past the
        end of the object."""
        params: dict[str, Any] = {"Key": key}
        if end is not None:
            params["Range"] = f"bytes={start}-{end - 1}"
        elif start:
            params["Range"] = f"bytes={start}-"
        if etag is not None:
            params["IfMatch"] = etag  # resuming: the same object, or a clear error
        try:
            response = await self._call("get_object", key, **params)
        except InvalidInput as error:
            if isinstance(error.__cause__, botocore_errors.ClientError) and _status(error.__cause__) == 416:
                return None  # InvalidRange: the range starts at or after the end of the object
            raise
        except Conflict as error:
            if etag is not None:
                raise Conflict(
                    f"s3://{self.bucket}/{key} changed while it was being read",
                    hint="it was overwritten during the download: retry the operation",
                ) from error
            raise
        return response["Body"], response.get("ETag"), response.get("Metadata") or {}

    async def head(self, key: str) -> ObjectInfo:
        check_key(key)
        response = await self._call("head_object", key, Key=key)
        metadata, digest = split_checksum(response.get("Metadata"))
        return ObjectInfo(
            key=key,
            size=int(response.get("ContentLength", 0)),
            last_modified=response.get("LastModified"),
            etag=response.get("ETag"),
            metadata=metadata,
            sha256=digest,
        )

    async def list(
        self, prefix: str, *, delimiter: str | None = None
    ) -> AsyncIterator[ObjectInfo | CommonPrefix]:
        """ListObjectsV2, every page; per page objects and subfolders are merged in key order."""
        params: dict[str, Any] = {"Prefix": prefix}
        if delimiter:
            params["Delimiter"] = delimiter
        while True:
            page = await self._call("list_objects_v2", prefix or None, **params)
            entries: builtins.list[ObjectInfo | CommonPrefix] = [
                ObjectInfo(
                    key=item["Key"],
                    size=int(item.get("Size", 0)),
                    last_modified=item.get("LastModified"),
                    etag=item.get("ETag"),
                )
                for item in page.get("Contents") or ()
            ]
            entries += [CommonPrefix(item["Prefix"]) for item in page.get("CommonPrefixes") or ()]
            entries.sort(key=_entry_name)
            for entry in entries:
                yield entry
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            params["ContinuationToken"] = token

    # -- delete ------------------------------------------------------------------------------------

    async def delete_many(self, keys: Iterable[str]) -> None:
        """DeleteObjects per 1000 keys (Quiet); missing keys are not an error."""
        unique = list(dict.fromkeys(check_key(key) for key in keys))
        for first in range(0, len(unique), DELETE_BATCH):
            batch = unique[first : first + DELETE_BATCH]
            if self._per_key_delete:
                await self._delete_one_by_one(batch)
            else:
                await self._delete_batch(batch)

    async def _delete_batch(self, batch: builtins.list[str]) -> None:
        """One DeleteObjects; keys that failed for a transient reason (InternalError, SlowDown)
        are sent again, the first other per-key failure is raised."""
        pending = batch
        for attempt in range(1, self._options.max_attempts + 1):
            failures = await self._delete_objects(pending)
            if not failures:
                return
            first = failures[0]
            error = self._translate_client_error(
                botocore_errors.ClientError(
                    {"Error": {"Code": first.get("Code"), "Message": first.get("Message")}}, "DeleteObjects"
                ),
                f"delete {len(failures)} of {len(pending)} objects in s3://{self.bucket} "
                f"(first: {first.get('Key')!r})",
            )
            retryable = all(str(item.get("Code")) in _RETRYABLE for item in failures)
            if not retryable or attempt == self._options.max_attempts:
                raise error
            pending = [str(item["Key"]) for item in failures]
            await asyncio.sleep(backoff_delay(attempt))

    async def _delete_objects(self, keys: builtins.list[str]) -> builtins.list[dict[str, Any]] | None:
        """The per-key failures of one DeleteObjects (missing keys are not failures); None when
        the store refused DeleteObjects and the keys were deleted one by one instead."""
        described = keys[0] if len(keys) == 1 else f"{keys[0]} (and {len(keys) - 1} more)"
        try:
            response = await self._call(
                "delete_objects",
                described,
                Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True},
            )
        except BarmanCloudError as error:
            cause = error.__cause__
            if isinstance(cause, botocore_errors.ClientError) and _wants_content_md5(cause):
                log.warning(
                    "the store refused DeleteObjects (Content-MD5): deleting one object per request",
                    extra={"bucket": self.bucket},
                )
                self._per_key_delete = True
                await self._delete_one_by_one(keys)
                return None
            raise
        return [item for item in response.get("Errors") or () if item.get("Code") != "NoSuchKey"]

    async def _delete_one_by_one(self, batch: builtins.list[str]) -> None:
        slots = asyncio.Semaphore(PER_KEY_DELETE_CONCURRENCY)

        async def delete(key: str) -> None:
            async with slots:
                with contextlib.suppress(NotFound):
                    await self._call("delete_object", key, Key=key)

        async with asyncio.TaskGroup() as group:
            for key in batch:
                group.create_task(delete(key))


def _remove_file(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _status(error: Any) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _wants_content_md5(error: Any) -> bool:
    details = error.response.get("Error", {})
    message = str(details.get("Message", "")).lower()
    return details.get("Code") == "MissingContentMD5" or "content-md5" in message


def _entry_name(entry: ObjectInfo | CommonPrefix) -> str:
    return entry.key if isinstance(entry, ObjectInfo) else entry.prefix


def _multipart_etag(parts: builtins.list[dict[str, Any]]) -> str | None:
    """S3's ETag of a completed multipart object: MD5 of the parts' MD5s, dash, number of parts."""
    try:
        digests = b"".join(bytes.fromhex(str(part["ETag"]).strip('"')) for part in parts)
    except ValueError:
        return None  # not MD5 ETags (SSE-KMS, some S3-compatible stores)
    return f'"{hashlib.md5(digests).hexdigest()}-{len(parts)}"'  # noqa: S324 - S3's ETag definition


class _KnownDigestS3SigV4Auth(botocore.auth.S3SigV4Auth):  # type: ignore[misc]
    """botocore's S3 SigV4 signer, except that a body we already hashed is not hashed again.

    SigV4 signs the SHA-256 of the request body (``x-amz-content-sha256``) whenever the request
    has no Content-MD5 or checksum header, which with ``s3_checksums="when_required"`` means every
    PutObject and UploadPart, over HTTPS too. botocore computes it on the event loop, reading the
    body 1 MiB at a time. A :class:`_Body` carries the digest we computed in a worker thread (the
    same SHA-256 we store as the object's checksum), and this signer uses it. Any other body, or a
    request signed with a streaming trailer or without a payload hash, is signed by botocore's own
    code, unchanged.
    """

    def payload(self, request: Any) -> str:
        digest = getattr(request.body, "sha256", None)
        if (
            isinstance(digest, str)
            and not self._is_streaming_checksum_payload(request)
            and self._should_sha256_sign_payload(request)
        ):
            return digest
        result: str = super().payload(request)
        return result


# The ``s3v4`` signer is looked up by name for every S3 request; ours differs only for our bodies.
if botocore.auth.AUTH_TYPE_MAPS.get("s3v4") is botocore.auth.S3SigV4Auth:
    botocore.auth.AUTH_TYPE_MAPS["s3v4"] = _KnownDigestS3SigV4Auth


class _Body:
    """A request body over ``bytes`` that aiohttp sends as slices of the caller's buffer.

    Handed plain bytes, botocore wraps them in a BytesIO, and aiohttp's BytesIO payload first
    copies the whole buffer (``getbuffer`` unshares it), then copies it again 64 KiB at a time: one
    extra part in memory per request in flight. This object gives botocore what it needs (``read``,
    ``seek`` and ``tell`` for the payload hash and checksums, ``len`` for Content-Length) and gives
    aiohttp an async iterator of memoryview slices (no copy; Content-Length is already set).
    """

    CHUNK = 1 * MiB

    def __init__(self, data: bytes, sha256: str | None = None) -> None:
        self._data = memoryview(data)
        self._position = 0
        self.sha256 = sha256
        """The SHA-256 (hex) of ``data`` when already known: used as the SigV4 payload hash."""

    def __len__(self) -> int:
        return len(self._data)

    def read(self, size: int | None = -1) -> bytes:
        end = len(self._data) if size is None or size < 0 else min(len(self._data), self._position + size)
        chunk = bytes(self._data[self._position : end])
        self._position = max(self._position, end)
        return chunk

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: len(self._data)}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def __aiter__(self) -> AsyncIterator[memoryview]:
        return self._slices()

    async def _slices(self) -> AsyncIterator[memoryview]:
        for offset in range(0, len(self._data), self.CHUNK):
            yield self._data[offset : offset + self.CHUNK]


async def _slices(data: bytes, size: int) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


async def _chain(first: builtins.list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The parts already read, then the rest of the stream; read parts are released as they go."""
    while first:
        yield first.pop(0)
    async for part in rest:
        yield part
