"""S3 behaviour beyond the Store contract, against real servers: moto over HTTP, moto enforcing
authentication, moto behind a TLS proxy with a private CA, and moto behind a proxy that behaves
like an older S3-compatible store (no flexible checksums, Content-MD5 required on DeleteObjects)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
import io
import ipaddress
import os
import ssl
import stat
import tempfile
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiobotocore.session
import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from barman_cloud.errors import BarmanCloudError, Forbidden, InvalidInput, NotFound, Unavailable
from barman_cloud.storage import ObjectInfo, exists, read_all
from barman_cloud.storage.location import parse_destination
from barman_cloud.storage.options import Encryption, S3Credentials, StoreOptions
from barman_cloud.storage.s3 import S3Store
from tests.harness.certificates import CertificateAuthority
from tests.harness.object_stores import MotoS3
from tests.harness.processes import ManagedProcess, free_port, port_open
from tests.harness.tools import moto_server
from tests.storage.backends.s3 import credentials

MiB = 1024 * 1024
# Small parts so that multipart paths run with little data (5 MiB is S3's minimum part size).
SMALL_PARTS = {"single_put_max": 5 * MiB, "part_size": 5 * MiB, "max_concurrency": 2}


def unique_key(name: str) -> str:
    return f"s3-tests/{os.urandom(6).hex()}/{name}"


async def chunks(size: int, chunk: int = MiB, *, delay: float = 0.0) -> AsyncIterator[bytes]:
    sent = 0
    while sent < size:
        piece = hashlib.sha256(str(sent).encode()).digest() * (min(chunk, size - sent) // 32)
        piece += b"x" * (min(chunk, size - sent) - len(piece))
        sent += len(piece)
        yield piece
        if delay:
            await asyncio.sleep(delay)


@pytest.fixture
async def open_s3(moto_s3: MotoS3) -> AsyncIterator[Callable[..., S3Store]]:
    """S3Stores on the session's moto server (or another endpoint), closed when the test ends."""
    stores: list[S3Store] = []

    def make(
        *,
        endpoint: str | None = None,
        bucket: str | None = None,
        creds: S3Credentials | None = None,
        **options: Any,
    ) -> S3Store:
        location = parse_destination(f"s3://{bucket or moto_s3.bucket}/s3-tests")
        store = S3Store(
            location,
            creds or credentials(moto_s3),
            StoreOptions(endpoint_url=endpoint or moto_s3.endpoint, **options),
        )
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


@pytest.fixture
async def raw_s3(moto_s3: MotoS3) -> AsyncIterator[Any]:
    """A plain aiobotocore client on moto, to look at the bucket behind the store's back."""
    session = aiobotocore.session.get_session()
    async with session.create_client(
        "s3",
        endpoint_url=moto_s3.endpoint,
        region_name=moto_s3.region,
        aws_access_key_id=moto_s3.access_key,
        aws_secret_access_key=moto_s3.secret_key,
    ) as client:
        yield client


async def uploads_for(raw_s3: Any, key: str) -> list[dict[str, Any]]:
    listed = await raw_s3.list_multipart_uploads(Bucket="backups", Prefix=key)
    return [upload for upload in listed.get("Uploads", []) if upload["Key"] == key]


# -- multipart uploads leave nothing behind --------------------------------------------------------


async def test_cancelled_multipart_upload_is_aborted(open_s3: Callable[..., S3Store], raw_s3: Any) -> None:
    store = open_s3(**SMALL_PARTS)
    key = unique_key("cancelled.tar")
    upload = asyncio.create_task(store.put(key, chunks(1024 * MiB, delay=0.01)))
    # Wait (no clock involved) until S3 holds an upload with parts for the key.
    while not (pending := await uploads_for(raw_s3, key)) or not (
        await raw_s3.list_parts(Bucket="backups", Key=key, UploadId=pending[0]["UploadId"])
    ).get("Parts"):
        assert not upload.done(), upload
        await asyncio.sleep(0.05)
    upload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upload
    assert await uploads_for(raw_s3, key) == []
    assert not await exists(store, key)
    await store.close()


async def test_abort_survives_a_second_cancellation(open_s3: Callable[..., S3Store], raw_s3: Any) -> None:
    store = open_s3(**SMALL_PARTS)
    key = unique_key("cancelled-twice.tar")
    upload = asyncio.create_task(store.put(key, chunks(1024 * MiB, delay=0.01)))
    aborting = asyncio.Event()

    def cancel_again(**_: Any) -> None:
        # Runs while the AbortMultipartUpload request is about to be sent: cancel the put again.
        aborting.set()
        upload.cancel()

    (await store._get_client()).meta.events.register("before-send.s3.AbortMultipartUpload", cancel_again)
    while not await uploads_for(raw_s3, key):  # noqa: ASYNC110 - polls the server: no event to wait on
        await asyncio.sleep(0.05)
    upload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upload
    assert aborting.is_set()
    await store.close()  # waits for the abort the second cancellation left running
    assert await uploads_for(raw_s3, key) == []


async def test_failing_source_aborts_the_multipart_upload(
    open_s3: Callable[..., S3Store], raw_s3: Any
) -> None:
    store = open_s3(**SMALL_PARTS)
    key = unique_key("broken.tar")
    seen_during_upload: list[dict[str, Any]] = []

    class SourceBroke(Exception):
        pass

    async def broken() -> AsyncIterator[bytes]:
        async for chunk in chunks(16 * MiB):
            yield chunk
        seen_during_upload.extend(await uploads_for(raw_s3, key))
        raise SourceBroke

    with pytest.raises(SourceBroke):
        await store.put(key, broken())
    assert len(seen_during_upload) == 1  # the multipart path was really taken
    assert await uploads_for(raw_s3, key) == []
    assert not await exists(store, key)
    await store.close()


async def test_bytes_larger_than_single_put_go_in_parallel_parts(
    open_s3: Callable[..., S3Store], raw_s3: Any
) -> None:
    store = open_s3(**SMALL_PARTS)
    key = unique_key("bytes.tar")
    data = os.urandom(12 * MiB + 3)
    info = await store.put(key, data)
    assert info.size == len(data)
    assert info.etag is not None and info.etag.endswith('-3"')  # three parts: 5 + 5 + 2 MiB
    assert (await store.head(key)).etag == info.etag
    assert await read_all(store, key) == data
    await store.close()


# -- tags, metadata, server-side encryption ---------------------------------------------------------


@pytest.mark.parametrize("size", [1000, 7 * MiB], ids=["single-put", "multipart"])
async def test_tags_metadata_and_sse_round_trip(
    open_s3: Callable[..., S3Store], raw_s3: Any, size: int
) -> None:
    store = open_s3(encryption=Encryption(s3="AES256"), **SMALL_PARTS)
    key = unique_key("00000001000000000000000A")
    tags = {"env": "prod test", "cluster": "pg-main=1", "path": "a+b/c:d@e"}
    data = os.urandom(size)

    async def stream() -> AsyncIterator[bytes]:
        yield data

    await store.put(key, stream(), metadata={"origin": "s3-tests"}, tags=tags)
    tagging = await raw_s3.get_object_tagging(Bucket="backups", Key=key)
    assert {tag["Key"]: tag["Value"] for tag in tagging["TagSet"]} == tags
    head = await raw_s3.head_object(Bucket="backups", Key=key)
    assert head["ServerSideEncryption"] == "AES256"
    info = await store.head(key)
    assert info.metadata == {"origin": "s3-tests"}
    assert info.size == size
    assert await read_all(store, key) == data
    await store.close()


# -- checksums modes and ranges ----------------------------------------------------------------------


@pytest.mark.parametrize("checksums", ["when_required", "when_supported"])
async def test_checksum_modes_round_trip(open_s3: Callable[..., S3Store], checksums: str) -> None:
    store = open_s3(s3_checksums=checksums, **SMALL_PARTS)
    small, large = unique_key("small"), unique_key("large")
    await store.put(small, b"status=DONE\n")
    data = os.urandom(11 * MiB)
    await store.put(large, data)
    assert await read_all(store, small) == b"status=DONE\n"
    assert await read_all(store, large) == data
    await store.delete_many([small, large])
    assert not await exists(store, small) and not await exists(store, large)
    await store.close()


async def test_ranges_past_the_end_are_empty(open_s3: Callable[..., S3Store]) -> None:
    store = open_s3()
    key = unique_key("short")
    await store.put(key, b"0123456789")
    assert [c async for c in store.get(key, start=10)] == []
    assert [c async for c in store.get(key, start=50, end=60)] == []
    assert b"".join([c async for c in store.get(key, start=8, end=60)]) == b"89"
    assert [c async for c in store.get(key, start=3, end=3)] == []
    with pytest.raises(NotFound):
        [c async for c in store.get(unique_key("absent"), start=3, end=3)]
    await store.put(key, b"")
    assert [c async for c in store.get(key, start=0, end=10)] == []
    await store.close()


async def test_consumer_stopping_early_closes_the_body(open_s3: Callable[..., S3Store]) -> None:
    store = open_s3()
    key = unique_key("partly-read")
    await store.put(key, os.urandom(8 * MiB))
    stream = store.get(key)
    first = await anext(stream)
    assert first
    await stream.aclose()  # type: ignore[attr-defined]
    # The pool is still usable afterwards.
    assert (await store.head(key)).size == 8 * MiB
    await store.close()


# -- errors ------------------------------------------------------------------------------------------


async def test_missing_bucket_is_not_found_naming_the_bucket(open_s3: Callable[..., S3Store]) -> None:
    store = open_s3(bucket="no-such-bucket-here")
    with pytest.raises(NotFound, match="no-such-bucket-here"):
        await store.put("wals/x", b"x")
    with pytest.raises(NotFound, match="no-such-bucket-here"):
        [entry async for entry in store.list("wals/")]
    await store.close()


async def test_unreachable_endpoint_is_unavailable_after_retries(open_s3: Callable[..., S3Store]) -> None:
    port = free_port()  # nothing listens there
    store = open_s3(endpoint=f"http://127.0.0.1:{port}", max_attempts=2, connect_timeout=2)
    with pytest.raises(Unavailable, match="s3://backups/wals/x"):
        await store.head("wals/x")
    await store.close()


async def test_a_closed_store_refuses_calls(open_s3: Callable[..., S3Store]) -> None:
    store = open_s3()
    await store.put(unique_key("x"), b"x")
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(BarmanCloudError, match="closed"):
        await store.head(unique_key("x"))


@pytest.fixture(scope="module")
def moto_with_auth(services_dir: Path) -> Iterator[str]:
    """A second moto server that checks credentials (only keys it issued are accepted)."""
    port = free_port()
    process = ManagedProcess(
        "moto_server-auth",
        [str(moto_server()), "-H", "127.0.0.1", "-p", str(port)],
        services_dir / "moto-auth.log",
        env={"INITIAL_NO_AUTH_ACTION_COUNT": "0"},
    )
    try:
        process.wait_until(lambda: port_open(port))
        yield f"http://127.0.0.1:{port}"
    finally:
        process.stop()


async def test_unknown_credentials_are_forbidden_without_leaking_the_secret(
    open_s3: Callable[..., S3Store], moto_with_auth: str
) -> None:
    secret = "wJalrXUtnFEMI-K7MDENG-bPxRfiCY-not-a-real-secret"
    token = "session-token-that-must-not-leak-0123456789"
    store = open_s3(
        endpoint=moto_with_auth,
        creds=S3Credentials(
            access_key_id="AKIAUNKNOWNKEY000000", secret_access_key=secret, session_token=token
        ),
    )
    failures: list[BaseException] = []
    for operation in (
        lambda: store.put("wals/000000010000000000000001", b"x"),
        lambda: store.head("wals/000000010000000000000001"),
        lambda: read_all(store, "wals/000000010000000000000001"),
        lambda: store.delete_many(["wals/000000010000000000000001"]),
    ):
        with pytest.raises(Forbidden) as caught:
            await operation()
        failures.append(caught.value)
    with pytest.raises(Forbidden) as listed:
        [entry async for entry in store.list("wals/")]
    failures.append(listed.value)
    for failure in failures:
        text = "".join(traceback.format_exception(failure))
        assert secret not in text and token not in text
        assert "s3://backups/wals/" in str(failure)
    await store.close()


# -- TLS with a private CA ---------------------------------------------------------------------------


class TCPProxy:
    """Forwards TCP connections to ``target_port``; optionally terminates TLS, and optionally cuts
    the first connection whose answer exceeds ``cut_after`` bytes (a dropped download)."""

    def __init__(self, target_port: int, *, tls: ssl.SSLContext | None = None, cut_after: int | None = None):
        self.target_port = target_port
        self.tls = tls
        self.cut_after = cut_after
        self.cuts = 0
        self.handshake_failures = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> TCPProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            try:
                await asyncio.gather(
                    self._pipe(reader, upstream_writer, None),
                    self._pipe(upstream_reader, writer, self.cut_after if not self.cuts else None),
                )
            finally:
                upstream_writer.close()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, cut: int | None
    ) -> None:
        sent = 0
        while data := await reader.read(256 * 1024):
            if cut is not None and sent + len(data) > cut:
                self.cuts += 1
                writer.transport.abort()
                raise ConnectionResetError("cut by the test proxy")
            writer.write(data)
            await writer.drain()
            sent += len(data)
        with contextlib.suppress(OSError, RuntimeError):
            writer.write_eof()


def server_certificate_for_ip(ca: CertificateAuthority, directory: Path) -> ssl.SSLContext:
    """A server certificate for 127.0.0.1 (an IP SAN, which the harness CA does not issue)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    cert_path, key_path = directory / "s3.crt", directory / "s3.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context


@pytest.fixture
async def tls_endpoint(moto_s3: MotoS3, tmp_path: Path) -> AsyncIterator[tuple[str, bytes]]:
    """``https://127.0.0.1:PORT`` in front of moto, and the PEM of the private CA that signed it."""
    ca = CertificateAuthority(tmp_path / "pki", "s3-private")
    async with TCPProxy(moto_s3.port, tls=server_certificate_for_ip(ca, tmp_path / "pki")) as proxy:
        yield f"https://127.0.0.1:{proxy.port}", ca.cert_path.read_bytes()


def files_in(directory: Path) -> list[Path]:
    return list(directory.iterdir())


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where tempfile puts files during the test (to watch the store's CA file come and go)."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


@pytest.mark.parametrize("checksums", ["when_required", "when_supported"])
async def test_tls_with_endpoint_ca(
    open_s3: Callable[..., S3Store], tls_endpoint: tuple[str, bytes], private_tmp: Path, checksums: str
) -> None:
    # Over TLS "when_supported" sends aws-chunked bodies with CRC32 trailers: both paths must work.
    endpoint, ca_pem = tls_endpoint
    store = open_s3(endpoint=endpoint, endpoint_ca=ca_pem, s3_checksums=checksums, **SMALL_PARTS)
    encodings: list[str] = []

    def record(request: Any, **_: Any) -> None:
        encodings.append(str(request.headers.get("Content-Encoding", "")))

    (await store._get_client()).meta.events.register("before-send.s3.UploadPart", record)
    key = unique_key("over-tls")
    data = os.urandom(7 * MiB)
    await store.put(key, data)
    assert await read_all(store, key) == data
    assert len(encodings) == 2
    assert all(("aws-chunked" in e) == (checksums == "when_supported") for e in encodings), encodings
    (ca_file,) = files_in(private_tmp)
    assert stat.S_IMODE(ca_file.stat().st_mode) == 0o600
    assert ca_file.read_bytes() == ca_pem
    await store.close()
    assert files_in(private_tmp) == []


async def test_tls_without_endpoint_ca_fails_clearly(
    open_s3: Callable[..., S3Store], tls_endpoint: tuple[str, bytes], tmp_path: Path
) -> None:
    endpoint, _ = tls_endpoint
    store = open_s3(endpoint=endpoint)
    with pytest.raises(InvalidInput, match="endpointCA") as caught:
        await store.put(unique_key("x"), b"x")
    assert "not trusted" in str(caught.value)
    other_ca = CertificateAuthority(tmp_path / "other", "someone-else")
    wrong = open_s3(endpoint=endpoint, endpoint_ca=other_ca.cert_path.read_bytes())
    with pytest.raises(InvalidInput, match="endpointCA"):
        await wrong.head(unique_key("x"))
    await store.close()
    await wrong.close()


async def test_invalid_endpoint_ca_is_invalid_input(open_s3: Callable[..., S3Store]) -> None:
    store = open_s3(endpoint_ca=b"not a certificate")
    with pytest.raises(InvalidInput, match="endpointCA"):
        await store.head(unique_key("x"))
    await store.close()


# -- an interrupted download resumes --------------------------------------------------------------------


async def test_interrupted_download_resumes_where_it_stopped(
    open_s3: Callable[..., S3Store], moto_s3: MotoS3
) -> None:
    writer = open_s3()
    key = unique_key("resumed")
    data = os.urandom(6 * MiB)
    await writer.put(key, data)
    async with TCPProxy(moto_s3.port, cut_after=2 * MiB) as proxy:
        reader = open_s3(endpoint=f"http://127.0.0.1:{proxy.port}")
        assert await read_all(reader, key) == data
        assert proxy.cuts == 1
        await reader.close()
    await writer.close()


# -- a store that wants Content-MD5 and knows no flexible checksums ---------------------------------------


class LegacyS3Proxy:
    """An HTTP proxy in front of moto that answers like older S3-compatible stores: any
    flexible-checksum header or aws-chunked body is refused (501), DeleteObjects needs a correct
    Content-MD5 (400 like AWS), or is refused altogether with MissingContentMD5."""

    def __init__(self, target: str, *, refuse_delete_objects: bool = False) -> None:
        self.target = target
        self.refuse_delete_objects = refuse_delete_objects
        self.delete_objects_with_md5 = 0
        self.delete_object = 0
        self.endpoint = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> LegacyS3Proxy:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=1024 * MiB)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.endpoint = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._runner is not None and self._session is not None
        await self._runner.cleanup()
        await self._session.close()

    @staticmethod
    def _error(status: int, code: str, message: str) -> web.Response:
        body = f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
        return web.Response(status=status, body=body.encode(), content_type="application/xml")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        flexible = [
            h for h in request.headers if h.lower().startswith(("x-amz-checksum-", "x-amz-sdk-checksum"))
        ]
        if flexible or "aws-chunked" in request.headers.get("Content-Encoding", ""):
            return self._error(501, "NotImplemented", f"unsupported: {flexible or 'aws-chunked'}")
        body = await request.read()
        if request.method == "POST" and "delete" in request.query:
            if self.refuse_delete_objects:
                return self._error(
                    400, "MissingContentMD5", "Missing required header for this request: Content-MD5"
                )
            expected = base64.b64encode(hashlib.md5(body).digest()).decode()  # noqa: S324
            if request.headers.get("Content-MD5") != expected:
                return self._error(
                    400, "InvalidRequest", "Missing required header for this request: Content-MD5"
                )
            self.delete_objects_with_md5 += 1
        if request.method == "DELETE" and not request.query:
            self.delete_object += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        async with self._session.request(
            request.method, f"{self.target}{request.path_qs}", headers=headers, data=io.BytesIO(body)
        ) as upstream:
            payload = await upstream.read()
            skip = ("content-length", "transfer-encoding", "content-encoding", "connection")
            answer = {k: v for k, v in upstream.headers.items() if k.lower() not in skip}
            return web.Response(status=upstream.status, headers=answer, body=payload)


async def _full_cycle(store: S3Store) -> None:
    keys = [unique_key(f"wal-{i}") for i in range(3)]
    for key in keys:
        await store.put(key, key.encode(), tags={"kind": "wal"})
    big = unique_key("base.tar")
    data = os.urandom(11 * MiB)
    await store.put(big, data)
    assert await read_all(store, big) == data
    listed = [
        e.key for e in [e async for e in store.list(keys[0].rsplit("/", 1)[0])] if isinstance(e, ObjectInfo)
    ]
    assert listed == [keys[0]]
    await store.delete_many([*keys, big, unique_key("never-existed")])
    for key in [*keys, big]:
        assert not await exists(store, key)


async def test_delete_objects_sends_content_md5_and_no_flexible_checksums(
    open_s3: Callable[..., S3Store], moto_s3: MotoS3
) -> None:
    async with LegacyS3Proxy(moto_s3.endpoint) as proxy:
        store = open_s3(endpoint=proxy.endpoint, **SMALL_PARTS)
        await _full_cycle(store)
        assert proxy.delete_objects_with_md5 == 1
        assert proxy.delete_object == 0
        await store.close()


async def test_stores_refusing_delete_objects_get_one_delete_per_key(
    open_s3: Callable[..., S3Store], moto_s3: MotoS3
) -> None:
    async with LegacyS3Proxy(moto_s3.endpoint, refuse_delete_objects=True) as proxy:
        store = open_s3(endpoint=proxy.endpoint, **SMALL_PARTS)
        await _full_cycle(store)
        assert proxy.delete_objects_with_md5 == 0
        assert proxy.delete_object == 5
        await store.close()


async def test_many_calls_share_one_client(open_s3: Callable[..., S3Store]) -> None:
    store = open_s3()
    clients: list[Any] = []

    async def one(i: int) -> None:
        clients.append(await store._get_client())
        await store.put(unique_key(f"shared-{i}"), b"x")

    await asyncio.gather(*(one(i) for i in range(20)))
    assert len({id(client) for client in clients}) == 1
    await store.close()
