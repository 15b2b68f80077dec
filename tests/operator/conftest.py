"""The operator process (Kopf controller + CNPG-I endpoint) against kmock's KubernetesEmulator
over HTTP and the object-store emulators. See :mod:`tests.harness.kubernetes` for what the
emulator does and does not check."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import kmock
import pytest

from barman_cloud.format.backup_id import new_backup_id
from barman_cloud.format.backup_info import BackupInfo, format_backup_info
from barman_cloud.format.keys import ServerLayout
from barman_cloud.format.wal import WalName, segment_name
from barman_cloud.storage import Store
from barman_cloud.storage.factory import open_store
from barman_cloud.storage.options import S3Credentials, StoreOptions
from tests.harness.kubernetes import (
    ClusterEmulator,
    crd,
    custom_resources,
    register_resources,
    write_kubeconfig,
)
from tests.harness.object_stores import MotoS3
from tests.harness.operator_process import OperatorProcess

NAMESPACE = "db"
PLUGIN = "barman-cloud.cloudnative-pg.io"
OBJECT_STORES = "barmancloud.cnpg.io/v1/objectstores"
CLUSTERS = "postgresql.cnpg.io/v1/clusters"
BACKUPS = "postgresql.cnpg.io/v1/backups"
SCHEDULED_BACKUPS = "postgresql.cnpg.io/v1/scheduledbackups"
SECRETS = "v1/secrets"
EVENTS = "v1/events"
ROLES = "rbac.authorization.k8s.io/v1/roles"
PEERINGS = "kopf.dev/v1/clusterkopfpeerings"
SEGMENT = 16 * 1024 * 1024


@pytest.fixture
def kmock_options(kmock_options: dict[str, Any]) -> dict[str, Any]:
    return {**kmock_options, "cls": ClusterEmulator}


def _path(
    resource: str, namespace: str | None, name: str | None = None, subresource: str | None = None
) -> str:
    group, version, plural = (
        resource.rsplit("/", 2) if resource.count("/") == 2 else ("", *resource.split("/"))
    )
    root = f"/apis/{group}/{version}" if group else f"/api/{version}"
    where = f"/namespaces/{namespace}" if namespace else ""
    tail = f"/{name}" if name else ""
    return f"{root}{where}/{plural}{tail}" + (f"/{subresource}" if subresource else "")


@dataclass
class Api:
    """Writes go through HTTP (so watchers see them); reads come from the emulator's memory."""

    emulator: ClusterEmulator
    kubeconfig: Path

    async def _send(self, method: str, url: str, body: Any, content_type: str = "application/json") -> Any:
        async with self.emulator.request(
            method, url, json=body, headers={"Content-Type": content_type}
        ) as response:
            payload = await response.json(content_type=None)
            assert response.status < 300, f"{method} {url}: {response.status} {payload}"
            return payload

    async def create(self, resource: str, body: Mapping[str, Any]) -> dict[str, Any]:
        namespace = (body.get("metadata") or {}).get("namespace")
        result: dict[str, Any] = await self._send("POST", _path(resource, namespace), dict(body))
        return result

    async def patch(
        self, resource: str, name: str, body: Mapping[str, Any], namespace: str | None = NAMESPACE
    ) -> None:
        await self._send(
            "PATCH", _path(resource, namespace, name), dict(body), "application/merge-patch+json"
        )

    async def delete(self, resource: str, name: str, namespace: str | None = NAMESPACE) -> None:
        await self._send("DELETE", _path(resource, namespace, name), {})

    def get(self, resource: str, name: str, namespace: str | None = NAMESPACE) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.emulator.stored(kmock.resource(resource), namespace, name)
        return found

    def all(self, resource: str) -> list[dict[str, Any]]:
        wanted = kmock.resource(resource)
        return [
            dict(obj.raw)
            for (kind, _, _), obj in self.emulator.objects.items()
            if kind == wanted and not obj.deleted
        ]

    def status(self, name: str) -> dict[str, Any]:
        store = self.get(OBJECT_STORES, name) or {}
        return dict(store.get("status") or {})

    def condition(self, name: str, kind: str) -> dict[str, Any] | None:
        for entry in self.status(name).get("conditions") or []:
            if entry.get("type") == kind:
                return dict(entry)
        return None

    def events(self, kind: str, name: str) -> list[dict[str, Any]]:
        return [
            event
            for event in self.all(EVENTS)
            if (event.get("involvedObject") or {}).get("kind") == kind
            and (event.get("involvedObject") or {}).get("name") == name
        ]

    def event(self, kind: str, name: str, reason: str) -> dict[str, Any] | None:
        return next((e for e in self.events(kind, name) if e.get("reason") == reason), None)


@pytest.fixture
async def api(kmock: ClusterEmulator, tmp_path: Path) -> AsyncIterator[Api]:
    register_resources(kmock)
    helper = Api(kmock, write_kubeconfig(tmp_path / "kubeconfig", str(kmock.url).rstrip("/")))
    for resource in custom_resources():
        await helper.create("apiextensions.k8s.io/v1/customresourcedefinitions", crd(resource))
    # No Namespace object: kmock cannot parse POST /api/v1/namespaces, and a cluster-wide Kopf
    # only needs the resource to be discoverable.
    yield helper


@dataclass
class Operators:
    workdir: Path
    kubeconfig: Path
    started: list[OperatorProcess] = field(default_factory=list)

    async def start(
        self, name: str = "operator-a", *, leader_elect: bool = False, env: dict[str, str] | None = None
    ) -> OperatorProcess:
        process = OperatorProcess(
            self.workdir, self.kubeconfig, name=name, leader_elect=leader_elect, env=env
        )
        self.started.append(process)
        await process.start()
        return process


@pytest.fixture
async def operators(api: Api, tmp_path: Path) -> AsyncIterator[Operators]:
    """Start operator processes; every one still running is stopped (and must exit 0) at the end."""
    group = Operators(tmp_path / "operators", api.kubeconfig)
    yield group
    failures = []
    for process in group.started:
        if process.exited() is None:
            code = await process.stop()
            if code != 0:
                failures.append(f"{process.name} exited with {code}\n{process.tail()}")
    assert not failures, "\n".join(failures)


# --- object stores, Secrets and backups -------------------------------------------------------


def s3_store(
    name: str, moto: MotoS3, prefix: str, *, credentials: str = "aws", **spec: Any
) -> dict[str, Any]:
    """An ObjectStore on moto's S3 checked every second (``retentionPolicyIntervalSeconds``)."""
    return {
        "apiVersion": "barmancloud.cnpg.io/v1",
        "kind": "ObjectStore",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "configuration": {
                "destinationPath": f"s3://{moto.bucket}/{prefix}",
                "endpointURL": moto.endpoint,
                "s3Credentials": {
                    "accessKeyId": {"name": credentials, "key": "ACCESS_KEY_ID"},
                    "secretAccessKey": {"name": credentials, "key": "ACCESS_SECRET_KEY"},
                    "region": {"name": credentials, "key": "REGION"},
                },
            },
            "instanceSidecarConfiguration": {"retentionPolicyIntervalSeconds": 1},
            **spec,
        },
    }


def aws_secret(moto: MotoS3, name: str = "aws") -> dict[str, Any]:
    values = {"ACCESS_KEY_ID": moto.access_key, "ACCESS_SECRET_KEY": moto.secret_key, "REGION": moto.region}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in values.items()},
    }


def moto_store(moto: MotoS3, prefix: str) -> Store:
    credentials = S3Credentials(
        access_key_id=moto.access_key, secret_access_key=moto.secret_key, region=moto.region
    )
    return open_store(f"s3://{moto.bucket}/{prefix}", credentials, StoreOptions(endpoint_url=moto.endpoint))


def backup_info(begin: datetime, *, segment: int, status: str = "DONE") -> BackupInfo:
    """A backup.info as barman-cloud-backup writes it, one WAL segment long."""
    values: dict[str, Any] = {
        "status": status, "timeline": 1, "version": 160004, "systemid": "7312345678901234567",
        "pgdata": "/var/lib/postgresql/data", "begin_time": begin, "begin_offset": 40,
        "begin_wal": segment_name(1, segment, SEGMENT), "begin_xlog": f"0/{segment:X}000028",
    }  # fmt: skip
    if status == "DONE":
        values.update(
            end_time=begin + timedelta(seconds=1),
            end_wal=segment_name(1, segment, SEGMENT),
            end_xlog=f"0/{segment:X}000138",
            end_offset=312,
        )
    return BackupInfo(**values)


async def put_backup(store: Store, server: str, begin: datetime, *, segment: int) -> str:
    """A completed backup (backup.info, one archive) and the WAL segment it needs; its ID."""
    layout = ServerLayout(store.location.prefix, server)
    backup_id = new_backup_id(begin)
    await store.put(f"{layout.backup_dir(backup_id)}data.tar", b"tar")
    await store.put(layout.wal(WalName.parse(segment_name(1, segment, SEGMENT)), None), b"wal")
    await store.put(layout.backup_info(backup_id), format_backup_info(backup_info(begin, segment=segment)))
    return backup_id


def cluster(name: str, store: str, *, server: str | None = None) -> dict[str, Any]:
    parameters = {"barmanObjectName": store, **({"serverName": server} if server else {})}
    return {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "instances": 1,
            "plugins": [{"name": PLUGIN, "isWALArchiver": True, "parameters": parameters}],
        },
    }


def backup_object(name: str, cluster_name: str, cluster_uid: str, backup_id: str) -> dict[str, Any]:
    """A completed plugin Backup as CloudNativePG leaves it (status written with the object)."""
    return {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Backup",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"cnpg.io/cluster": cluster_name}},
        "spec": {
            "cluster": {"name": cluster_name},
            "method": "plugin",
            "pluginConfiguration": {"name": PLUGIN},
        },
        "status": {
            "phase": "completed",
            "method": "plugin",
            "backupId": backup_id,
            "pluginMetadata": {"clusterUID": cluster_uid, "pluginName": PLUGIN},
        },
    }
