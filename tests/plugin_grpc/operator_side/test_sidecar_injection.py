"""OperatorLifecycle.LifecycleHook replayed as CloudNativePG calls it, over mutual TLS, on
realistic instance Pods and recovery Jobs: the patch is applied with the jsonpatch library and the
result checked field by field (upstream-plugin.md 1.5).

The ObjectStores are read from kmock's KubernetesEmulator over HTTP. It does not check schemas,
RBAC or (beyond what conftest adds) resourceVersions; here it only serves the ObjectStores.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from plugin_grpc.metadata import PLUGIN_NAME
from tests.plugin_grpc.operator_side.conftest import (
    NAMESPACE,
    SIDECAR_IMAGE,
    CloudNativePG,
    Connect,
    Kube,
    apply,
    iam_store,
    load,
    minio_store,
    origin_store,
    plugin_entry,
)

POSTGRES_MOUNTS = [
    {"mountPath": "/var/lib/postgresql/data", "name": "pgdata"},
    {"mountPath": "/var/lib/postgresql/wal", "name": "pg-wal"},
    {"mountPath": "/run", "name": "scratch-data"},
    {"mountPath": "/controller", "name": "scratch-data"},
    {"mountPath": "/dev/shm", "name": "shm"},
]
MAIN_ENV = [
    {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
    {"name": "POD_NAME", "value": "pg1-1"},
    {"name": "NAMESPACE", "value": "db"},
    {"name": "CLUSTER_NAME", "value": "pg1"},
    {"name": "PSQL_HISTORY", "value": "/controller/tmp/.psql_history"},
    {"name": "PGPORT", "value": "5432"},
    {"name": "PGHOST", "value": "/controller/run"},
    {"name": "TMPDIR", "value": "/controller/tmp"},
    {"name": "TZ", "value": "Europe/Rome"},
]
PLUGIN_ENV = [
    {"name": "SPOOL_DIRECTORY", "value": "/controller/wal-restore-spool"},
    {"name": "CUSTOM_CNPG_GROUP", "value": "postgresql.cnpg.io"},
    {"name": "CUSTOM_CNPG_VERSION", "value": "v1"},
]
# minio-store's env, then origin-store's, each name only once; the main container's win.
STORE_ENV = [
    {"name": "AWS_REQUEST_CHECKSUM_CALCULATION", "value": "when_required"},
    {"name": "ORIGIN_ONLY", "value": "1"},
]
HARDENED = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "privileged": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
STARTUP_PROBE = {
    "exec": {"command": ["barman-cloud-plugin", "healthcheck", "unix"]},
    "failureThreshold": 30,
    "periodSeconds": 1,
    "timeoutSeconds": 5,
}
MINIO_CA = {
    "name": "barman-certificates",
    "projected": {
        "sources": [
            {
                "secret": {
                    "name": "minio-server-tls",
                    "items": [{"key": "ca.crt", "path": "minio-store/barman-ca.crt"}],
                }
            }
        ]
    },
}


def _by_name(items: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [item for item in items if item["name"] == name]
    assert len(found) == 1, f"{name}: {len(found)} found"
    return found[0]


def _sidecar(spec: dict[str, Any]) -> dict[str, Any]:
    return _by_name(spec["initContainers"], "plugin-barman-cloud")


async def _evaluated(cnpg: CloudNativePG, cluster: dict[str, Any]) -> dict[str, Any]:
    pod = load("pod-instance.json")
    return apply(pod, await cnpg.evaluate(cluster, pod))


async def test_instance_pod_gets_the_native_sidecar(cnpg: CloudNativePG) -> None:
    pod = load("pod-instance.json")
    patch = await cnpg.evaluate(load("cluster.json"), pod)
    operations = json.loads(patch)
    assert isinstance(operations, list) and operations
    assert all(op["path"].startswith("/spec/") for op in operations)
    spec = apply(pod, patch)["spec"]

    # CloudNativePG's bootstrap-controller first (it fills /controller), then our sidecar.
    assert [c["name"] for c in spec["initContainers"]] == ["bootstrap-controller", "plugin-barman-cloud"]
    sidecar = _sidecar(spec)
    assert sidecar["image"] == SIDECAR_IMAGE
    assert sidecar["imagePullPolicy"] == "IfNotPresent"
    assert sidecar["restartPolicy"] == "Always"
    assert "command" not in sidecar  # the image's entrypoint is the console script
    # minio-store (the archive) tunes the sidecar: its extra arguments, then its log level.
    assert sidecar["args"] == ["instance", "--pprof-server=0.0.0.0:6061", "--log-level=debug"]
    assert sidecar["env"] == MAIN_ENV + PLUGIN_ENV + STORE_ENV
    assert sidecar["resources"] == {
        "requests": {"cpu": "250m", "memory": "64Mi"},
        "limits": {"memory": "512Mi"},
    }
    assert sidecar["startupProbe"] == STARTUP_PROBE
    assert "livenessProbe" not in sidecar and "readinessProbe" not in sidecar
    assert sidecar["securityContext"] == HARDENED
    assert sidecar["volumeMounts"] == [
        *POSTGRES_MOUNTS,
        {"name": "plugins", "mountPath": "/plugins"},
        {"name": "barman-certificates", "mountPath": "/barman-certificates"},
    ]

    postgres = _by_name(spec["containers"], "postgres")
    assert postgres["volumeMounts"] == [*POSTGRES_MOUNTS, {"name": "plugins", "mountPath": "/plugins"}]
    assert postgres["env"] == MAIN_ENV  # untouched
    assert [v["name"] for v in spec["volumes"]] == [
        "pgdata", "pg-wal", "scratch-data", "shm", "plugins", "barman-certificates",
    ]  # fmt: skip
    assert _by_name(spec["volumes"], "plugins") == {"name": "plugins", "emptyDir": {}}
    assert _by_name(spec["volumes"], "barman-certificates") == MINIO_CA


async def test_create_of_the_evaluated_pod_changes_nothing(cnpg: CloudNativePG) -> None:
    # CloudNativePG sends on CREATE the Pod it got from EVALUATE, with the spec annotation.
    cluster = load("cluster.json")
    pod = await _evaluated(cnpg, cluster)
    pod["metadata"]["annotations"]["cnpg.io/podSpec"] = json.dumps(pod["spec"])
    assert await cnpg.create(cluster, pod) == b""
    assert await cnpg.evaluate(cluster, pod) == b""


async def test_evaluate_is_deterministic(connect: Connect) -> None:
    # CloudNativePG compares a fresh EVALUATE with the stored spec: any difference rolls the Pods.
    cluster = load("cluster.json")
    first, second = await connect(), await connect()
    answers = {await cnpg.evaluate(cluster, load("pod-instance.json")) for cnpg in (first, second, first)}
    assert len(answers) == 1


async def test_a_sidecar_from_an_older_configuration_is_rebuilt_in_place(
    cnpg: CloudNativePG, kube: Kube
) -> None:
    cluster = load("cluster.json")
    pod = await _evaluated(cnpg, cluster)
    changed = minio_store()
    changed["spec"]["instanceSidecarConfiguration"]["logLevel"] = "info"
    await kube.put_store(changed)
    spec = apply(pod, await cnpg.create(cluster, pod))["spec"]
    assert _sidecar(spec)["args"][-1] == "--log-level=info"
    assert [c["name"] for c in spec["initContainers"]] == ["bootstrap-controller", "plugin-barman-cloud"]


async def test_certificates_volume_goes_when_no_store_needs_it(cnpg: CloudNativePG, kube: Kube) -> None:
    cluster = load("cluster.json")
    pod = await _evaluated(cnpg, cluster)
    assert "barman-certificates" in [v["name"] for v in pod["spec"]["volumes"]]
    without_ca = minio_store()
    del without_ca["spec"]["configuration"]["endpointCA"]
    await kube.put_store(without_ca)
    spec = apply(pod, await cnpg.create(cluster, pod))["spec"]
    assert "barman-certificates" not in [v["name"] for v in spec["volumes"]]
    assert "/barman-certificates" not in [m["mountPath"] for m in _sidecar(spec)["volumeMounts"]]


async def test_every_store_with_a_ca_gets_its_file(cnpg: CloudNativePG, kube: Kube) -> None:
    cluster = load("cluster.json")
    origin = origin_store()
    origin["spec"]["configuration"]["endpointCA"] = {"name": "origin-ca", "key": "bundle.pem"}
    await kube.put_store(origin)
    spec = (await _evaluated(cnpg, cluster))["spec"]
    sources = _by_name(spec["volumes"], "barman-certificates")["projected"]["sources"]
    assert [s["secret"]["items"][0]["path"] for s in sources] == [
        "minio-store/barman-ca.crt",
        "origin-store/barman-ca.crt",
    ]


async def test_a_plugins_volume_from_another_plugin_is_shared(cnpg: CloudNativePG) -> None:
    # A plugin sorted before ours already gave the Pod the /plugins directory.
    cluster = load("cluster.json")
    pod = load("pod-instance.json")
    pod["spec"]["volumes"].append({"name": "plugins", "emptyDir": {}})
    _by_name(pod["spec"]["containers"], "postgres")["volumeMounts"].append(
        {"name": "plugins", "mountPath": "/plugins"}
    )
    spec = apply(pod, await cnpg.evaluate(cluster, pod))["spec"]
    assert [v["name"] for v in spec["volumes"]].count("plugins") == 1
    postgres = _by_name(spec["containers"], "postgres")
    assert [m["mountPath"] for m in postgres["volumeMounts"]].count("/plugins") == 1
    assert [m["mountPath"] for m in _sidecar(spec)["volumeMounts"]].count("/plugins") == 1


async def test_the_sidecar_image_can_be_overridden_per_cluster(cnpg: CloudNativePG) -> None:
    cluster = load("cluster.json")
    plugin_entry(cluster)["parameters"]["sidecarImage"] = "mirror.internal/barman-cloud-plugin:0.1.0"
    spec = (await _evaluated(cnpg, cluster))["spec"]
    assert _sidecar(spec)["image"] == "mirror.internal/barman-cloud-plugin:0.1.0"


async def test_image_pull_policy_follows_the_cluster(cnpg: CloudNativePG) -> None:
    cluster = load("cluster.json")
    cluster["spec"]["imagePullPolicy"] = "Always"
    assert _sidecar((await _evaluated(cnpg, cluster))["spec"])["imagePullPolicy"] == "Always"
    del cluster["spec"]["imagePullPolicy"]
    assert "imagePullPolicy" not in _sidecar((await _evaluated(cnpg, cluster))["spec"])


async def test_a_replica_cluster_gets_the_sidecar_tuned_by_its_source_store(cnpg: CloudNativePG) -> None:
    cluster = load("cluster.json")
    del cluster["spec"]["plugins"]
    cluster["spec"]["bootstrap"] = {"pg_basebackup": {"source": "origin"}}
    cluster["spec"]["replica"] = {"enabled": True, "source": "origin"}
    spec = (await _evaluated(cnpg, cluster))["spec"]
    sidecar = _sidecar(spec)
    assert sidecar["args"] == ["instance", "--log-level=trace"]
    assert sidecar["resources"] == {"requests": {"cpu": "100m", "memory": "32Mi"}}
    assert "barman-certificates" not in [v["name"] for v in spec["volumes"]]


async def test_a_cluster_that_only_recovered_keeps_no_sidecar(cnpg: CloudNativePG) -> None:
    cluster = load("cluster.json")
    del cluster["spec"]["plugins"]
    assert await cnpg.evaluate(cluster, load("pod-instance.json")) == b""
    job = load("job-full-recovery.json")
    assert await cnpg.create(cluster, job) != b""


@pytest.mark.parametrize("role", ["full-recovery", "snapshot-recovery"])
async def test_recovery_job_gets_the_restore_sidecar(cnpg: CloudNativePG, role: str) -> None:
    job = _job(role)
    patched = apply(job, await cnpg.create(load("cluster.json"), job))
    spec = patched["spec"]["template"]["spec"]
    sidecar = _sidecar(spec)
    assert sidecar["args"] == ["restore"]  # as upstream: no extra arguments, no log level
    assert sidecar["image"] == SIDECAR_IMAGE
    assert sidecar["restartPolicy"] == "Always"
    # Only the recovery store's resources.
    assert sidecar["resources"] == {"requests": {"cpu": "100m", "memory": "32Mi"}}
    env = {e["name"]: e.get("value") for e in sidecar["env"]}
    assert env["POD_NAME"] == "pg1-1-full-recovery"  # the Job container's variables first
    assert env["ORIGIN_ONLY"] == "1" and env["AWS_REQUEST_CHECKSUM_CALCULATION"] == "when_required"
    assert sidecar["startupProbe"] == STARTUP_PROBE
    assert sidecar["securityContext"] == HARDENED
    main = _by_name(spec["containers"], role)
    assert main["volumeMounts"][-1] == {"name": "plugins", "mountPath": "/plugins"}
    assert sidecar["volumeMounts"][: len(main["volumeMounts"])] == main["volumeMounts"]
    assert patched["metadata"] == job["metadata"]
    assert await cnpg.create(load("cluster.json"), patched) == b""


def _job(role: str) -> dict[str, Any]:
    job = load("job-full-recovery.json")
    job["metadata"]["name"] = f"pg1-1-{role}"
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        labels["cnpg.io/jobRole"] = role
    job["spec"]["template"]["spec"]["containers"][0]["name"] = role
    return job


@pytest.mark.parametrize("role", ["initdb", "import", "pgbasebackup", "join", "major-upgrade"])
async def test_jobs_of_other_roles_are_left_alone(cnpg: CloudNativePG, role: str) -> None:
    assert await cnpg.create(load("cluster.json"), _job(role)) == b""


@pytest.mark.parametrize("variant", ["no-plugin", "disabled", "other-plugin"])
async def test_objects_of_clusters_without_the_plugin_are_left_alone(
    cnpg: CloudNativePG, variant: str
) -> None:
    cluster = load("cluster.json")
    del cluster["spec"]["bootstrap"], cluster["spec"]["externalClusters"]
    if variant == "no-plugin":
        del cluster["spec"]["plugins"]
    elif variant == "disabled":
        plugin_entry(cluster)["enabled"] = False
    else:
        plugin_entry(cluster)["name"] = "another-plugin.example.com"
    assert await cnpg.evaluate(cluster, load("pod-instance.json")) == b""
    assert await cnpg.create(cluster, load("pod-instance.json")) == b""
    assert await cnpg.create(cluster, load("job-full-recovery.json")) == b""


async def test_other_kinds_are_left_alone(cnpg: CloudNativePG) -> None:
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "pg1-rw", "namespace": NAMESPACE}}
    assert await cnpg.create(load("cluster.json"), service) == b""


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({}, "spec.plugins[0].parameters.barmanObjectName: required"),
        ({"barmanObjectName": "Minio_Store"}, "'Minio_Store' cannot be an ObjectStore name"),
        ({"barmanObjectName": "minio-store", "serverName": "a/b"}, "spec.plugins[0].parameters.serverName"),
    ],
)
async def test_malformed_parameters_are_a_clear_error(
    cnpg: CloudNativePG, parameters: dict[str, str], expected: str
) -> None:
    cluster = load("cluster.json")
    plugin_entry(cluster)["parameters"] = parameters
    with pytest.raises(GRPCError) as failure:
        await cnpg.evaluate(cluster, load("pod-instance.json"))
    assert failure.value.status is Status.INVALID_ARGUMENT
    assert expected in str(failure.value.message)
    assert f"invalid Cluster db/pg1 (plugin {PLUGIN_NAME})" in str(failure.value.message)


async def test_a_missing_object_store_is_a_clear_error(cnpg: CloudNativePG, kube: Kube) -> None:
    await kube.delete_store("minio-store")
    with pytest.raises(GRPCError) as failure:
        await cnpg.evaluate(load("cluster.json"), load("pod-instance.json"))
    assert failure.value.status is Status.NOT_FOUND
    message = str(failure.value.message)
    assert "ObjectStore db/minio-store does not exist" in message
    assert "spec.plugins[0].parameters.barmanObjectName" in message
    assert "create it in namespace db" in message


async def test_an_invalid_object_store_is_a_clear_error(cnpg: CloudNativePG, kube: Kube) -> None:
    broken = iam_store("minio-store")
    broken["spec"]["configuration"]["serverName"] = "pg1"  # refused by the CRD's CEL rule upstream
    await kube.put_store(broken)
    with pytest.raises(GRPCError) as failure:
        await cnpg.evaluate(load("cluster.json"), load("pod-instance.json"))
    assert failure.value.status is Status.INVALID_ARGUMENT
    assert "invalid ObjectStore db/minio-store" in str(failure.value.message)


async def test_a_pod_without_its_postgres_container_is_a_clear_error(cnpg: CloudNativePG) -> None:
    pod = load("pod-instance.json")
    pod["spec"]["containers"][0]["name"] = "main"
    with pytest.raises(GRPCError) as failure:
        await cnpg.evaluate(load("cluster.json"), pod)
    assert failure.value.status is Status.INVALID_ARGUMENT
    assert "Pod db/pg1-1 has no container named 'postgres' (it has: main)" in str(failure.value.message)
