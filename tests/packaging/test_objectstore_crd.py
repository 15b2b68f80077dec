"""The ObjectStore CRD agrees with the Python model, is structural, and is what ``crds/`` ships.

The schema is checked three ways against ``barman_cloud.config.object_store``: field by field
(every dataclass field of the model is a schema property of the matching type, and every schema
property is a model field, the exceptions listed below); by the parser (a document using every
field parses with no unknown field, an unknown field is reported at every level); and by
documents (the API server's checks, emulated with ``jsonschema`` for OpenAPI and ``celpy`` for
the CEL rules, refuse what the parser refuses, and accept what it accepts).
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import celpy
import jsonschema
import pytest
import yaml
from celpy.adapter import json_to_cel
from hypothesis import given
from hypothesis import strategies as st

from barman_cloud.config import object_store as model
from barman_cloud.errors import InvalidInput
from tests.packaging import objectstore_crd

CRD: dict[str, Any] = yaml.safe_load(objectstore_crd.CRD_FILE.read_text())
(VERSION,) = CRD["spec"]["versions"]
SCHEMA: dict[str, Any] = VERSION["schema"]["openAPIV3Schema"]

ACRONYMS = {"url": "URL", "ca": "CA", "iam": "IAM", "ad": "AD"}

SCHEMA_ONLY = {
    "spec.configuration.serverName": "kept for upstream compatibility; the CEL rule forbids it",
    "status.conditions": "written by the controller (barman_cloud_operator.conditions)",
    "status.observedGeneration": "written by the controller (barman_cloud_operator.reconcile)",
    "status.scheduledBackups": "written by the controller (barman_cloud_operator.freshness)",
}
"""Schema properties with no model field, and why."""


def json_name(field_name: str) -> str:
    first, *rest = field_name.split("_")
    return first + "".join(ACRONYMS.get(word, word.capitalize()) for word in rest)


def node(path: str) -> dict[str, Any]:
    """The schema node at a dotted path (``*`` steps into a map's values, ``[]`` into items)."""
    current = SCHEMA
    for step in path.split("."):
        if step == "*":
            current = current["additionalProperties"]
        elif step == "[]":
            current = current["items"]
        else:
            current = current["properties"][step]
    return current


# --- the files ------------------------------------------------------------------------------------


def test_shipped_files_are_generated_from_this_schema() -> None:
    for path, text in objectstore_crd.outputs().items():
        assert path.read_text() == text, f"{path} is stale: run `make chart`"


def test_names_scope_version_and_status_subresource_are_upstreams() -> None:
    assert CRD["metadata"]["name"] == "objectstores.barmancloud.cnpg.io"
    spec = CRD["spec"]
    assert spec["group"] == "barmancloud.cnpg.io"
    assert spec["names"] == {
        "kind": "ObjectStore",
        "listKind": "ObjectStoreList",
        "plural": "objectstores",
        "singular": "objectstore",
    }
    assert spec["scope"] == "Namespaced"
    assert (VERSION["name"], VERSION["served"], VERSION["storage"]) == ("v1", True, True)
    assert f"{spec['group']}/{VERSION['name']}" == model.API_VERSION
    assert VERSION["subresources"] == {"status": {}}
    assert SCHEMA["required"] == ["metadata", "spec"]
    assert node("spec")["required"] == ["configuration"]
    assert node("spec.configuration")["required"] == ["destinationPath"]


# --- structural -----------------------------------------------------------------------------------


def walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}" if path else name)
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}.*")
    if "items" in schema:
        yield from walk(schema["items"], f"{path}.[]")


def structural_problems(path: str, schema: dict[str, Any]) -> list[str]:
    """What keeps one node of the schema from being structural, or from being spelled out."""
    if schema.get("x-kubernetes-int-or-string"):
        if schema.get("anyOf") != [{"type": "integer"}, {"type": "string"}]:
            return [f"{path}: int-or-string must be anyOf integer, string"]
        return []
    problems = []
    kind = schema.get("type")
    if kind not in ("object", "array", "string", "integer", "boolean", "number"):
        problems.append(f"{path}: no type")
    if "x-kubernetes-preserve-unknown-fields" in schema:
        problems.append(f"{path}: fields not spelled out (would be kept unvalidated)")
    if (
        kind == "object"
        and path != "metadata"
        and ("properties" in schema) == ("additionalProperties" in schema)
    ):
        problems.append(f"{path}: an object needs either properties or additionalProperties")
    if kind == "array" and "items" not in schema:
        problems.append(f"{path}: an array needs items")
    problems += [f"{path}: {key} is not allowed" for key in ("$ref", "definitions", "allOf", "oneOf", "not")
                 if key in schema]  # fmt: skip
    problems += [f"{path}: requires the unknown property {name}" for name in schema.get("required", [])
                 if name not in schema.get("properties", {})]  # fmt: skip
    return problems


def test_schema_is_structural_and_spelled_out() -> None:
    assert [problem for path, schema in walk(SCHEMA) for problem in structural_problems(path, schema)] == []


def test_printer_columns_point_at_schema_fields() -> None:
    columns = {c["name"]: c for c in VERSION["additionalPrinterColumns"]}
    assert list(columns) == [
        "Destination",
        "Ready",
        "Last Backup",
        "First Recoverability Point",
        "Reason",
        "Age",
    ]
    for column in columns.values():
        path = re.sub(r"\[\?\(@\.type==\"(\w+)\"\)\]", ".[]", column["jsonPath"]).lstrip(".")
        if path.startswith("metadata."):
            continue
        target = node(path)
        assert target["type"] == "string", column
        if column["type"] == "date":
            assert target.get("format") == "date-time", column
    assert 'type=="Ready"' in columns["Ready"]["jsonPath"]
    assert node("status.conditions")["x-kubernetes-list-map-keys"] == ["type"]


# --- field by field -------------------------------------------------------------------------------

DATACLASS_NODES: dict[type[Any], list[str]] = {
    model.ObjectStoreSpec: ["spec"],
    model.BarmanObjectStoreConfiguration: ["spec.configuration"],
    model.S3CredentialsSpec: ["spec.configuration.s3Credentials"],
    model.AzureCredentialsSpec: ["spec.configuration.azureCredentials"],
    model.GoogleCredentialsSpec: ["spec.configuration.googleCredentials"],
    model.WalConfiguration: ["spec.configuration.wal"],
    model.DataConfiguration: ["spec.configuration.data"],
    model.InstanceSidecarConfiguration: ["spec.instanceSidecarConfiguration"],
    model.ObjectStoreStatus: ["status"],
    model.RecoveryWindow: ["status.serverRecoveryWindow.*"],
    model.SecretKeySelector: [
        path
        for path, schema in walk(SCHEMA)
        if path.startswith("spec.configuration") and schema.get("required") == ["key", "name"]
    ],
}


def type_problems(hint: Any, schema: dict[str, Any], where: str) -> list[str]:
    """What in ``schema`` does not hold a value of the model's type ``hint``."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        origin = typing.get_origin(hint)
    expected: dict[Any, str] = {str: "string", bool: "boolean", int: "integer"}
    if hint in expected:
        return [] if schema.get("type") == expected[hint] else [f"{where}: {schema.get('type')} for {hint}"]
    if hint is datetime:
        return [] if schema.get("format") == "date-time" else [f"{where}: not a date-time"]
    if hint is model.RetentionPolicy:
        return [] if schema.get("type") == "string" and "pattern" in schema else [f"{where}: no pattern"]
    if dataclasses.is_dataclass(hint):
        return [] if schema.get("type") == "object" else [f"{where}: not an object"]
    if origin is tuple:
        if schema.get("type") != "array":
            return [f"{where}: not an array"]
        return type_problems(typing.get_args(hint)[0], schema["items"], f"{where}[]")
    if origin is Mapping:
        if schema.get("type") != "object":
            return [f"{where}: not an object"]
        value = typing.get_args(hint)[1]
        if value is Any:  # Kubernetes types passed through (EnvVar, ResourceRequirements)
            return [] if "properties" in schema else [f"{where}: not spelled out"]
        return type_problems(value, schema["additionalProperties"], f"{where}.*")
    return [f"{where}: no rule for {hint}"]


def test_every_model_field_is_in_the_schema_and_the_other_way_round() -> None:
    problems = []
    covered = set()
    for cls, paths in DATACLASS_NODES.items():
        assert paths, cls
        hints = typing.get_type_hints(cls)
        for path in paths:
            properties = node(path)["properties"]
            fields = {json_name(f.name): f for f in dataclasses.fields(cls)}
            for name, field in fields.items():
                if name not in properties:
                    problems.append(
                        f"{path}.{name}: in the model ({cls.__name__}.{field.name}), not in the CRD"
                    )
                else:
                    problems += type_problems(hints[field.name], properties[name], f"{path}.{name}")
            for name in properties:
                covered.add(f"{path}.{name}")
                if name not in fields and f"{path}.{name}" not in SCHEMA_ONLY:
                    problems.append(f"{path}.{name}: in the CRD, not in the model ({cls.__name__})")
    assert not problems
    assert set(SCHEMA_ONLY) <= covered


def test_enums_and_defaults_are_the_models() -> None:
    assert node("spec.configuration.wal.compression")["enum"] == list(model.WAL_COMPRESSIONS)
    assert node("spec.configuration.data.compression")["enum"] == list(model.DATA_COMPRESSIONS)
    assert node("spec.configuration.wal.encryption")["enum"] == list(model.ENCRYPTIONS)
    assert node("spec.configuration.data.encryption")["enum"] == list(model.ENCRYPTIONS)
    assert node("spec.instanceSidecarConfiguration.logLevel")["enum"] == list(model.LOG_LEVELS)
    # The API server fills the defaults in; the parser applies the same ones when they are absent.
    parsed = model.parse_object_store(document({"instanceSidecarConfiguration": {}})).spec
    sidecar = node("spec.instanceSidecarConfiguration")["properties"]
    assert sidecar["logLevel"]["default"] == parsed.instance_sidecar_configuration.log_level == "info"
    assert (
        sidecar["retentionPolicyIntervalSeconds"]["default"]
        == parsed.instance_sidecar_configuration.retention_policy_interval_seconds
        == 1800
    )


# --- the API server's validation, emulated --------------------------------------------------------

CEL = celpy.Environment()


def cel_problems(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """Evaluate the CEL rules (``x-kubernetes-validations``) of ``schema`` over ``value``."""
    problems = []
    for rule in schema.get("x-kubernetes-validations", []):
        program = CEL.program(CEL.compile(rule["rule"]))
        if not program.evaluate({"self": json_to_cel(value)}):
            problems.append(f"{path}: {rule['message']}")
    if isinstance(value, dict):
        for key, child in value.items():
            if key in schema.get("properties", {}):
                problems += cel_problems(schema["properties"][key], child, f"{path}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                problems += cel_problems(schema["additionalProperties"], child, f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for index, child in enumerate(value):
            problems += cel_problems(schema["items"], child, f"{path}[{index}]")
    return problems


def api_server_problems(doc: dict[str, Any]) -> list[str]:
    """What the API server would refuse in ``doc``: OpenAPI schema (Go's regular expressions
    anchor ``$`` at the very end, Python's before a final newline: ``\\Z`` makes them agree),
    then the CEL rules."""
    schema = copy.deepcopy(SCHEMA)
    for _, sub in walk(schema):
        if "pattern" in sub:
            sub["pattern"] = re.sub(r"\$$", r"\\Z", sub["pattern"])
    validator = jsonschema.Draft7Validator(schema)
    problems = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
    return problems or cel_problems(SCHEMA, doc)


def parser_problems(doc: dict[str, Any]) -> list[str]:
    try:
        model.parse_object_store(doc)
    except model.ConfigurationError as error:
        return [f"{path}: {message}" for path, message in error.problems]
    return []


def document(spec: dict[str, Any], configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    base = {"destinationPath": "s3://backups/pg", "s3Credentials": {"inheritFromIAMRole": True}}
    return {
        "apiVersion": model.API_VERSION,
        "kind": model.KIND,
        "metadata": {"name": "store", "namespace": "db"},
        "spec": {"configuration": {**base, **(configuration or {})}, **spec},
    }


def selector(name: str = "creds", key: str = "key") -> dict[str, str]:
    return {"name": name, "key": key}


EVERY_FIELD = {
    "retentionPolicy": "30d",
    "instanceSidecarConfiguration": {
        "env": [
            {"name": "A", "value": "1"},
            {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": True}}},
            {"name": "C", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "D", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "E", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
            {"name": "F", "valueFrom": {"fileKeyRef": {"key": "k", "path": "p", "volumeName": "v"}}},
        ],
        "resources": {
            "requests": {"cpu": "250m", "memory": "64Mi"},
            "limits": {"memory": 536870912},
            "claims": [{"name": "gpu", "request": "one"}],
        },
        "retentionPolicyIntervalSeconds": 600,
        "additionalContainerArgs": ["--pprof-server=0.0.0.0:6061"],
        "logLevel": "debug",
    },
}
EVERY_CONFIGURATION_FIELD = {
    "endpointURL": "https://minio:9000",
    "endpointCA": selector("ca", "ca.crt"),
    "s3Credentials": {
        "accessKeyId": selector(),
        "secretAccessKey": selector(),
        "region": selector(),
        "sessionToken": selector(),
    },
    "wal": {
        "compression": "zstd",
        "encryption": "aws:kms",
        "maxParallel": 8,
        "archiveAdditionalCommandArgs": ["--read-timeout=60"],
        "restoreAdditionalCommandArgs": ["-v"],
    },
    "data": {
        "compression": "lz4",
        "encryption": "AES256",
        "jobs": 4,
        "immediateCheckpoint": True,
        "additionalCommandArgs": ["--min-chunk-size=5MB"],
        "restoreAdditionalCommandArgs": ["-v"],
    },
    "tags": {"team": "db"},
    "historyTags": {"kind": "history"},
}
EVERY_STATUS_FIELD: dict[str, Any] = {
    "serverRecoveryWindow": {
        "pg1": {
            "firstRecoverabilityPoint": "2026-01-01T00:00:00Z",
            "lastSuccessfulBackupTime": "2026-01-02T00:00:00Z",
            "lastFailedBackupTime": "2026-01-03T00:00:00Z",
        },
    },
    # As the controller writes them (barman_cloud_operator.conditions, .freshness, .reconcile).
    "observedGeneration": 3,
    "conditions": [
        {
            "type": "Ready",
            "status": "False",
            "reason": "CredentialsInvalid",
            "observedGeneration": 3,
            "message": "s3Credentials: the Secret minio has no key ACCESS_KEY_ID",
            "lastTransitionTime": "2026-01-03T00:00:00Z",
        },
        {
            "type": "BackupsOnSchedule",
            "status": "Unknown",
            "reason": "NotChecked",
            "observedGeneration": 3,
            "message": "the Clusters could not be listed",
            "lastTransitionTime": "2026-01-03T00:00:00Z",
        },
    ],
    "scheduledBackups": {
        "nightly": {
            "cluster": "pg1",
            "serverName": "pg1",
            "schedule": "0 0 0 * * *",
            "suspended": False,
            "overdue": True,
            "lastBackupID": "20260102T000000",
            "lastBackupTime": "2026-01-02T00:05:00Z",
            "nextExpectedTime": "2026-01-03T00:00:00Z",
            "deadline": "2026-01-03T01:00:00Z",
            "nextScheduleTime": "2026-01-04T00:00:00Z",
        },
    },
}

ACCEPTED = {
    "every field": document(EVERY_FIELD, EVERY_CONFIGURATION_FIELD),
    "azure connection string": document(
        {},
        {
            "destinationPath": "https://acct.blob.core.windows.net/c/p",
            "s3Credentials": None,
            "azureCredentials": {"connectionString": selector()},
        },
    ),
    "azure default credentials": document(
        {},
        {
            "destinationPath": "https://acct.blob.core.windows.net/c/p",
            "s3Credentials": None,
            "azureCredentials": {"useDefaultAzureCredentials": True},
        },
    ),
    "azure account key": document(
        {},
        {
            "destinationPath": "https://acct.blob.core.windows.net/c/p",
            "s3Credentials": None,
            "azureCredentials": {"storageAccount": selector(), "storageKey": selector()},
        },
    ),
    "google key": document(
        {},
        {
            "destinationPath": "gs://bucket/p",
            "s3Credentials": None,
            "googleCredentials": {"applicationCredentials": selector()},
        },
    ),
    "google workload identity": document(
        {},
        {
            "destinationPath": "gs://bucket/p",
            "s3Credentials": None,
            "googleCredentials": {"gkeEnvironment": True},
        },
    ),
    "redundancy": document({"retentionPolicy": "REDUNDANCY 3"}),
    "redundancy, lower case": document({"retentionPolicy": "redundancy 12"}),
    "weeks": document({"retentionPolicy": "4w"}),
    "months": document({"retentionPolicy": "3m"}),
    "args that only mention the log level": document(
        {
            "instanceSidecarConfiguration": {
                "additionalContainerArgs": ["--pprof-server=:6061", "-v=--log-level"]
            }
        }
    ),
    **{f"wal {c}": document({}, {"wal": {"compression": c}}) for c in model.WAL_COMPRESSIONS},
    **{f"data {c}": document({}, {"data": {"compression": c}}) for c in model.DATA_COMPRESSIONS},
    **{
        f"log level {level}": document({"instanceSidecarConfiguration": {"logLevel": level}})
        for level in model.LOG_LEVELS
    },
}

REFUSED = {
    "server name in the configuration": document({}, {"serverName": "pg1"}),
    "log level in the sidecar arguments": document(
        {
            "instanceSidecarConfiguration": {
                "additionalContainerArgs": ["--pprof-server=:6061", "--log-level=debug"]
            }
        }
    ),
    "no destination": document({}, {"destinationPath": None}),
    "empty destination": document({}, {"destinationPath": ""}),
    "no configuration": {**document({}), "spec": {"retentionPolicy": "30d"}},
    "retention in years": document({"retentionPolicy": "1y"}),
    "retention of zero days": document({"retentionPolicy": "0d"}),
    "retention without a number": document({"retentionPolicy": "REDUNDANCY"}),
    "wal compression the engine cannot write": document({}, {"wal": {"compression": "brotli"}}),
    "xz for base backups": document({}, {"data": {"compression": "xz"}}),
    "unknown encryption": document({}, {"wal": {"encryption": "aes"}}),
    "no parallelism": document({}, {"wal": {"maxParallel": 0}}),
    "no jobs": document({}, {"data": {"jobs": 0}}),
    "a retention interval of zero": document(
        {"instanceSidecarConfiguration": {"retentionPolicyIntervalSeconds": 0}}
    ),
    "unknown log level": document({"instanceSidecarConfiguration": {"logLevel": "verbose"}}),
    "a secret selector without key": document({}, {"endpointCA": {"name": "ca"}}),
    "a number as a tag": document({}, {"tags": {"team": 7}}),
    "a string as the arguments": document({}, {"wal": {"archiveAdditionalCommandArgs": "--read-timeout=60"}}),
    "a boolean as a string": document({}, {"s3Credentials": {"inheritFromIAMRole": "yes"}}),
    "an environment variable without name": document(
        {"instanceSidecarConfiguration": {"env": [{"value": "1"}]}}
    ),
}

PARSER_ONLY = {
    "two credential sections": document({}, {"googleCredentials": {"gkeEnvironment": True}}),
    "an access key without its secret": document({}, {"s3Credentials": {"accessKeyId": selector()}}),
    "azure key without account": document(
        {},
        {
            "destinationPath": "https://acct.blob.core.windows.net/c/p",
            "s3Credentials": None,
            "azureCredentials": {"storageKey": selector()},
        },
    ),
    "an unknown destination scheme": document(
        {}, {"destinationPath": "ftp://host/path", "s3Credentials": None}
    ),
}
"""Refused by the parser (the controller reports them in the Ready condition), accepted by the
API server as upstream's CRD accepts them: a stricter CRD would refuse updates to stored objects."""


def without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    return value


@pytest.mark.parametrize("name", ACCEPTED)
def test_accepted_by_the_api_server_and_the_parser(name: str) -> None:
    doc = without_nulls(ACCEPTED[name])
    assert api_server_problems(doc) == []
    assert parser_problems(doc) == []


@pytest.mark.parametrize("name", REFUSED)
def test_refused_by_the_api_server_and_the_parser(name: str) -> None:
    doc = without_nulls(REFUSED[name])
    assert api_server_problems(doc)
    assert parser_problems(doc)


@pytest.mark.parametrize("name", PARSER_ONLY)
def test_refused_by_the_parser_only(name: str) -> None:
    doc = without_nulls(PARSER_ONLY[name])
    assert api_server_problems(doc) == []
    assert parser_problems(doc)


def test_cel_rules_carry_upstreams_messages() -> None:
    assert cel_problems(SCHEMA, without_nulls(REFUSED["server name in the configuration"])) == [
        ".spec.configuration: use the 'serverName' plugin parameter in the Cluster resource"
    ]
    assert cel_problems(SCHEMA, without_nulls(REFUSED["log level in the sidecar arguments"])) == [
        ".spec.instanceSidecarConfiguration.additionalContainerArgs: do not set --log-level in "
        "additionalContainerArgs; use spec.instanceSidecarConfiguration.logLevel"
    ]
    (rule,) = node("spec.configuration")["x-kubernetes-validations"]
    assert (rule["fieldPath"], rule["reason"]) == (".serverName", "FieldValueForbidden")


def pruned(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """Fields of ``value`` the API server would drop (not in a structural schema)."""
    found = []
    if isinstance(value, dict) and schema.get("type") == "object" and not schema.get("x-kubernetes-map-type"):
        for key, child in value.items():
            if key in schema.get("properties", {}):
                found += pruned(schema["properties"][key], child, f"{path}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                found += pruned(schema["additionalProperties"], child, f"{path}.{key}")
            elif "properties" in schema:
                found.append(f"{path}.{key}")
    if isinstance(value, list) and "items" in schema:
        for index, child in enumerate(value):
            found += pruned(schema["items"], child, f"{path}[{index}]")
    return found


def test_a_document_with_every_field_parses_completely() -> None:
    doc = without_nulls(ACCEPTED["every field"])
    doc["status"] = EVERY_STATUS_FIELD
    assert api_server_problems(doc) == []
    assert pruned(SCHEMA, doc) == []
    store = model.parse_object_store(doc)
    assert store.unknown_fields == ()
    assert store.spec.configuration.wal.max_parallel == 8
    assert str(store.spec.retention_policy) == "RECOVERY WINDOW OF 30 DAYS"
    assert store.status.server_recovery_window["pg1"].last_failed_backup_time is not None


def test_what_the_schema_does_not_know_is_pruned() -> None:
    doc = without_nulls(ACCEPTED["every field"])
    doc["spec"]["configuration"]["wal"]["speed"] = "fast"
    doc["status"] = {"conditions": [{**EVERY_STATUS_FIELD["conditions"][0], "severity": "Error"}]}
    assert pruned(SCHEMA, doc) == [".spec.configuration.wal.speed", ".status.conditions[0].severity"]


def test_the_parser_reports_fields_the_schema_lacks_at_every_level() -> None:
    # Each object the parser walks reports an unknown field, so a field the CRD gained without
    # the model would show up (and the first test of this kind keeps the schema side).
    doc = without_nulls(ACCEPTED["every field"])
    levels = ["spec", "spec.configuration", "spec.configuration.wal", "spec.configuration.data",
              "spec.configuration.s3Credentials", "spec.configuration.endpointCA",
              "spec.instanceSidecarConfiguration"]  # fmt: skip
    for level in levels:
        mutated = copy.deepcopy(doc)
        target = mutated
        for step in level.split("."):
            target = target[step]
        target["surplus"] = True
        assert api_server_problems(mutated) == [], level  # the API server prunes, it does not refuse
        assert f"{level}.surplus" in model.parse_object_store(mutated).unknown_fields, level


# --- retentionPolicy: one language ----------------------------------------------------------------


def crd_retention_accepts(text: str) -> bool:
    return re.search(objectstore_crd.RETENTION_PATTERN.replace("$", r"\Z"), text) is not None


def parser_retention_accepts(text: str) -> bool:
    try:
        model.parse_retention_policy(text)
    except InvalidInput:
        return False
    return True


RETENTION_TEXT = st.one_of(
    st.text(alphabet="0123456789dwmyREDUNDANCYredundancy \n", max_size=16),
    st.from_regex(r"\A([0-9]{1,4}[dwmy]|(REDUNDANCY|redundancy|Redundancy|ReDuNdAnCy) ?[0-9]{0,4})\Z"),
)


@given(RETENTION_TEXT)
def test_retention_pattern_is_the_models_language(text: str) -> None:
    if text == text.strip():
        assert crd_retention_accepts(text) == parser_retention_accepts(text), text
    else:
        # Surrounding blanks: the parser strips them, the API server refuses them.
        assert not crd_retention_accepts(text)


def test_retention_pattern_reads_the_same_in_every_regex_engine() -> None:
    pattern = objectstore_crd.RETENTION_PATTERN
    assert "(?" not in pattern  # no inline flags or groups RE2 and ECMAScript would read apart
    assert node("spec.retentionPolicy")["pattern"] == pattern
    for text in ("30d", "4w", "3m", "REDUNDANCY 3", "Redundancy 10"):
        assert crd_retention_accepts(text) and parser_retention_accepts(text), text
