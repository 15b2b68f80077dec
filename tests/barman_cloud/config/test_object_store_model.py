"""ObjectStore specs as users apply them upstream: accepted unchanged, or refused with every
problem named by its field path."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from barman_cloud.config.object_store import (
    ConfigurationError,
    RetentionPolicy,
    SecretKeySelector,
    parse_object_store,
    parse_retention_policy,
)
from barman_cloud.errors import InvalidInput
from barman_cloud.storage import Provider

UPSTREAM_EXAMPLE: dict[str, Any] = {
    "apiVersion": "barmancloud.cnpg.io/v1",
    "kind": "ObjectStore",
    "metadata": {"name": "minio-store", "namespace": "db", "uid": "u-1", "generation": 3},
    "spec": {
        "retentionPolicy": "30d",
        "configuration": {
            "destinationPath": "s3://backups/",
            "endpointURL": "https://minio:9000",
            "endpointCA": {"name": "minio-ca", "key": "ca.crt"},
            "s3Credentials": {
                "accessKeyId": {"name": "minio", "key": "ACCESS_KEY_ID"},
                "secretAccessKey": {"name": "minio", "key": "ACCESS_SECRET_KEY"},
            },
            "wal": {"compression": "gzip", "maxParallel": 8, "encryption": "AES256"},
            "data": {"compression": "snappy", "jobs": 4, "immediateCheckpoint": True},
            "tags": {"env": "prod"},
            "historyTags": {"kind": "history"},
        },
        "instanceSidecarConfiguration": {
            "env": [{"name": "AWS_REQUEST_CHECKSUM_CALCULATION", "value": "when_required"}],
            "resources": {"requests": {"cpu": "100m"}},
            "retentionPolicyIntervalSeconds": 600,
            "additionalContainerArgs": ["--pprof-server=0.0.0.0:6061"],
            "logLevel": "debug",
        },
    },
    "status": {
        "serverRecoveryWindow": {
            "pg": {
                "firstRecoverabilityPoint": "2026-11-01T00:00:00Z",
                "lastSuccussfulBackupTime": "2026-11-20T10:00:00Z",
            }
        }
    },
}


def with_changes(path: str, value: Any) -> dict[str, Any]:
    document = copy.deepcopy(UPSTREAM_EXAMPLE)
    *parents, last = path.split(".")
    node = document
    for part in parents:
        node = node.setdefault(part, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value
    return document


def problems_of(document: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(ConfigurationError) as failure:
        parse_object_store(document)
    return failure.value.problems


def test_upstream_example_parses_field_by_field() -> None:
    store = parse_object_store(UPSTREAM_EXAMPLE)
    assert (store.name, store.namespace, store.uid, store.generation) == ("minio-store", "db", "u-1", 3)
    config = store.spec.configuration
    assert config.provider is Provider.S3
    assert config.endpoint_url == "https://minio:9000"
    assert config.endpoint_ca == SecretKeySelector("minio-ca", "ca.crt")
    assert config.s3_credentials is not None
    assert config.s3_credentials.access_key_id == SecretKeySelector("minio", "ACCESS_KEY_ID")
    assert (config.wal.compression, config.wal.max_parallel, config.wal.encryption) == ("gzip", 8, "AES256")
    assert (config.data.compression, config.data.jobs, config.data.immediate_checkpoint) == (
        "snappy",
        4,
        True,
    )
    assert config.tags == {"env": "prod"} and config.history_tags == {"kind": "history"}
    assert store.spec.retention_policy == RetentionPolicy("recovery_window", 30, "d")
    sidecar = store.spec.instance_sidecar_configuration
    assert sidecar.log_level == "debug" and sidecar.retention_policy_interval_seconds == 600
    assert sidecar.additional_container_args == ("--pprof-server=0.0.0.0:6061",)
    assert sidecar.resources == {"requests": {"cpu": "100m"}}
    assert sorted(ref.name for ref in config.secret_references()) == ["minio", "minio", "minio-ca"]
    assert store.unknown_fields == ()


def test_misspelled_status_field_of_old_versions_is_read() -> None:
    window = parse_object_store(UPSTREAM_EXAMPLE).status.server_recovery_window["pg"]
    assert window.last_successful_backup_time == datetime(2026, 11, 20, 10, tzinfo=UTC)
    assert window.to_json() == {
        "firstRecoverabilityPoint": "2026-11-01T00:00:00Z",
        "lastSuccessfulBackupTime": "2026-11-20T10:00:00Z",
    }


def test_defaults() -> None:
    store = parse_object_store(
        {"metadata": {"name": "s"}, "spec": {"configuration": {"destinationPath": "gs://bucket/path"}}}
    )
    assert store.namespace == "default"
    assert store.spec.configuration.wal.max_parallel == 1
    assert store.spec.instance_sidecar_configuration.retention_policy_interval_seconds == 1800
    assert store.spec.instance_sidecar_configuration.log_level == "info"
    assert store.spec.retention_policy is None


@pytest.mark.parametrize(
    ("path", "value", "expected_path", "expected_message"),
    [
        (
            "spec.configuration.serverName",
            "pg",
            "spec.configuration.serverName",
            "use the 'serverName' plugin parameter",
        ),
        ("spec.configuration.destinationPath", None, "spec.configuration.destinationPath", "required"),
        (
            "spec.configuration.destinationPath",
            "ftp://x",
            "spec.configuration.destinationPath",
            "unsupported scheme",
        ),
        ("spec.retentionPolicy", "30", "spec.retentionPolicy", "invalid retention policy"),
        ("spec.retentionPolicy", "0d", "spec.retentionPolicy", "invalid retention policy"),
        (
            "spec.configuration.wal.compression",
            "brotli",
            "spec.configuration.wal.compression",
            "must be one of",
        ),
        (
            "spec.configuration.data.compression",
            "xz",
            "spec.configuration.data.compression",
            "must be one of",
        ),
        ("spec.configuration.wal.maxParallel", 0, "spec.configuration.wal.maxParallel", "at least 1"),
        ("spec.configuration.data.jobs", "4", "spec.configuration.data.jobs", "must be an integer"),
        ("spec.configuration.wal.encryption", "aes", "spec.configuration.wal.encryption", "must be one of"),
        ("spec.configuration.endpointCA", {"name": "ca"}, "spec.configuration.endpointCA.key", "required"),
        (
            "spec.instanceSidecarConfiguration.additionalContainerArgs",
            ["--log-level=debug"],
            "spec.instanceSidecarConfiguration.additionalContainerArgs[0]",
            "use logLevel",
        ),
        (
            "spec.instanceSidecarConfiguration.logLevel",
            "verbose",
            "spec.instanceSidecarConfiguration.logLevel",
            "one of",
        ),
        (
            "spec.configuration.s3Credentials",
            {"accessKeyId": {"name": "a", "key": "b"}},
            "spec.configuration.s3Credentials",
            "go together",
        ),
        (
            "spec.configuration.googleCredentials",
            {"gkeEnvironment": True},
            "spec.configuration",
            "only one credentials section may be set",
        ),
    ],
)
def test_invalid_fields_are_named(path: str, value: Any, expected_path: str, expected_message: str) -> None:
    problems = problems_of(with_changes(path, value))
    assert any(p == expected_path and expected_message in m for p, m in problems), problems


def test_every_problem_is_reported_at_once() -> None:
    document = with_changes("spec.configuration.wal.compression", "brotli")
    document["spec"]["retentionPolicy"] = "forever"
    document["spec"]["configuration"]["data"]["jobs"] = 0
    paths = {path for path, _ in problems_of(document)}
    assert {
        "spec.configuration.wal.compression",
        "spec.retentionPolicy",
        "spec.configuration.data.jobs",
    } <= paths


def azure(credentials: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "az"},
        "spec": {
            "configuration": {
                "destinationPath": "https://acct.blob.core.windows.net/container/path",
                "azureCredentials": credentials,
            }
        },
    }


SEL = {"name": "azure", "key": "k"}


@pytest.mark.parametrize(
    "credentials",
    [
        {"connectionString": SEL},
        {"storageAccount": SEL, "storageKey": SEL},
        {"storageAccount": SEL, "storageSasToken": SEL},
        {"inheritFromAzureAD": True},
        {"useDefaultAzureCredentials": True},
        {"storageAccount": SEL, "inheritFromAzureAD": True},
    ],
)
def test_accepted_azure_credential_combinations(credentials: dict[str, Any]) -> None:
    assert parse_object_store(azure(credentials)).spec.configuration.azure_credentials is not None


@pytest.mark.parametrize(
    ("credentials", "message"),
    [
        ({}, "exactly one way to authenticate is needed (found none)"),
        ({"storageKey": SEL}, "required with storageKey"),
        (
            {"storageAccount": SEL, "storageKey": SEL, "storageSasToken": SEL},
            "found storageKey, storageSasToken",
        ),
        ({"connectionString": SEL, "storageAccount": SEL}, "not used with connectionString"),
        ({"connectionString": SEL, "useDefaultAzureCredentials": True}, "found connectionString, useDefault"),
    ],
)
def test_refused_azure_credential_combinations(credentials: dict[str, Any], message: str) -> None:
    problems = problems_of(azure(credentials))
    assert any(message in m for _, m in problems), problems


def test_azure_destination_needs_credentials() -> None:
    document = azure({})
    del document["spec"]["configuration"]["azureCredentials"]
    assert ("spec.configuration.azureCredentials", "required for an Azure destination") in problems_of(
        document
    )


def test_unknown_fields_are_tolerated_and_listed() -> None:
    document = with_changes("spec.configuration.futureField", "x")
    assert parse_object_store(document).unknown_fields == ("spec.configuration.futureField",)


@pytest.mark.parametrize(
    ("text", "policy", "barman"),
    [
        ("30d", RetentionPolicy("recovery_window", 30, "d"), "RECOVERY WINDOW OF 30 DAYS"),
        ("4w", RetentionPolicy("recovery_window", 4, "w"), "RECOVERY WINDOW OF 4 WEEKS"),
        ("3m", RetentionPolicy("recovery_window", 3, "m"), "RECOVERY WINDOW OF 3 MONTHS"),
        ("REDUNDANCY 3", RetentionPolicy("redundancy", 3), "REDUNDANCY 3"),
        ("redundancy 12", RetentionPolicy("redundancy", 12), "REDUNDANCY 12"),
    ],
)
def test_retention_policies(text: str, policy: RetentionPolicy, barman: str) -> None:
    assert parse_retention_policy(text) == policy
    assert str(policy) == barman


@pytest.mark.parametrize("text", ["", "30", "d30", "0d", "30y", "REDUNDANCY 0", "REDUNDANCY", "30 d"])
def test_invalid_retention_policies(text: str) -> None:
    with pytest.raises(InvalidInput, match="REDUNDANCY n"):
        parse_retention_policy(text)


def test_credentials_must_match_the_destination() -> None:
    document = with_changes("spec.configuration.s3Credentials", None)
    document["spec"]["configuration"]["googleCredentials"] = {"gkeEnvironment": True}
    problems = problems_of(document)
    assert any(
        p == "spec.configuration.googleCredentials" and "does not match destinationPath (aws-s3)" in m
        for p, m in problems
    ), problems
