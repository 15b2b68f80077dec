"""Garbled and oversized CNPG-I requests over real grpclib channels: bytes that are not protobuf,
a message past the server's size limit, Cluster and Backup JSON that is not JSON or has the wrong
shape, plugin parameters of the wrong type. Each gets a client-error status (INVALID_ARGUMENT;
RESOURCE_EXHAUSTED for the size, as grpc-go answers it) with a message saying what was wrong, and
the endpoint goes on serving."""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.encoding.base import CodecBase
from grpclib.exceptions import GRPCError

from plugin_grpc.metadata import PLUGIN_NAME
from plugin_grpc.proto import (
    backup_grpc,
    backup_pb2,
    identity_grpc,
    identity_pb2,
    operator_lifecycle_pb2,
    operator_pb2,
    reconciler_pb2,
    wal_pb2,
)
from plugin_grpc.server import MAX_REQUEST_BYTES
from tests.badinput.conftest import Sidecar, tree
from tests.plugin_grpc.operator_side.conftest import CloudNativePG, Connect, load


class RawCodec(CodecBase):
    """Sends bytes as they are: what a confused or hostile client could put on the wire."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return bytes(message)

    def decode(self, data: bytes, message_type: Any) -> Any:
        return data


async def _raw_call(channel: Channel, path: str, payload: bytes) -> GRPCError:
    with pytest.raises(GRPCError) as failed:
        async with channel.request(path, Cardinality.UNARY_UNARY, bytes, bytes, timeout=30) as stream:
            await stream.send_message(payload, end=True)
            await stream.recv_message()
    return failed.value


async def _still_serving(sidecar: Sidecar) -> None:
    probe = await identity_grpc.IdentityStub(sidecar.channel).Probe(identity_pb2.ProbeRequest(), timeout=30)
    assert probe.ready
    metadata = await identity_grpc.IdentityStub(sidecar.channel).GetPluginMetadata(
        identity_pb2.GetPluginMetadataRequest(), timeout=30
    )
    assert metadata.name == PLUGIN_NAME


NOT_PROTOBUF = {
    "truncated length": b"\x0a\x05ab",
    "invalid tag": b"\xff\xff\xff\xff",
    "text": b"GET / HTTP/1.1\r\nHost: plugin\r\n\r\n",
    "deeply nested group": b"\x0b" * 200,
}


@pytest.mark.parametrize(
    "path",
    [
        "/cnpgi.wal.v1.WAL/Archive",
        "/cnpgi.wal.v1.WAL/Restore",
        "/cnpgi.backup.v1.Backup/Backup",
        "/cnpgi.identity.v1.Identity/GetPluginMetadata",
    ],
)
async def test_bytes_that_are_not_protobuf(sidecar: Sidecar, path: str) -> None:
    channel = Channel(path=str(sidecar.root / PLUGIN_NAME), codec=RawCodec())
    try:
        for case, payload in NOT_PROTOBUF.items():
            refused = await _raw_call(channel, path, payload)
            assert refused.status is Status.INVALID_ARGUMENT, (case, refused)
            assert refused.message is not None and "the request is not a valid cnpgi." in refused.message
            assert "protobuf-encoded CNPG-I messages" in refused.message
        if path == "/cnpgi.wal.v1.WAL/Archive":  # field 2, source_file_name, is a string
            refused = await _raw_call(channel, path, b"\x12\x02\xc3\x28")
            assert refused.status is Status.INVALID_ARGUMENT
            assert "not a valid cnpgi.wal.v1.WALArchiveRequest message" in (refused.message or "")
    finally:
        channel.close()
    await _still_serving(sidecar)
    assert tree(sidecar.bucket) == set()


async def test_a_message_past_the_limit_is_refused_unread(sidecar: Sidecar) -> None:
    channel = Channel(path=str(sidecar.root / PLUGIN_NAME), codec=RawCodec())
    try:
        huge = wal_pb2.WALArchiveRequest(
            cluster_definition=b"{" + b" " * MAX_REQUEST_BYTES + b"}", source_file_name="x"
        ).SerializeToString()
        refused = await _raw_call(channel, "/cnpgi.wal.v1.WAL/Archive", huge)
        assert refused.status is Status.RESOURCE_EXHAUSTED
        assert refused.message == (
            f"the request to /cnpgi.wal.v1.WAL/Archive is {len(huge)} bytes, more than the "
            f"{MAX_REQUEST_BYTES} bytes this plugin accepts"
        )
        # The same connection still carries the next call.
        fine = await _raw_call(channel, "/cnpgi.wal.v1.WAL/Archive", b"")
        assert fine.status is Status.INVALID_ARGUMENT  # an empty request names no file
    finally:
        channel.close()
    await _still_serving(sidecar)


async def test_garbled_backup_requests_fail_before_any_work(sidecar: Sidecar) -> None:
    backup = backup_grpc.BackupStub(sidecar.channel)
    cases: list[tuple[backup_pb2.BackupRequest, str]] = [
        (backup_pb2.BackupRequest(backup_definition=b"\xff\xfe"), "the Backup JSON is not valid JSON"),
        (backup_pb2.BackupRequest(backup_definition=b'["backup"]'), "the Backup JSON is not a JSON object"),
        (backup_pb2.BackupRequest(backup_definition=b'{"metadata": '), "the Backup JSON is not valid JSON"),
        (backup_pb2.BackupRequest(cluster_definition=b"not json"), "the Cluster JSON is not valid JSON"),
        (
            backup_pb2.BackupRequest(cluster_definition=b'{"spec": {"plugins": {"name": 1}}}'),
            "spec.plugins: must be a list, not dict",
        ),
        (
            backup_pb2.BackupRequest(
                cluster_definition=json.dumps(
                    {
                        "metadata": {"name": "pg"},
                        "spec": {
                            "plugins": [{"name": PLUGIN_NAME, "parameters": {"barmanObjectName": ["local"]}}]
                        },
                    }
                ).encode()
            ),
            "spec.plugins[0].parameters.barmanObjectName: must be a string, not ['local']",
        ),
    ]
    for request, message in cases:
        with pytest.raises(GRPCError) as refused:
            await backup.Backup(request, timeout=30)
        assert refused.value.status is Status.INVALID_ARGUMENT, (request, refused.value)
        assert message in (refused.value.message or ""), refused.value.message
    assert tree(sidecar.bucket) == set()
    await _still_serving(sidecar)


# --- the operator-side endpoint (TCP, mutual TLS) ---------------------------------------------------


def _cluster(**parameters: Any) -> dict[str, Any]:
    cluster = load("cluster.json")
    for entry in cluster["spec"]["plugins"]:
        if entry["name"] == PLUGIN_NAME:
            entry["parameters"] = parameters
    return cluster


BAD_CLUSTERS: dict[str, tuple[bytes, str]] = {
    "not JSON": (b"{spec: plugins}", "is not valid JSON"),
    "not UTF-8": (b'{"a": "\xff"}', "is not valid JSON"),
    "empty": (b"", "is empty"),
    "a list": (b"[]", "is not a JSON object but list"),
    "a string": (b'"cluster"', "is not a JSON object but str"),
    "spec a list": (b'{"metadata": {"name": "pg"}, "spec": []}', "spec: must be an object, not list"),
    "plugins an object": (
        b'{"metadata": {"name": "pg"}, "spec": {"plugins": {}}}',
        "spec.plugins: must be a list, not dict",
    ),
    "parameters a list": (
        json.dumps(_cluster()).replace('"parameters": {}', '"parameters": ["barmanObjectName"]').encode(),
        ".parameters: must be an object, not list",
    ),
    "object name a number": (
        json.dumps(_cluster(barmanObjectName=42)).encode(),
        ".parameters.barmanObjectName: must be a string, not 42",
    ),
    "object name with a newline": (
        json.dumps(_cluster(barmanObjectName="minio-store\n")).encode(),
        "cannot be an ObjectStore name",
    ),
    "server name a path": (
        json.dumps(_cluster(barmanObjectName="minio-store", serverName="../other")).encode(),
        ".parameters.serverName: '../other' must be one folder name",
    ),
    "enabled a string": (
        json.dumps(_cluster(barmanObjectName="minio-store"))
        .replace(f'"name": "{PLUGIN_NAME}"', f'"name": "{PLUGIN_NAME}", "enabled": "yes"')
        .encode(),
        ".enabled: must be true or false, not 'yes'",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CLUSTERS), ids=list(BAD_CLUSTERS))
async def test_bad_cluster_json_on_the_operator_endpoint(connect: Connect, case: str) -> None:
    cnpg: CloudNativePG = await connect()
    cluster_json, message = BAD_CLUSTERS[case]
    pod = load("pod-instance.json")
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "LifecycleHook": lambda: cnpg.lifecycle.LifecycleHook(
            operator_lifecycle_pb2.OperatorLifecycleRequest(
                operation_type=operator_lifecycle_pb2.OperatorOperationType(
                    type=operator_lifecycle_pb2.OperatorOperationType.TYPE_EVALUATE
                ),
                cluster_definition=cluster_json,
                object_definition=json.dumps(pod).encode(),
            ),
            timeout=30,
        ),
        "ReconcilerHooks.Pre": lambda: cnpg.reconciler.Pre(
            reconciler_pb2.ReconcilerHooksRequest(
                cluster_definition=cluster_json, resource_definition=b'{"kind": "Cluster"}'
            ),
            timeout=30,
        ),
        "SetStatusInCluster": lambda: cnpg.operator.SetStatusInCluster(
            operator_pb2.SetStatusInClusterRequest(cluster=cluster_json), timeout=30
        ),
    }
    for rpc, call in calls.items():
        with pytest.raises(GRPCError) as refused:
            await call()
        assert refused.value.status is Status.INVALID_ARGUMENT, (rpc, refused.value)
        assert message in (refused.value.message or ""), (rpc, refused.value.message)

    # Still serving, on the same connection: a good Cluster gets its patch.
    good = copy.deepcopy(_cluster(barmanObjectName="minio-store"))
    assert await cnpg.evaluate(good, pod)


async def test_bad_object_definition_on_the_operator_endpoint(connect: Connect) -> None:
    cnpg = await connect()
    cluster = _cluster(barmanObjectName="minio-store")
    for document, message in (
        (b"<Pod/>", "the object_definition is not valid JSON"),
        (b"[1]", "the object_definition is not a JSON object"),
    ):
        request = operator_lifecycle_pb2.OperatorLifecycleRequest(
            operation_type=operator_lifecycle_pb2.OperatorOperationType(
                type=operator_lifecycle_pb2.OperatorOperationType.TYPE_CREATE
            ),
            cluster_definition=json.dumps(cluster).encode(),
            object_definition=document,
        )
        with pytest.raises(GRPCError) as refused:
            await cnpg.lifecycle.LifecycleHook(request, timeout=30)
        assert refused.value.status is Status.INVALID_ARGUMENT
        assert message in (refused.value.message or "")
    # A resource without kind whose metadata is not an object: not the Cluster, nothing to do.
    result = await cnpg.reconciler.Pre(
        reconciler_pb2.ReconcilerHooksRequest(
            cluster_definition=json.dumps(cluster).encode(), resource_definition=b'{"metadata": "backup"}'
        ),
        timeout=30,
    )
    assert result.behavior == reconciler_pb2.ReconcilerHooksResult.BEHAVIOR_CONTINUE
    assert await cnpg.evaluate(cluster, load("pod-instance.json"))
