"""The operator-side endpoint, called as CloudNativePG's operator calls it.

- CloudNativePG's objects: realistic Cluster, instance Pod and full-recovery Job JSON
  (``tests/data/cnpg``), shaped like CloudNativePG 1.27-1.30 serialises them.
- The Kubernetes API: kmock's KubernetesEmulator over real HTTP (no API server can run here),
  extended to keep ``metadata.resourceVersion`` and to refuse a write carrying a stale one (409),
  as the API server does; a test can make "someone else" change an object just before our write.
- The endpoint: a real :class:`PluginServer` over mutual TLS, and a grpclib client with
  CloudNativePG's TLS settings that runs the handshake within 5 s and every hook with a 30 s
  timeout (the ``grpc-timeout`` CloudNativePG sends to TCP plugins).
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import attrs
import jsonpatch
import kmock
import pytest
from kubernetes_asyncio import client

from plugin_grpc.cnpg_caller import handshake, operator_channel, operator_client_context
from plugin_grpc.kube import KubernetesReader
from plugin_grpc.metadata import PLUGIN_NAME
from plugin_grpc.operator_side.settings import OperatorSide
from plugin_grpc.proto import (
    operator_grpc,
    operator_lifecycle_grpc,
    operator_lifecycle_pb2,
    operator_pb2,
    reconciler_grpc,
    reconciler_pb2,
)
from plugin_grpc.roles import Role, assemble
from plugin_grpc.server import PluginServer
from tests.harness.certificates import PKI

DATA = Path(__file__).resolve().parents[2] / "data" / "cnpg"
NAMESPACE = "db"
SIDECAR_IMAGE = "registry.example.com/barman-cloud-plugin:0.1.0"
HANDSHAKE_TIMEOUT = 5.0
HOOK_TIMEOUT = 30.0

OBJECT_STORES = "barmancloud.cnpg.io/v1/objectstores"
ROLES = "rbac.authorization.k8s.io/v1/roles"
ROLE_BINDINGS = "rbac.authorization.k8s.io/v1/rolebindings"
EVENTS = "v1/events"

Operation = operator_lifecycle_pb2.OperatorOperationType


def load(name: str) -> dict[str, Any]:
    """A fresh copy of a fixture from tests/data/cnpg."""
    result: dict[str, Any] = json.loads((DATA / name).read_text())
    return result


def object_store(name: str, configuration: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "barmancloud.cnpg.io/v1",
        "kind": "ObjectStore",
        "metadata": {"name": name, "namespace": NAMESPACE, "generation": 1},
        "spec": {"configuration": configuration, **spec},
    }


def minio_store() -> dict[str, Any]:
    """The Cluster's archive: S3-compatible with a private CA, tuned sidecar (upstream's example)."""
    store = object_store(
        "minio-store",
        {
            "destinationPath": "s3://backups/",
            "endpointURL": "https://minio.storage.svc:9000",
            "endpointCA": {"name": "minio-server-tls", "key": "ca.crt"},
            "s3Credentials": {
                "accessKeyId": {"name": "minio", "key": "ACCESS_KEY_ID"},
                "secretAccessKey": {"name": "minio", "key": "ACCESS_SECRET_KEY"},
            },
            "wal": {"compression": "gzip", "maxParallel": 8},
        },
        retentionPolicy="30d",
        instanceSidecarConfiguration={
            "logLevel": "debug",
            "additionalContainerArgs": ["--pprof-server=0.0.0.0:6061"],
            "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}},
            "env": [
                {"name": "AWS_REQUEST_CHECKSUM_CALCULATION", "value": "when_required"},
                {"name": "TZ", "value": "UTC"},
                {"name": "NAMESPACE", "value": "elsewhere"},
            ],
        },
    )
    store["status"] = {
        "serverRecoveryWindow": {
            "pg1": {
                "firstRecoverabilityPoint": "2026-08-20T10:00:00Z",
                "lastSuccessfulBackupTime": "2026-08-21T10:00:00Z",
            }
        }
    }
    return store


def origin_store() -> dict[str, Any]:
    """The recovery source's archive (another cluster's, server name ``pg0``)."""
    return object_store(
        "origin-store",
        {
            "destinationPath": "s3://backups-origin/",
            "s3Credentials": {
                "accessKeyId": {"name": "origin-aws", "key": "ACCESS_KEY_ID"},
                "secretAccessKey": {"name": "origin-aws", "key": "ACCESS_SECRET_KEY"},
                "region": {"name": "origin-region", "key": "REGION"},
            },
        },
        instanceSidecarConfiguration={
            "logLevel": "trace",
            "resources": {"requests": {"cpu": "100m", "memory": "32Mi"}},
            "env": [
                {"name": "AWS_REQUEST_CHECKSUM_CALCULATION", "value": "when_supported"},
                {"name": "ORIGIN_ONLY", "value": "1"},
            ],
        },
    )


def iam_store(name: str = "iam-store") -> dict[str, Any]:
    """Credentials from the Pod's identity (IRSA): no Secret at all."""
    return object_store(
        name, {"destinationPath": "s3://backups-iam/", "s3Credentials": {"inheritFromIAMRole": True}}
    )


def apply(document: dict[str, Any], patch: bytes) -> dict[str, Any]:
    """``document`` patched as CloudNativePG does it (RFC 6902; empty bytes = unchanged)."""
    if not patch:
        return copy.deepcopy(document)
    operations = json.loads(patch)
    assert isinstance(operations, list)
    result: dict[str, Any] = jsonpatch.apply_patch(document, operations)
    return result


def plugin_entry(cluster: dict[str, Any]) -> dict[str, Any]:
    entries = [p for p in cluster["spec"]["plugins"] if p["name"] == PLUGIN_NAME]
    assert len(entries) == 1
    result: dict[str, Any] = entries[0]
    return result


# --- the Kubernetes API -----------------------------------------------------------------------

Interference = Callable[["VersionedEmulator", kmock.Request], None]


@attrs.define(kw_only=True)
class VersionedEmulator(kmock.KubernetesEmulator):
    """The emulator plus what the API server does with ``resourceVersion``: a new one on every
    write, and 409 Conflict for a patch that carries an outdated one (optimistic locking)."""

    before_update: list[Interference] = attrs.field(factory=list)
    """Run (then dropped) just before the next patch is checked: "someone else" writing."""
    version: int = 0

    def bump(self) -> str:
        self.version += 1
        return str(self.version)

    async def _handle(self, request: kmock.Request) -> Any:
        if request.resource is not None and isinstance(request.data, dict):
            if request.action == kmock.action.UPDATE and request.name is not None:
                while self.before_update:
                    self.before_update.pop(0)(self, request)
                key = (request.resource, request.namespace, request.name)
                if key in self.objects and not self.objects[key].deleted:
                    stored = (self.objects[key].get("metadata") or {}).get("resourceVersion")
                    sent = (request.data.get("metadata") or {}).get("resourceVersion")
                    if sent is not None and sent != stored:
                        raise kmock.KubernetesError(
                            status=409, reason="Conflict", message="the object has been modified"
                        )
            if request.action in (kmock.action.CREATE, kmock.action.UPDATE):
                request.data.setdefault("metadata", {})["resourceVersion"] = self.bump()
        return await super()._handle(request)


@pytest.fixture
def kmock_options(kmock_options: dict[str, Any]) -> dict[str, Any]:
    return {**kmock_options, "cls": VersionedEmulator}


@dataclass
class Kube:
    """The emulated API server and a client of it."""

    emulator: VersionedEmulator
    api: client.ApiClient

    async def put_store(self, document: dict[str, Any]) -> None:
        """Create the ObjectStore, replacing one of the same name."""
        name = document["metadata"]["name"]
        if self.get(OBJECT_STORES, name) is not None:
            await self.delete_store(name)
        await client.CustomObjectsApi(self.api).create_namespaced_custom_object(
            "barmancloud.cnpg.io", "v1", NAMESPACE, "objectstores", document
        )

    async def delete_store(self, name: str) -> None:
        await client.CustomObjectsApi(self.api).delete_namespaced_custom_object(
            "barmancloud.cnpg.io", "v1", NAMESPACE, "objectstores", name
        )

    def get(self, resource: str, name: str) -> dict[str, Any] | None:
        for (kind, namespace, found), obj in self.emulator.objects.items():
            if (kind, namespace, found) == (kmock.resource(resource), NAMESPACE, name) and not obj.deleted:
                return dict(obj.raw)
        return None

    def requests(self) -> list[kmock.Request]:
        """Every request the API server received, in order."""
        return list(self.emulator)

    def events(self) -> list[dict[str, Any]]:
        return [
            dict(obj.raw)
            for (resource, _, _), obj in self.emulator.objects.items()
            if resource.plural == "events" and not obj.deleted
        ]


@pytest.fixture
async def kube(kmock: VersionedEmulator) -> AsyncIterator[Kube]:
    verbs = ["get", "list", "watch", "create", "patch", "delete"]
    for resource, kind in (
        (OBJECT_STORES, "ObjectStore"),
        (ROLES, "Role"),
        (ROLE_BINDINGS, "RoleBinding"),
        (EVENTS, "Event"),
    ):
        kmock.resources[resource] = kmock.ResourceInfo(kind=kind, namespaced=True, verbs=verbs)
    api = client.ApiClient(client.Configuration(host=str(kmock.url).rstrip("/")))
    kube = Kube(kmock, api)
    await kube.put_store(minio_store())
    await kube.put_store(origin_store())
    yield kube
    await api.close()


# --- the endpoint and CloudNativePG's calls ------------------------------------------------------


class CloudNativePG:
    """The operator's calls to the plugin, each with CloudNativePG's 30 s deadline."""

    def __init__(self, channel: Any) -> None:
        self.lifecycle = operator_lifecycle_grpc.OperatorLifecycleStub(channel)
        self.reconciler = reconciler_grpc.ReconcilerHooksStub(channel)
        self.operator = operator_grpc.OperatorStub(channel)

    async def hook(self, operation: Any, cluster: dict[str, Any], document: dict[str, Any]) -> bytes:
        request = operator_lifecycle_pb2.OperatorLifecycleRequest(
            operation_type=Operation(type=operation),
            cluster_definition=json.dumps(cluster).encode(),
            object_definition=json.dumps(document).encode(),
        )
        response = await self.lifecycle.LifecycleHook(request, timeout=HOOK_TIMEOUT)
        return bytes(response.json_patch)

    async def evaluate(self, cluster: dict[str, Any], pod: dict[str, Any]) -> bytes:
        return await self.hook(Operation.TYPE_EVALUATE, cluster, pod)

    async def create(self, cluster: dict[str, Any], document: dict[str, Any]) -> bytes:
        return await self.hook(Operation.TYPE_CREATE, cluster, document)

    async def pre(
        self, cluster: dict[str, Any], resource: dict[str, Any] | None = None
    ) -> reconciler_pb2.ReconcilerHooksResult:
        request = reconciler_pb2.ReconcilerHooksRequest(
            cluster_definition=json.dumps(cluster).encode(),
            resource_definition=json.dumps(cluster if resource is None else resource).encode(),
        )
        return await self.reconciler.Pre(request, timeout=HOOK_TIMEOUT)

    async def post(self, cluster: dict[str, Any]) -> reconciler_pb2.ReconcilerHooksResult:
        request = reconciler_pb2.ReconcilerHooksRequest(
            cluster_definition=json.dumps(cluster).encode(), resource_definition=json.dumps(cluster).encode()
        )
        return await self.reconciler.Post(request, timeout=HOOK_TIMEOUT)

    async def set_status(self, cluster: dict[str, Any]) -> bytes:
        request = operator_pb2.SetStatusInClusterRequest(cluster=json.dumps(cluster).encode())
        response = await self.operator.SetStatusInCluster(request, timeout=HOOK_TIMEOUT)
        return bytes(response.json_status)


Connect = Callable[..., Awaitable[CloudNativePG]]


@pytest.fixture
async def connect(kube: Kube, pki: PKI) -> AsyncIterator[Connect]:
    """Start an operator-side endpoint over mutual TLS and connect to it as CloudNativePG."""
    servers: list[PluginServer] = []
    channels: list[Any] = []

    async def start(**settings: Any) -> CloudNativePG:
        # No cache: each call sees the emulator as the test left it.
        side = OperatorSide(
            sidecar_image=SIDECAR_IMAGE, kubernetes=KubernetesReader(kube.api, ttl=0), **settings
        )
        server = PluginServer(assemble(Role.OPERATOR, side))
        servers.append(server)
        await server.start_tcp("127.0.0.1", 0, pki.server_files())
        assert server.port is not None
        context = operator_client_context(pki.client.cert, pki.client.key, pki.server_ca.cert_path)
        channel = operator_channel("127.0.0.1", server.port, context)
        channels.append(channel)
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            await handshake(channel)
        return CloudNativePG(channel)

    yield start
    for channel in channels:
        channel.close()
    for server in servers:
        await server.stop()


@pytest.fixture
async def cnpg(connect: Connect) -> CloudNativePG:
    return await connect()
