"""What the GCS backend does beyond the shared contract, against real HTTP servers.

Most tests run on the session's fake-gcs-server. Where fake-gcs-server cannot show a behaviour,
a small aiohttp server written here stands in and says so: a proxy in front of fake-gcs-server that
records requests (to see a cancelled session's DELETE) or drops one answer (to see a chunk resumed),
a server that refuses everything with 403 (fake-gcs-server has no authentication), one that answers
503 first, and a token endpoint for a service-account key. They answer real HTTP, so what is tested
is the store's own request and error handling, not a patched client.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import io
import ipaddress
import json
import logging
import os
import ssl
import sys
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from barman_cloud.errors import BarmanCloudError, Forbidden, InvalidInput, NotFound, Unavailable
from barman_cloud.storage import CommonPrefix, ObjectInfo, Store, exists, read_all
from barman_cloud.storage.factory import open_store
from barman_cloud.storage.options import Encryption, GoogleCredentials, StoreOptions
from tests.harness.certificates import CertificateAuthority, KeyPair
from tests.harness.object_stores import FakeGCS
from tests.harness.processes import ManagedProcess, free_port, port_open
from tests.harness.tools import ROOT, fake_gcs_server

KiB = 1024
MiB = 1024 * KiB
CHUNK = 256 * KiB
"""The smallest resumable chunk: small stores below switch to resumable uploads above one chunk."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HOP_BY_HOP = frozenset({"content-length", "transfer-encoding", "connection"})


# -- helpers ---------------------------------------------------------------------------------------


def data_of(size: int, seed: str = "gcs") -> bytes:
    block = hashlib.sha256(seed.encode()).digest()
    return (block * (size // len(block) + 1))[:size]


async def stream(data: bytes, piece: int = 100 * KiB) -> AsyncIterator[bytes]:
    for start in range(0, len(data), piece):
        yield data[start : start + piece]


def open_gcs(endpoint: str, path: str = "tests", bucket: str = "backups", **options: object) -> Store:
    credentials = options.pop("credentials", GoogleCredentials())
    assert isinstance(credentials, GoogleCredentials)
    return open_store(f"gs://{bucket}/{path}", credentials, StoreOptions(endpoint_url=endpoint, **options))  # type: ignore[arg-type]


@asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    """An HTTP server on 127.0.0.1 answering every request with ``handler``; yields its base URL."""
    app = web.Application(client_max_size=64 * MiB)
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def gcs_error(status: int, message: str, reason: str) -> web.Response:
    """An error answer shaped like Google's JSON API errors."""
    error = {"domain": "global", "reason": reason, "message": message}
    body = {"error": {"code": status, "message": message, "errors": [error]}}
    return web.json_response(body, status=status)


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass
class Proxy:
    """Forwards to fake-gcs-server and records every request; rewrites resumable session URIs so
    that the whole upload goes through it.

    ``fault`` drops one chunk answer: ``"before"`` answers 503 without forwarding the chunk,
    ``"after"`` forwards it (fake-gcs-server keeps the bytes) then answers 503. Session status
    queries (``Content-Range: bytes */*``) are answered here from the committed size fake-gcs-server
    last reported, because fake-gcs-server takes such a query for the end of a streamed upload.
    """

    upstream: str
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    fault: str | None = None
    committed: dict[str, int] = field(default_factory=dict)
    status_queries: int = 0
    chunk_arrived: asyncio.Event = field(default_factory=asyncio.Event)
    """Set whenever a chunk of a resumable upload arrives (the test clears it to wait for the next)."""
    cut_download_at: int | None = None
    """Answer the next media download with its full Content-Length, then close after this many bytes."""

    def uploads(self, method: str) -> list[Seen]:
        return [s for s in self.seen if s.method == method and "upload_id" in s.query]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append(Seen(request.method, request.path, dict(request.query), dict(request.headers)))
        upload_id = request.query.get("upload_id")
        content_range = request.headers.get("Content-Range", "")
        if upload_id and request.method == "PUT":
            if content_range == "bytes */*":
                self.status_queries += 1
                committed = self.committed.get(upload_id, 0)
                return web.Response(
                    status=308, headers={"Range": f"bytes=0-{committed - 1}"} if committed else {}
                )
            self.chunk_arrived.set()
        fault = None
        if self.fault and upload_id and request.method == "PUT" and not content_range.startswith("bytes 0-"):
            fault, self.fault = self.fault, None
        if fault == "before":
            return gcs_error(503, "Backend Error", "backendError")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP | {"host"}}
        async with (
            aiohttp.ClientSession(auto_decompress=False) as client,
            client.request(
                request.method, self.upstream + request.path_qs, headers=headers, data=io.BytesIO(body)
            ) as answer,
        ):
            payload = await answer.read()
            out = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP | {"date"}}
            if "Location" in out:
                out["Location"] = out["Location"].replace(self.upstream, self.url)
            if answer.status == 308 and upload_id:
                self.committed[upload_id] = int(answer.headers["Range"].rsplit("-", 1)[1]) + 1
            status = answer.status
        if fault == "after":
            return gcs_error(503, "Backend Error", "backendError")
        if self.cut_download_at is not None and request.query.get("alt") == "media" and status == 200:
            cut, self.cut_download_at = self.cut_download_at, None
            response = web.StreamResponse(status=200, headers={**out, "Content-Length": str(len(payload))})
            await response.prepare(request)
            await response.write(payload[:cut])
            assert request.transport is not None
            request.transport.close()
            return response
        return web.Response(status=status, body=payload, headers=out)


@asynccontextmanager
async def proxy_to(server: FakeGCS) -> AsyncIterator[Proxy]:
    proxy = Proxy(server.endpoint)
    async with serve(proxy.handle) as url:
        proxy.url = url
        yield proxy


@pytest.fixture
def key() -> str:
    return f"gcs-tests/{uuid.uuid4().hex[:12]}/object"


# -- metadata, tags, keys, listings ------------------------------------------------------------------


async def test_metadata_and_tags_round_trip_as_custom_metadata(fake_gcs: FakeGCS, key: str) -> None:
    """barman-cloud stores tags on GCS as custom metadata: both land in ``metadata``, in a single
    request and in a resumable session, and the engine's metadata wins over a tag of the same name."""
    kms = "projects/p/locations/l/keyRings/r/cryptoKeys/k"
    async with proxy_to(fake_gcs) as proxy:
        store = open_gcs(
            proxy.url, single_put_max=CHUNK, part_size=CHUNK, encryption=Encryption(gcs_kms_key_name=kms)
        )
        try:
            tags = {"team": "db", "origin": "tag"}
            small = await store.put(f"{key}-small", b"tiny", metadata={"origin": "engine"}, tags=tags)
            large_data = data_of(3 * CHUNK + 17)
            large = await store.put(
                f"{key}-large", stream(large_data), metadata={"origin": "engine"}, tags=tags
            )
            for info, name, size in ((small, f"{key}-small", 4), (large, f"{key}-large", len(large_data))):
                head = await store.head(name)
                assert info.metadata == head.metadata == {"team": "db", "origin": "engine"}
                assert head.size == info.size == size
                assert head.etag and head.last_modified is not None
            assert await read_all(store, f"{key}-large") == large_data
        finally:
            await store.close()
    uploads = [s for s in proxy.seen if s.method == "POST" and s.path.startswith("/upload/")]
    assert [u.query["uploadType"] for u in uploads] == ["multipart", "resumable"]
    assert all(u.query["kmsKeyName"] == kms for u in uploads)
    chunks = proxy.uploads("PUT")
    assert len(chunks) == 4 and all(int(c.headers["Content-Length"]) <= CHUNK for c in chunks)


async def test_keys_with_reserved_characters_round_trip(fake_gcs: FakeGCS, key: str) -> None:
    store = open_gcs(fake_gcs.endpoint)
    try:
        odd = f"{key}/with space/plus+sign/ünïcode/percent%41/semi;colon=equals&amp"
        await store.put(odd, b"odd")
        assert await read_all(store, odd) == b"odd"
        assert (await store.head(odd)).size == 3
        assert [e.key async for e in store.list(f"{key}/") if isinstance(e, ObjectInfo)] == [odd]
        assert [e async for e in store.list(f"{key}/with space/plus+", delimiter="/")] == [
            CommonPrefix(f"{key}/with space/plus+sign/")
        ]
        await store.delete_many([odd])
        assert not await exists(store, odd)
    finally:
        await store.close()


async def test_delimited_listing_merges_objects_and_prefixes_in_key_order(
    fake_gcs: FakeGCS, key: str
) -> None:
    store = open_gcs(fake_gcs.endpoint)
    try:
        for name in ("a", "b/1", "b/2", "c", "d/1"):
            await store.put(f"{key}/{name}", b"x")
        entries = [e async for e in store.list(f"{key}/", delimiter="/")]
        assert entries[0] == ObjectInfo(f"{key}/a", 1, entries[0].last_modified, entries[0].etag)  # type: ignore[union-attr]
        assert [e.key if isinstance(e, ObjectInfo) else e.prefix for e in entries] == [
            f"{key}/a",
            f"{key}/b/",
            f"{key}/c",
            f"{key}/d/",
        ]
    finally:
        await store.close()


async def test_ranges_past_the_end_and_empty_ranges(fake_gcs: FakeGCS, key: str) -> None:
    store = open_gcs(fake_gcs.endpoint)
    try:
        await store.put(key, b"0123456789")
        assert [c async for c in store.get(key, start=10)] == []
        assert [c async for c in store.get(key, start=50, end=60)] == []
        assert [c async for c in store.get(key, start=4, end=4)] == []
        assert b"".join([c async for c in store.get(key, start=8, end=100)]) == b"89"
        with pytest.raises(NotFound, match="not found in bucket 'backups'"):
            _ = [c async for c in store.get(f"{key}-absent", start=3, end=3)]
    finally:
        await store.close()


def upload_with_content_encoding(fake_gcs: FakeGCS, name: str, body: bytes, encoding: str) -> None:
    """An object another tool uploaded with a Content-Encoding (``gsutil cp -Z`` does), over the
    JSON API: something this plugin never writes."""
    boundary = "bcp-test-boundary"
    meta = json.dumps({"name": name, "contentEncoding": encoding, "contentType": "text/plain"})
    payload = (
        (
            f"--{boundary}\r\nContent-Type: application/json\r\n\r\n{meta}\r\n"
            f"--{boundary}\r\nContent-Type: text/plain\r\n\r\n"
        ).encode()
        + body
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(  # noqa: S310 - the local emulator
        f"{fake_gcs.endpoint}/upload/storage/v1/b/{fake_gcs.bucket}/o?uploadType=multipart",
        data=payload,
        method="POST",
        headers={"Content-Type": f"multipart/related; boundary={boundary}"},
    )
    with urllib.request.urlopen(request) as answer:  # noqa: S310
        assert json.loads(answer.read())["contentEncoding"] == encoding


async def test_an_object_gcs_decompresses_on_the_way_is_read_not_called_corrupt(
    fake_gcs: FakeGCS, key: str
) -> None:
    """GCS serves an object stored with ``Content-Encoding: gzip`` decompressed to a client that
    asks for ``identity`` (decompressive transcoding, which fake-gcs-server does too), while its
    ``x-goog-hash`` MD5 is the stored bytes': the content is read as barman's client reads it,
    not refused as corrupt. A plain object with a wrong body still is (test_integrity)."""
    import gzip

    content = b"a WAL-like payload " * 5000
    upload_with_content_encoding(fake_gcs, key, gzip.compress(content), "gzip")
    store = open_gcs(fake_gcs.endpoint)
    try:
        assert await read_all(store, key) == content
    finally:
        await store.close()


async def test_a_missing_bucket_is_not_an_empty_listing(fake_gcs: FakeGCS) -> None:
    store = open_gcs(fake_gcs.endpoint, bucket="no-such-bucket", single_put_max=CHUNK, part_size=CHUNK)
    try:
        with pytest.raises(NotFound, match="bucket 'no-such-bucket' does not exist"):
            _ = [e async for e in store.list("x/")]
        with pytest.raises(NotFound, match="'x' not found in bucket 'no-such-bucket'"):
            await store.head("x")
        for data in (b"small", data_of(2 * CHUNK)):
            with pytest.raises(NotFound, match="bucket 'no-such-bucket' does not exist"):
                await store.put("x", data)
    finally:
        await store.close()


async def test_a_closed_store_refuses_work(fake_gcs: FakeGCS, key: str) -> None:
    store = open_gcs(fake_gcs.endpoint)
    await store.put(key, b"x")
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(BarmanCloudError, match="closed"):
        await store.head(key)


# -- aborted, cancelled and resumed uploads ------------------------------------------------------------


class SourceBroke(Exception):
    pass


@pytest.mark.parametrize("how", ["source fails", "cancelled"])
async def test_an_aborted_replacement_keeps_the_old_object_and_cancels_its_session(
    fake_gcs: FakeGCS, key: str, how: str
) -> None:
    old = data_of(CHUNK + 5, seed="old")
    async with proxy_to(fake_gcs) as proxy:
        store = open_gcs(proxy.url, single_put_max=CHUNK, part_size=CHUNK)
        try:
            await store.put(key, old)
            proxy.chunk_arrived.clear()
            never = asyncio.Event()

            async def source() -> AsyncIterator[bytes]:
                async for piece in stream(data_of(4 * CHUNK, seed="new")):
                    yield piece
                if how == "source fails":
                    raise SourceBroke
                await never.wait()  # until cancelled
                yield b"never sent"

            upload = asyncio.create_task(store.put(key, source()))
            if how == "cancelled":
                for _ in range(3):  # cancel in the middle: three chunks of four have arrived
                    proxy.chunk_arrived.clear()
                    await proxy.chunk_arrived.wait()
                upload.cancel()
            with pytest.raises(SourceBroke if how == "source fails" else asyncio.CancelledError):
                await upload
            assert await read_all(store, key) == old
            assert [e async for e in store.list(key)] == [await store.head(key)]
        finally:
            await store.close()
    started = [s for s in proxy.seen if s.query.get("uploadType") == "resumable" and s.method == "POST"]
    assert len(started) == 2  # the old object (over one chunk) and the aborted replacement
    deleted = proxy.uploads("DELETE")
    assert len(deleted) == 1
    assert deleted[0].query["upload_id"] == proxy.uploads("PUT")[-1].query["upload_id"]


@pytest.mark.parametrize("lost", ["before", "after"])
async def test_a_failed_chunk_is_resumed_from_the_committed_offset(
    fake_gcs: FakeGCS, key: str, lost: str
) -> None:
    """The second chunk's answer is a 503: either the chunk never reached the server ("before") or
    the server kept it and the answer was lost ("after"). Either way the store asks the session what
    it has and sends only what is missing: the object is byte-identical, with nothing sent twice."""
    data = data_of(4 * CHUNK + 1000, seed=lost)
    async with proxy_to(fake_gcs) as proxy:
        proxy.fault = lost
        store = open_gcs(proxy.url, single_put_max=CHUNK, part_size=CHUNK)
        try:
            info = await store.put(key, stream(data))
            assert info.size == len(data)
            assert await read_all(store, key) == data
        finally:
            await store.close()
    assert proxy.status_queries == 1
    sent = [
        s.headers["Content-Range"] for s in proxy.uploads("PUT") if s.headers["Content-Range"] != "bytes */*"
    ]
    second = f"bytes {CHUNK}-{2 * CHUNK - 1}/*"
    assert sent.count(second) == (2 if lost == "before" else 1)


async def test_a_broken_download_resumes_where_it_stopped(fake_gcs: FakeGCS, key: str) -> None:
    data = data_of(3 * MiB + 3, seed="download")
    async with proxy_to(fake_gcs) as proxy:
        store = open_gcs(proxy.url)
        try:
            await store.put(key, data)
            proxy.cut_download_at = MiB + 7
            assert await read_all(store, key) == data
        finally:
            await store.close()
    downloads = [s for s in proxy.seen if s.query.get("alt") == "media"]
    assert len(downloads) == 2
    assert "Range" not in downloads[0].headers
    resumed_at = int(downloads[1].headers["Range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= MiB + 7
    assert downloads[1].query["generation"]  # the same object version, not whatever replaced it


# -- error mapping ---------------------------------------------------------------------------------


async def test_a_403_answer_is_forbidden_and_not_retried() -> None:
    """fake-gcs-server has no authentication, so this server answers every request with the 403
    Google sends for a missing permission: what is tested is our mapping of that HTTP answer."""
    requests: list[str] = []

    async def refuse(request: web.Request) -> web.Response:
        await request.read()
        requests.append(f"{request.method} {request.path}")
        message = "backup@p.iam.gserviceaccount.com does not have storage.objects.get access to the object."
        return gcs_error(403, message, "forbidden")

    async with serve(refuse) as url:
        store = open_gcs(url, single_put_max=CHUNK, part_size=CHUNK)
        try:
            calls: list[Callable[[], Awaitable[object]]] = [
                lambda: store.head("k"),
                lambda: read_all(store, "k"),
                lambda: store.put("k", b"small"),
                lambda: store.put("k", data_of(2 * CHUNK)),
                lambda: store.delete_many(["k"]),
                lambda: anext(aiter(store.list("k"))),
            ]
            for call in calls:
                before = len(requests)
                with pytest.raises(Forbidden) as refused:
                    await call()
                assert len(requests) == before + 1  # refused credentials are not retried
                assert "gs://backups/k" in str(refused.value)
                assert "does not have storage.objects.get access" in str(refused.value)
                assert "no token was sent" in str(refused.value)  # the hint fits an emulator endpoint
        finally:
            await store.close()


@pytest.mark.parametrize("status", [408, 429, 500, 503])
async def test_transient_answers_are_retried(status: int) -> None:
    answers = iter([status, status])

    async def flaky(request: web.Request) -> web.Response:
        code = next(answers, 200)
        if code != 200:
            return gcs_error(code, "try again", "backendError")
        return web.json_response({"kind": "storage#objects", "items": [{"name": "p/x", "size": "1"}]})

    async with serve(flaky) as url:
        store = open_gcs(url, max_attempts=3)
        try:
            assert [e.key async for e in store.list("p/") if isinstance(e, ObjectInfo)] == ["p/x"]
        finally:
            await store.close()
        answers = iter([status] * 2)
        store = open_gcs(url, max_attempts=2)
        try:
            with pytest.raises(Unavailable, match=f"HTTP {status}"):
                await store.head("p/x")
        finally:
            await store.close()


async def test_an_unreachable_endpoint_is_unavailable() -> None:
    store = open_gcs(f"http://127.0.0.1:{free_port()}", max_attempts=2)
    try:
        with pytest.raises(Unavailable, match=r"127\.0\.0\.1"):
            await store.head("k")
    finally:
        await store.close()


# -- credentials -----------------------------------------------------------------------------------


def service_account_key(token_uri: str) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "test",
            "private_key_id": "0123",
            "private_key": pem.decode(),
            "client_email": "backup@test.iam.gserviceaccount.com",
            "token_uri": token_uri,
        }
    )


@dataclass
class GoogleStandIn:
    """A token endpoint and a storage endpoint in one server, recording what they receive."""

    refuse_token: bool = False
    token_requests: int = 0
    authorizations: list[str | None] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        if request.path == "/computeMetadata/v1/instance/service-accounts/default/token":
            self.token_requests += 1
            assert request.headers["Metadata-Flavor"] == "Google"
            return web.json_response({"access_token": "ya29.metadata-token", "expires_in": 3599})
        if request.path == "/token":
            self.token_requests += 1
            form = await request.post()
            assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer" and form["assertion"]
            if self.refuse_token:
                return web.json_response(
                    {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, status=400
                )
            return web.json_response({"access_token": "ya29.test-access-token", "expires_in": 3600})
        self.authorizations.append(request.headers.get("Authorization"))
        return web.json_response({"kind": "storage#objects"})


async def test_a_service_account_key_is_exchanged_for_a_cached_bearer_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    google = GoogleStandIn()
    async with serve(google.handle) as url:
        key_json = service_account_key(f"{url}/token")
        store = open_gcs(url, credentials=GoogleCredentials(application_credentials=key_json))
        try:
            for _ in range(3):
                assert [e async for e in store.list("p/")] == []
        finally:
            await store.close()
        assert google.authorizations == ["Bearer ya29.test-access-token"] * 3
        assert google.token_requests == 1

        google.refuse_token = True
        store = open_gcs(url, credentials=GoogleCredentials(application_credentials=key_json))
        try:
            with caplog.at_level(logging.DEBUG), pytest.raises(Forbidden) as refused:
                await store.head("k")
        finally:
            await store.close()
    assert "invalid_grant: Invalid JWT Signature." in str(refused.value)
    assert google.token_requests == 2  # a refusal is final, not retried
    private_key = json.loads(key_json)["private_key"]
    for text in (str(refused.value), caplog.text, repr(store)):
        assert "PRIVATE KEY" not in text and private_key[40:80] not in text


async def test_no_token_is_sent_to_an_emulator_without_credentials() -> None:
    """Without credentials, an endpointURL means an emulator: no token, hence no metadata server
    lookup (which would hang or fail here)."""
    google = GoogleStandIn()
    async with serve(google.handle) as url:
        store = open_gcs(url)
        try:
            assert [e async for e in store.list("p/")] == []
        finally:
            await store.close()
    assert google.authorizations == [None]
    assert google.token_requests == 0


GKE_CLIENT = """
import asyncio, sys
from barman_cloud.storage.factory import open_store
from barman_cloud.storage.options import GoogleCredentials, StoreOptions

async def main() -> None:
    options = StoreOptions(endpoint_url=sys.argv[1])
    store = open_store("gs://backups/x", GoogleCredentials(gke_environment=True), options)
    try:
        print([entry async for entry in store.list("p/")])
    finally:
        await store.close()

asyncio.run(main())
"""


async def test_gke_workload_identity_takes_its_token_from_the_metadata_server(tmp_path: Path) -> None:
    """``gkeEnvironment``: application default credentials, which on GKE means the metadata
    server. gcloud-aio-auth reads ``GCE_METADATA_HOST`` when imported, so the client runs in its own
    process pointed at the stand-in (with a HOME that holds no gcloud credentials file)."""
    google = GoogleStandIn()
    async with serve(google.handle) as url:
        environment = {
            name: value
            for name, value in os.environ.items()
            if name not in ("GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_CONFIG", "STORAGE_EMULATOR_HOST")
        }
        environment.update(HOME=str(tmp_path), GCE_METADATA_HOST=url.removeprefix("http://"))
        client = await asyncio.create_subprocess_exec(
            sys.executable, "-c", GKE_CLIENT, url, env=environment, cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        output, errors = await client.communicate()
    assert client.returncode == 0, errors.decode()
    assert output.decode().strip() == "[]"
    assert google.token_requests == 1
    assert google.authorizations == ["Bearer ya29.metadata-token"]


@pytest.mark.parametrize("scheme", ["http://", ""])
async def test_storage_emulator_host_is_honoured_like_googles_libraries_do(
    fake_gcs: FakeGCS, key: str, monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    """No endpointURL: ``STORAGE_EMULATOR_HOST`` (with or without its scheme) picks the endpoint,
    and without credentials no token is fetched for it."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", scheme + fake_gcs.endpoint.removeprefix("http://"))
    store = open_store(f"gs://{fake_gcs.bucket}/x", GoogleCredentials(), StoreOptions())
    try:
        await store.put(key, b"via STORAGE_EMULATOR_HOST")
        assert await read_all(store, key) == b"via STORAGE_EMULATOR_HOST"
    finally:
        await store.close()


@pytest.mark.parametrize(
    "text, complaint",
    [
        ('{"type": "service_account", "private_key": "SECRET-KEY-MATERIAL"', "not valid JSON"),
        ('{"type": "service_account", "private_key": "SECRET-KEY-MATERIAL"}', "lacks client_email"),
        ('{"type": "SECRET-KEY-MATERIAL"}', "no supported 'type'"),
    ],
)
def test_unusable_credentials_are_refused_without_quoting_them(text: str, complaint: str) -> None:
    with pytest.raises(InvalidInput, match=complaint) as refused:
        open_gcs("http://127.0.0.1:1", credentials=GoogleCredentials(application_credentials=text))
    assert "SECRET" not in str(refused.value)


def test_an_endpoint_ca_that_is_not_pem_is_refused() -> None:
    with pytest.raises(InvalidInput, match="endpointCA"):
        open_gcs("https://127.0.0.1:1", endpoint_ca=b"not a certificate")


# -- TLS -------------------------------------------------------------------------------------------


@dataclass
class TLSFakeGCS:
    endpoint: str
    ca: CertificateAuthority


def issue_for_ip(ca: CertificateAuthority, directory: Path) -> KeyPair:
    """A server certificate for 127.0.0.1 (an IP SAN: the harness issues DNS names only)."""
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
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]), critical=False
        )
        .sign(ca.key, hashes.SHA256())
    )
    pair = KeyPair(directory / "gcs-tls.crt", directory / "gcs-tls.key")
    pair.cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    pair.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return pair


@pytest.fixture(scope="module")
def tls_fake_gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSFakeGCS]:
    """A second fake-gcs-server, over HTTPS with a certificate from a private CA."""
    directory = tmp_path_factory.mktemp("gcs-tls")
    ca = CertificateAuthority(directory, "gcs-test")
    pair = issue_for_ip(ca, directory)
    port = free_port()
    endpoint = f"https://127.0.0.1:{port}"
    command = [
        str(fake_gcs_server()), "-scheme", "https", "-host", "127.0.0.1", "-port", str(port),
        "-backend", "memory", "-cert-location", str(pair.cert), "-private-key-location", str(pair.key),
        "-public-host", f"127.0.0.1:{port}", "-external-url", endpoint,
    ]  # fmt: skip
    process = ManagedProcess("fake-gcs-server (https)", command, directory / "fake-gcs-tls.log")
    try:
        process.wait_until(lambda: port_open(port))
        trust = ssl.create_default_context(cafile=str(ca.cert_path))
        request = urllib.request.Request(  # noqa: S310 - https://127.0.0.1 only
            f"{endpoint}/storage/v1/b?project=test",
            data=json.dumps({"name": "backups"}).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10, context=trust) as response:  # noqa: S310
            assert response.status == 200
        yield TLSFakeGCS(endpoint, ca)
    finally:
        process.stop()


async def test_tls_endpoint_trusted_through_endpoint_ca(tls_fake_gcs: TLSFakeGCS, key: str) -> None:
    store = open_gcs(
        tls_fake_gcs.endpoint,
        endpoint_ca=tls_fake_gcs.ca.cert_path.read_bytes(),
        single_put_max=CHUNK,
        part_size=CHUNK,
    )
    try:
        data = data_of(2 * CHUNK + 9)
        await store.put(key, stream(data))  # a resumable session, its URI on https too
        await store.put(f"{key}-small", b"small")
        assert await read_all(store, key) == data
        assert [e.key async for e in store.list(key) if isinstance(e, ObjectInfo)] == [key, f"{key}-small"]
    finally:
        await store.close()


@pytest.mark.parametrize("trusted", ["system store", "another CA"])
async def test_tls_endpoint_without_its_ca_fails_clearly(
    tls_fake_gcs: TLSFakeGCS, tmp_path: Path, trusted: str
) -> None:
    endpoint_ca = None
    if trusted == "another CA":
        endpoint_ca = CertificateAuthority(tmp_path, "unrelated").cert_path.read_bytes()
    store = open_gcs(tls_fake_gcs.endpoint, endpoint_ca=endpoint_ca)
    try:
        with pytest.raises(
            InvalidInput, match=r"TLS verification of https://127\.0\.0\.1:\d+ failed"
        ) as refused:
            await store.head("k")
        assert "endpointCA" in str(refused.value)
    finally:
        await store.close()
