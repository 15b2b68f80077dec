"""The plugin's configuration read from Cluster JSON (upstream-plugin.md 3.1): which ObjectStores,
which server names, leniency towards what CloudNativePG adds, and errors that name the field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from barman_cloud.config.object_store import ConfigurationError
from plugin_grpc.metadata import PLUGIN_NAME
from plugin_grpc.operator_side.cluster import (
    StoreReference,
    StoreRole,
    cluster_identity,
    parse_cluster,
)
from tests.plugin_grpc.operator_side.conftest import load, plugin_entry


def _replica_cluster() -> dict[str, Any]:
    """A log-shipping replica cluster: recovery and replica source are the same external cluster."""
    cluster = load("cluster.json")
    del cluster["spec"]["plugins"]
    cluster["spec"]["replica"] = {"enabled": True, "source": "origin"}
    return cluster


def test_the_realistic_cluster_uses_an_archive_and_a_recovery_store() -> None:
    cluster = parse_cluster(json.dumps(load("cluster.json")).encode())
    assert cluster.identity.name == "pg1"
    assert cluster.identity.namespace == "db"
    assert cluster.identity.uid == "2b9f6c3e-6f3a-4c1e-9d41-7c0a5e1b8d20"
    assert (cluster.identity.group, cluster.identity.version) == ("postgresql.cnpg.io", "v1")
    plugin = cluster.plugin
    assert plugin.archive == StoreReference(
        StoreRole.ARCHIVE, "minio-store", "pg1", "spec.plugins[0].parameters.barmanObjectName"
    )
    assert plugin.recovery == StoreReference(
        StoreRole.RECOVERY,
        "origin-store",
        "pg0",
        "spec.externalClusters[0].plugin.parameters.barmanObjectName",
    )
    assert plugin.replica_source is None
    assert plugin.wal_archiver is True
    assert plugin.sidecar_image is None
    assert plugin.object_names() == ["minio-store", "origin-store"]
    assert cluster.image_pull_policy == "IfNotPresent"
    assert cluster.plugin_status is None
    assert cluster.continuous_archiving is not None
    assert cluster.continuous_archiving["reason"] == "ContinuousArchivingSuccess"


def test_a_disabled_entry_is_ignored_entirely() -> None:
    # Upstream reads barmanObjectName from a disabled entry (#350); CloudNativePG does not even
    # load a disabled plugin, so nothing of it may be used.
    document = load("cluster.json")
    plugin_entry(document)["enabled"] = False
    plugin_entry(document)["parameters"] = {"barmanObjectName": "Not A Valid Name!"}
    cluster = parse_cluster(document)
    assert cluster.plugin.archive is None
    assert cluster.plugin.recovery is not None


def test_a_missing_enabled_means_enabled_and_server_name_defaults_to_the_cluster() -> None:
    document = load("cluster.json")
    del plugin_entry(document)["enabled"]
    plugin_entry(document)["parameters"]["serverName"] = ""
    del document["spec"]["externalClusters"][0]["plugin"]["parameters"]["serverName"]
    cluster = parse_cluster(document)
    assert cluster.plugin.archive is not None and cluster.plugin.archive.server_name == "pg1"
    # As upstream: an external cluster's server name also defaults to the *new* Cluster's name.
    assert cluster.plugin.recovery is not None and cluster.plugin.recovery.server_name == "pg1"


def test_a_replica_source_store_comes_from_replica_source() -> None:
    cluster = parse_cluster(_replica_cluster())
    assert cluster.plugin.archive is None
    assert cluster.plugin.replica_source == StoreReference(
        StoreRole.REPLICA_SOURCE,
        "origin-store",
        "pg0",
        "spec.externalClusters[0].plugin.parameters.barmanObjectName",
    )
    assert cluster.plugin.object_names() == ["origin-store"]


@pytest.mark.parametrize("other", ["another-plugin.example.com", None])
def test_external_clusters_served_by_another_plugin_or_none_are_not_ours(other: str | None) -> None:
    document = load("cluster.json")
    external = document["spec"]["externalClusters"][0]
    if other is None:
        del external["plugin"]
        external["connectionParameters"] = {"host": "origin-rw", "user": "streaming_replica"}
    else:
        external["plugin"]["name"] = other
    assert parse_cluster(document).plugin.recovery is None


def test_a_cluster_without_the_plugin_uses_nothing() -> None:
    document = load("cluster.json")
    document["spec"]["plugins"] = [{"name": "another-plugin.example.com", "parameters": {"x": "y"}}]
    del document["spec"]["bootstrap"]
    assert not parse_cluster(document).plugin.uses_plugin


def test_decoding_is_lenient() -> None:
    document = load("cluster.json")
    del document["apiVersion"], document["kind"]
    document["spec"]["someFieldOfCloudNativePG2"] = {"anything": [1, 2]}
    plugin_entry(document)["newKnob"] = True
    document["status"]["pluginStatus"] = "not even a list"
    cluster = parse_cluster(document)
    assert cluster.identity.api_version == "postgresql.cnpg.io/v1"
    assert cluster.identity.kind == "Cluster"
    assert cluster.plugin.archive is not None
    assert cluster.plugin_status is None


def test_a_custom_api_group_is_kept() -> None:
    document = load("cluster.json")
    document["apiVersion"] = "postgresql.example.com/v1beta1"
    identity = cluster_identity(document)
    assert (identity.group, identity.version) == ("postgresql.example.com", "v1beta1")


def test_the_sidecar_image_parameter_overrides_per_cluster() -> None:
    document = load("cluster.json")
    plugin_entry(document)["parameters"]["sidecarImage"] = "mirror.internal/barman-cloud-plugin:0.1.0"
    assert parse_cluster(document).plugin.sidecar_image == "mirror.internal/barman-cloud-plugin:0.1.0"


def test_every_problem_is_reported_with_its_field_path() -> None:
    document = load("cluster.json")
    plugin_entry(document)["parameters"] = {"barmanObjectname": "minio-store"}  # a typo
    external = document["spec"]["externalClusters"][0]["plugin"]["parameters"]
    external["barmanObjectName"] = "Origin_Store"
    external["serverName"] = "pg0/base"
    with pytest.raises(ConfigurationError) as failure:
        parse_cluster(document)
    problems = dict(failure.value.problems)
    assert set(problems) == {
        "spec.plugins[0].parameters.barmanObjectName",
        "spec.externalClusters[0].plugin.parameters.barmanObjectName",
    }
    assert "required" in problems["spec.plugins[0].parameters.barmanObjectName"]
    assert "parameters given: barmanObjectname" in problems["spec.plugins[0].parameters.barmanObjectName"]
    assert "'Origin_Store' cannot be an ObjectStore name" in str(failure.value)
    assert str(failure.value).startswith(f"invalid Cluster db/pg1 (plugin {PLUGIN_NAME})")


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        ({"serverName": "pg1/x"}, "spec.plugins[0].parameters.serverName", "one folder name"),
        ({"sidecarImage": "has space:1"}, "spec.plugins[0].parameters.sidecarImage", "not a container image"),
        ({"barmanObjectName": 7}, "spec.plugins[0].parameters.barmanObjectName", "must be a string"),
    ],
)
def test_malformed_parameters(change: dict[str, Any], path: str, message: str) -> None:
    document = load("cluster.json")
    plugin_entry(document)["parameters"].update(change)
    with pytest.raises(ConfigurationError) as failure:
        parse_cluster(document)
    assert path in dict(failure.value.problems)
    assert message in dict(failure.value.problems)[path]


def test_a_malformed_enabled_flag_is_an_error() -> None:
    document = load("cluster.json")
    plugin_entry(document)["enabled"] = "false"
    with pytest.raises(ConfigurationError, match=r"spec\.plugins\[0\]\.enabled: must be true or false"):
        parse_cluster(document)


@pytest.mark.parametrize(
    "payload",
    [b"", b"not json", b"[]", json.dumps({"spec": {}}).encode()],
    ids=["empty", "text", "list", "no-name"],
)
def test_what_is_not_a_cluster_is_refused_clearly(payload: bytes) -> None:
    with pytest.raises(Exception, match=r"Cluster JSON|metadata\.name"):
        parse_cluster(payload)
