"""Our .proto files against the CNPG-I v0.6.0 contract, and the generated code against the .proto.

``tests/data/cnpgi-v0.6.0-contract.json`` lists, from the CNPG-I wire specification (cnpg-i
v0.6.0, section 2), every file's package, every service and method, every message field (number,
name, type, cardinality) and every enum value. The descriptors compiled from our .proto files
must match it exactly, both ways: nothing missing, nothing added.
"""

from __future__ import annotations

import filecmp
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor, FileDescriptor

from plugin_grpc.proto import (
    backup_grpc,
    backup_pb2,
    identity_grpc,
    identity_pb2,
    metrics_grpc,
    metrics_pb2,
    operator_grpc,
    operator_lifecycle_grpc,
    operator_lifecycle_pb2,
    operator_pb2,
    postgres_grpc,
    postgres_pb2,
    reconciler_grpc,
    reconciler_pb2,
    restore_job_grpc,
    restore_job_pb2,
    wal_grpc,
    wal_pb2,
)

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = json.loads((ROOT / "tests/data/cnpgi-v0.6.0-contract.json").read_text())
MODULES = [
    backup_pb2,
    identity_pb2,
    metrics_pb2,
    operator_lifecycle_pb2,
    operator_pb2,
    postgres_pb2,
    reconciler_pb2,
    restore_job_pb2,
    wal_pb2,
]
SCALARS = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BYTES: "bytes",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_DOUBLE: "double",
}

# Section 3 of the specification: the 28 wire paths CloudNativePG may call.
WIRE_PATHS = {
    "/cnpgi.identity.v1.Identity/GetPluginMetadata",
    "/cnpgi.identity.v1.Identity/GetPluginCapabilities",
    "/cnpgi.identity.v1.Identity/Probe",
    "/cnpgi.operator.v1.Operator/GetCapabilities",
    "/cnpgi.operator.v1.Operator/ValidateClusterCreate",
    "/cnpgi.operator.v1.Operator/ValidateClusterChange",
    "/cnpgi.operator.v1.Operator/MutateCluster",
    "/cnpgi.operator.v1.Operator/SetStatusInCluster",
    "/cnpgi.operator.v1.Operator/Deregister",
    "/cnpgi.operator_lifecycle.v1.OperatorLifecycle/GetCapabilities",
    "/cnpgi.operator_lifecycle.v1.OperatorLifecycle/LifecycleHook",
    "/cnpgi.reconciler.v1.ReconcilerHooks/GetCapabilities",
    "/cnpgi.reconciler.v1.ReconcilerHooks/Pre",
    "/cnpgi.reconciler.v1.ReconcilerHooks/Post",
    "/cnpgi.wal.v1.WAL/GetCapabilities",
    "/cnpgi.wal.v1.WAL/Archive",
    "/cnpgi.wal.v1.WAL/Restore",
    "/cnpgi.wal.v1.WAL/Status",
    "/cnpgi.wal.v1.WAL/SetFirstRequired",
    "/cnpgi.backup.v1.Backup/GetCapabilities",
    "/cnpgi.backup.v1.Backup/Backup",
    "/cnpgi.wal.v1.RestoreJobHooks/GetCapabilities",
    "/cnpgi.wal.v1.RestoreJobHooks/Restore",
    "/cnpgi.identity.v1.Postgres/GetCapabilities",
    "/cnpgi.identity.v1.Postgres/EnrichConfiguration",
    "/cnpgi.metrics.v1.Metrics/GetCapabilities",
    "/cnpgi.metrics.v1.Metrics/Define",
    "/cnpgi.metrics.v1.Metrics/Collect",
}


def _field_type(field: FieldDescriptor) -> str:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key, value = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
        return f"map<{_field_type(key)}, {_field_type(value)}>"
    if field.message_type is not None:
        return field.message_type.full_name
    if field.enum_type is not None:
        return field.enum_type.full_name
    return SCALARS[field.type]


def _cardinality(field: FieldDescriptor) -> str:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        return "map"
    if field.is_repeated:
        return "repeated"
    oneof = field.containing_oneof
    if oneof is not None:
        # proto3 `optional` is a synthetic oneof named after the field with a leading underscore.
        return "optional" if oneof.name == f"_{field.name}" else f"oneof:{oneof.name}"
    return "singular"


def _walk(message: Descriptor, messages: dict[str, Any], enums: dict[str, Any]) -> None:
    if message.GetOptions().map_entry:
        return
    messages[message.full_name] = [
        [f.number, f.name, _field_type(f), _cardinality(f)]
        for f in sorted(message.fields, key=lambda f: f.number)
    ]
    for enum in message.enum_types:
        _enum(enum, enums)
    for nested in message.nested_types:
        _walk(nested, messages, enums)


def _enum(enum: EnumDescriptor, enums: dict[str, Any]) -> None:
    enums[enum.full_name] = [[v.name, v.number] for v in enum.values]


def _ours() -> dict[str, Any]:
    files: dict[str, str] = {}
    services: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    enums: dict[str, Any] = {}
    for module in MODULES:
        descriptor: FileDescriptor = module.DESCRIPTOR
        files[Path(descriptor.name).name] = descriptor.package
        for service in descriptor.services_by_name.values():
            services[service.full_name] = [
                [m.name, m.input_type.full_name, m.output_type.full_name] for m in service.methods
            ]
        for message in descriptor.message_types_by_name.values():
            _walk(message, messages, enums)
        for enum in descriptor.enum_types_by_name.values():
            _enum(enum, enums)
    return {"files": files, "services": services, "messages": messages, "enums": enums}


@pytest.mark.parametrize("part", ["files", "services", "messages", "enums"])
def test_protos_match_the_cnpgi_contract(part: str) -> None:
    ours, theirs = _ours()[part], CONTRACT[part]
    assert sorted(ours) == sorted(theirs), f"{part}: names differ"
    for name in theirs:
        expected = theirs[name] if part != "services" else sorted(theirs[name])
        actual = ours[name] if part != "services" else sorted(ours[name])
        assert actual == expected, f"{part} {name}"


def test_contract_covers_the_whole_protocol() -> None:
    # Guards the data file itself: 9 files, 9 services, 28 RPCs, 75 messages, 13 enums.
    assert len(CONTRACT["files"]) == 9
    assert len(CONTRACT["services"]) == 9
    assert sum(len(methods) for methods in CONTRACT["services"].values()) == 28
    assert len(CONTRACT["messages"]) == 75
    assert len(CONTRACT["enums"]) == 13


def test_package_quirks_are_reproduced() -> None:
    assert (
        restore_job_pb2.DESCRIPTOR.services_by_name["RestoreJobHooks"].full_name
        == "cnpgi.wal.v1.RestoreJobHooks"
    )
    assert postgres_pb2.DESCRIPTOR.services_by_name["Postgres"].full_name == "cnpgi.identity.v1.Postgres"


def test_optional_fields_have_explicit_presence() -> None:
    request = wal_pb2.WALArchiveRequest()
    assert not request.HasField("check_empty_wal_archive")
    request.check_empty_wal_archive = False
    assert request.HasField("check_empty_wal_archive")
    decoded = wal_pb2.WALArchiveRequest.FromString(request.SerializeToString())
    assert decoded.HasField("check_empty_wal_archive") and decoded.check_empty_wal_archive is False
    assert not restore_job_pb2.RestoreRequest().HasField("check_empty_wal_archive")


def test_generated_handlers_expose_exactly_the_28_wire_paths() -> None:
    bases = [
        identity_grpc.IdentityBase,
        operator_grpc.OperatorBase,
        operator_lifecycle_grpc.OperatorLifecycleBase,
        reconciler_grpc.ReconcilerHooksBase,
        wal_grpc.WALBase,
        backup_grpc.BackupBase,
        restore_job_grpc.RestoreJobHooksBase,
        postgres_grpc.PostgresBase,
        metrics_grpc.MetricsBase,
    ]
    paths: list[str] = []
    for base in bases:
        # Instantiate each abstract base with no-op methods to read its __mapping__.
        concrete = type(f"Concrete{base.__name__}", (base,), dict.fromkeys(base.__abstractmethods__, None))
        paths.extend(concrete().__mapping__())
    assert len(paths) == 28
    assert set(paths) == WIRE_PATHS


def test_committed_stubs_are_a_fresh_generation(tmp_path: Path) -> None:
    """`make proto` output must be what is committed (same protoc, same plugins, same bytes)."""
    work = tmp_path / "src"
    (work / "plugin_grpc/proto").mkdir(parents=True)
    protos = sorted((ROOT / "plugin_grpc/proto").glob("*.proto"))
    for proto in protos:
        shutil.copy(proto, work / "plugin_grpc/proto" / proto.name)
    bin_dir = Path(sys.executable).parent
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I.", "--python_out=.", "--mypy_out=quiet:.",
         "--grpclib_python_out=.", *(f"plugin_grpc/proto/{p.name}" for p in protos)],
        cwd=work, env=env, check=True, capture_output=True,
    )  # fmt: skip
    generated = sorted(p.name for p in (work / "plugin_grpc/proto").iterdir() if p.suffix != ".proto")
    committed = sorted(
        p.name
        for p in (ROOT / "plugin_grpc/proto").iterdir()
        if p.name.endswith(("_pb2.py", "_pb2.pyi", "_grpc.py"))
    )
    assert generated == committed
    _, mismatch, errors = filecmp.cmpfiles(
        work / "plugin_grpc/proto", ROOT / "plugin_grpc/proto", generated, shallow=False
    )
    assert (mismatch, errors) == ([], []), "run `make proto` and commit the result"
