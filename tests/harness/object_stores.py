"""The object-store emulators: moto's S3 server, Azurite and fake-gcs-server, over real HTTP."""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.harness.processes import ManagedProcess, free_port, port_open
from tests.harness.tools import azurite_blob, fake_gcs_server, moto_server, node

BUCKET = "backups"

# Azurite's well-known development account (published in Microsoft's documentation).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - http://127.0.0.1 only
            return bool(response.status < 500)
    except OSError:
        return False


def object_store_yaml(name: str, destination: str, *, wal: str = "", data: str = "", more: str = "") -> str:
    """An ObjectStore as a user applies it: ``wal`` and ``data`` are the inside of their flow
    mappings (e.g. ``"compression: gzip"``), ``more`` other lines of its configuration."""
    lines = "".join(f"    {line}\n" for line in more.strip().splitlines())
    return f"""
apiVersion: barmancloud.cnpg.io/v1
kind: ObjectStore
metadata: {{name: {name}}}
spec:
  configuration:
    destinationPath: {destination}
{lines}    wal: {{{wal}}}
    data: {{{data}}}
"""


def local_store_manifest(
    bucket: Path, *, name: str = "local", wal: str = "compression: lz4", data: str = ""
) -> str:
    """An ObjectStore on the filesystem store (``file://bucket``)."""
    return object_store_yaml(name, f"file://{bucket}", wal=wal, data=data)


@dataclass
class MotoS3:
    """moto's standalone S3 server; any credentials are accepted. Bucket ``backups`` exists."""

    process: ManagedProcess
    port: int
    bucket: str = BUCKET
    access_key: str = "testing-access-key"
    secret_key: str = "testing-secret-key"
    region: str = "us-east-1"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, workdir: Path) -> MotoS3:
        port = free_port()
        process = ManagedProcess(
            "moto_server", [str(moto_server()), "-H", "127.0.0.1", "-p", str(port)], workdir / "moto.log"
        )
        server = cls(process, port)
        process.wait_until(lambda: _http_ok(f"{server.endpoint}/moto-api/"))
        request = urllib.request.Request(f"{server.endpoint}/{server.bucket}", method="PUT")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            assert response.status == 200
        return server

    def manifest(self, prefix: str, *, name: str = "s3", wal: str = "", data: str = "") -> str:
        """What a user applies for this server: an ObjectStore (``wal`` and ``data``: the inside
        of their flow mappings, e.g. ``"compression: gzip"``) and its Secret, as a YAML stream."""
        more = f"""
endpointURL: {self.endpoint}
s3Credentials:
  accessKeyId: {{name: aws, key: ID}}
  secretAccessKey: {{name: aws, key: SECRET}}
  region: {{name: aws, key: REGION}}
"""
        store = object_store_yaml(name, f"s3://{self.bucket}/{prefix}", wal=wal, data=data, more=more)
        return f"""{store}---
apiVersion: v1
kind: Secret
metadata: {{name: aws}}
stringData: {{ID: {self.access_key}, SECRET: {self.secret_key}, REGION: {self.region}}}
"""

    def env(self) -> dict[str, str]:
        """The AWS environment a barman-cloud command needs to reach this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }


@dataclass
class Azurite:
    """Microsoft's Azure Blob emulator, with the well-known development account."""

    process: ManagedProcess
    port: int
    location: Path
    container: str = BUCKET

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={self.endpoint};"
        )

    @classmethod
    def start(cls, workdir: Path) -> Azurite:
        port = free_port()
        location = Path(tempfile.mkdtemp(prefix="azurite-", dir=workdir))
        command = [
            node(), str(azurite_blob().resolve()), "--blobHost", "127.0.0.1", "--blobPort", str(port),
            "--location", str(location), "--silent", "--skipApiVersionCheck", "--disableTelemetry",
        ]  # fmt: skip
        # Node exits promptly on SIGINT; SIGTERM leaves Azurite 3.37 running until killed.
        process = ManagedProcess("azurite", command, workdir / "azurite.log", stop_signal=signal.SIGINT)
        process.wait_until(lambda: port_open(port))
        return cls(process, port, location)

    def stop(self) -> None:
        self.process.stop()
        shutil.rmtree(self.location, ignore_errors=True)


@dataclass
class FakeGCS:
    """fake-gcs-server in memory; clients find it through ``STORAGE_EMULATOR_HOST``."""

    process: ManagedProcess
    port: int
    bucket: str = BUCKET
    project: str = "test"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, workdir: Path) -> FakeGCS:
        port = free_port()
        command = [
            str(fake_gcs_server()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port),
            "-backend", "memory", "-public-host", f"127.0.0.1:{port}", "-external-url", f"http://127.0.0.1:{port}",
        ]  # fmt: skip
        process = ManagedProcess("fake-gcs-server", command, workdir / "fake-gcs.log")
        server = cls(process, port)
        process.wait_until(lambda: _http_ok(f"{server.endpoint}/storage/v1/b?project={server.project}"))
        body = json.dumps({"name": server.bucket}).encode()
        request = urllib.request.Request(  # noqa: S310
            f"{server.endpoint}/storage/v1/b?project={server.project}",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            assert response.status == 200
        return server
