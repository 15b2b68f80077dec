"""Destination URL -> provider, bucket and base path, exactly as barman-cloud 3.x parses them."""

from __future__ import annotations

from urllib.parse import urlsplit

from barman_cloud.errors import InvalidInput
from barman_cloud.storage import Provider, StoreLocation

_AZURE_HOST_SUFFIX = ".blob.core.windows.net"
_GCS_CONSOLE = "console.cloud.google.com"


def parse_destination(url: str) -> StoreLocation:
    """Parse ``destinationPath``; raise InvalidInput naming what is wrong and an accepted form."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as error:
        raise InvalidInput(f"destinationPath {url!r} is not a valid URL ({error})") from None
    scheme = parts.scheme.lower()
    if scheme == "s3":
        if not parts.netloc:
            raise InvalidInput(f"destinationPath {url!r} has no bucket", hint="use s3://BUCKET[/path]")
        return StoreLocation(Provider.S3, parts.netloc, parts.path.lstrip("/"), url)
    if scheme == "gs":
        if not parts.netloc:
            raise InvalidInput(f"destinationPath {url!r} has no bucket", hint="use gs://BUCKET[/path]")
        return StoreLocation(Provider.GCS, parts.netloc, parts.path.strip("/"), url)
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise InvalidInput(
                f"destinationPath {url!r} is not a local path", hint="use file:///absolute/path"
            )
        return StoreLocation(Provider.FILESYSTEM, parts.path.rstrip("/") or "/", "", url)
    if scheme in ("http", "https"):
        return _parse_http(url, parts.scheme, parts.netloc, parts.hostname or "", parts.path)
    raise InvalidInput(
        f"destinationPath {url!r} has an unsupported scheme",
        hint="use s3://, gs://, https://ACCOUNT.blob.core.windows.net/CONTAINER, an Azurite "
        "http://HOST:PORT/ACCOUNT/CONTAINER URL, or file:///path",
    )


def _parse_http(url: str, scheme: str, netloc: str, host: str, path: str) -> StoreLocation:
    segments = path.lstrip("/").split("/")
    if host == _GCS_CONSOLE:
        # https://console.cloud.google.com/storage/browser/BUCKET[/path]
        if segments[:2] != ["storage", "browser"] or len(segments) < 3 or not segments[2]:
            raise InvalidInput(
                f"destinationPath {url!r} is not a GCS browser URL", hint="use gs://BUCKET[/path]"
            )
        return StoreLocation(Provider.GCS, segments[2], "/".join(segments[3:]).strip("/"), url)
    if host.endswith(_AZURE_HOST_SUFFIX):
        account = host[: -len(_AZURE_HOST_SUFFIX)]
        if not segments[0]:
            raise InvalidInput(
                f"destinationPath {url!r} has no container",
                hint="use https://ACCOUNT.blob.core.windows.net/CONTAINER",
            )
        return StoreLocation(
            Provider.AZURE,
            segments[0],
            "/".join(segments[1:]),
            url,
            account=account,
            endpoint=f"{scheme}://{netloc}",
        )
    # Emulator style (Azurite): http://HOST:PORT/ACCOUNT/CONTAINER[/path]
    if len(segments) < 2 or not segments[0] or not segments[1]:
        raise InvalidInput(
            f"destinationPath {url!r} has no account and container",
            hint="use http://HOST:PORT/ACCOUNT/CONTAINER[/path]",
        )
    return StoreLocation(
        Provider.AZURE,
        segments[1],
        "/".join(segments[2:]),
        url,
        account=segments[0],
        endpoint=f"{scheme}://{netloc}/{segments[0]}",
    )
