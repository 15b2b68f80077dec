"""The Helm chart, installed with Helm into an in-memory API server: the objects it creates.

Each test runs a real ``helm install`` (values schema, ``kubeVersion``, ``crds/`` first, templates)
against kmock's KubernetesEmulator and checks the objects the API server received. The emulator
does not validate object schemas, RBAC or admission, and runs nothing: what CloudNativePG,
cert-manager and the kubelet would do with these objects is checked here by reading them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import barman_cloud
from barman_cloud.config.object_store import parse_object_store
from barman_cloud_cli.main import build_parser
from barman_cloud_operator import controller
from plugin_grpc.metadata import PLUGIN_NAME
from plugin_grpc.operator_side import rbac as operator_rbac
from tests.packaging import helm
from tests.packaging.objectstore_crd import CRD_FILE

NAMESPACE = "cnpg-system"


@pytest.fixture(scope="module")
def default() -> helm.Release:
    return helm.installed()


def container(release: helm.Release) -> dict[str, Any]:
    containers: list[dict[str, Any]] = release.one("Deployment")["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["barman-cloud"]
    return containers[0]


def env(release: helm.Release) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(release)["env"]}


def operator_arguments(release: helm.Release) -> tuple[dict[str, Any], list[str]]:
    """The container's args as the console script parses them: (options, flags it does not know)."""
    args, unknown = build_parser().parse_known_args(container(release)["args"])
    return vars(args), unknown


def volume_secret(release: helm.Release, mount_path: str) -> str:
    pod = release.one("Deployment")["spec"]["template"]["spec"]
    (mount,) = [m for m in container(release)["volumeMounts"] if m["mountPath"] == mount_path]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert mount.get("readOnly") is True
    secret_name: str = volume["secret"]["secretName"]
    return secret_name


def rules(release: helm.Release, name: str = "barman-cloud") -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = release.one("ClusterRole", name)["rules"]
    return found


def granted(rules: list[dict[str, Any]], group: str, resource: str) -> set[str]:
    return {
        verb
        for rule in rules
        if group in rule["apiGroups"] and resource in rule["resources"] and not rule.get("resourceNames")
        for verb in rule["verbs"]
    }


# --- the default install ------------------------------------------------------------------------


def test_default_install_creates_the_plugin_objects(default: helm.Release) -> None:
    assert default.names() == {
        ("CustomResourceDefinition", "objectstores.barmancloud.cnpg.io"),
        ("CustomResourceDefinition", "clusterkopfpeerings.kopf.dev"),
        ("ClusterKopfPeering", "barman-cloud.cloudnative-pg.io"),
        ("ServiceAccount", "barman-cloud"),
        ("ClusterRole", "barman-cloud"),
        ("ClusterRoleBinding", "barman-cloud"),
        ("Service", "barman-cloud"),
        ("Deployment", "barman-cloud"),
        ("Issuer", "barman-cloud-selfsigned-issuer"),
        ("Certificate", "barman-cloud-client"),
        ("Certificate", "barman-cloud-server"),
    }
    namespaced = [o for o in default.objects if "namespace" in o["metadata"]]
    assert {o["metadata"]["namespace"] for o in namespaced} == {NAMESPACE}
    assert {o["kind"] for o in namespaced} == {
        "ServiceAccount",
        "Service",
        "Deployment",
        "Issuer",
        "Certificate",
    }


def test_every_object_carries_the_chart_labels(default: helm.Release) -> None:
    for obj in default.objects:
        if obj["kind"] == "CustomResourceDefinition" and obj["metadata"]["name"].endswith("kopf.dev"):
            continue  # from crds/: Helm installs it verbatim
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "barman-cloud", obj["kind"]
        assert labels["app.kubernetes.io/instance"] == "barman-cloud"
        assert labels["app.kubernetes.io/version"] == barman_cloud.__version__
        assert labels["app.kubernetes.io/managed-by"] == "Helm"


def test_service_is_what_cloudnative_pg_discovers(default: helm.Release) -> None:
    service = default.one("Service")
    assert service["metadata"]["name"] == "barman-cloud"
    assert (
        service["metadata"]["labels"]["cnpg.io/pluginName"] == PLUGIN_NAME == "barman-cloud.cloudnative-pg.io"
    )
    annotations = service["metadata"]["annotations"]
    assert annotations["cnpg.io/pluginPort"] == "9090"
    assert annotations["cnpg.io/pluginClientSecret"] == "barman-cloud-client-tls"
    assert annotations["cnpg.io/pluginServerSecret"] == "barman-cloud-server-tls"
    assert "cnpg.io/pluginServerName" not in annotations
    (port,) = service["spec"]["ports"]
    assert port["port"] == 9090
    # The Service reaches the operator's gRPC port, and selects the operator's Pods.
    (grpc,) = [p for p in container(default)["ports"] if p["name"] == port["targetPort"]]
    assert grpc["containerPort"] == 9090
    pod_labels = default.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_operator_serves_mutual_tls_with_the_secrets_cloudnative_pg_uses(default: helm.Release) -> None:
    options, unknown = operator_arguments(default)
    assert options["command"] == "operator"
    assert options["log_level"] == "info"
    assert options["server_address"] == ":9090"
    assert (options["server_cert"], options["server_key"]) == ("/server/tls.crt", "/server/tls.key")
    assert options["client_cert"] == "/client/tls.crt"
    assert unknown == []
    assert options["health_probe_bind_address"] == ":8081"
    assert options["leader_elect"] is True
    service = default.one("Service")["metadata"]["annotations"]
    certificates = {c["spec"]["usages"][0]: c["spec"]["secretName"] for c in default.all("Certificate")}
    # /server holds the server certificate CloudNativePG trusts; /client the one it presents.
    assert (
        volume_secret(default, "/server")
        == service["cnpg.io/pluginServerSecret"]
        == certificates["server auth"]
    )
    assert (
        volume_secret(default, "/client")
        == service["cnpg.io/pluginClientSecret"]
        == certificates["client auth"]
    )


def test_operator_environment_and_identity(default: helm.Release) -> None:
    variables = env(default)
    image = container(default)["image"]
    assert image == f"barman-cloud-plugin:{barman_cloud.__version__}"
    assert variables["SIDECAR_IMAGE"] == image  # one image for the operator and the sidecars
    assert variables["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}  # identity among the peers
    assert variables["CUSTOM_CNPG_GROUP"] == "postgresql.cnpg.io"


def test_probes_use_the_health_endpoint_the_operator_binds(default: helm.Release) -> None:
    main = container(default)
    (health,) = [p for p in main["ports"] if p["name"] == "health"]
    assert f"--health-probe-bind-address=:{health['containerPort']}" in main["args"]
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert main["livenessProbe"]["periodSeconds"] == 10


def test_operator_runs_unprivileged_on_a_read_only_root(default: helm.Release) -> None:
    pod = default.one("Deployment")["spec"]["template"]["spec"]
    security = container(default)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["runAsNonRoot"] is True
    assert (security["runAsUser"], security["runAsGroup"]) == (26, 26)
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    (tmp,) = [m for m in container(default)["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert {"name": tmp["name"], "emptyDir": {}} in pod["volumes"]
    assert pod["serviceAccountName"] == default.one("ServiceAccount")["metadata"]["name"]


def test_certificates_match_the_service_and_the_issuer(default: helm.Release) -> None:
    issuer = default.one("Issuer")
    assert issuer["spec"] == {"selfSigned": {}}
    server = default.one("Certificate", "barman-cloud-server")["spec"]
    client = default.one("Certificate", "barman-cloud-client")["spec"]
    # CloudNativePG verifies the server certificate against the bare Service name.
    assert server["commonName"] == "barman-cloud"
    assert server["dnsNames"] == ["barman-cloud", f"barman-cloud.{NAMESPACE}.svc"]
    assert server["usages"] == ["server auth"]
    assert client["usages"] == ["client auth"]
    for spec in (server, client):
        assert spec["issuerRef"] == {
            "group": "cert-manager.io",
            "kind": "Issuer",
            "name": issuer["metadata"]["name"],
        }
        assert (spec["duration"], spec["renewBefore"]) == ("2160h", "360h")
        assert spec["isCA"] is False
        assert spec["privateKey"] == {"rotationPolicy": "Always"}


# --- RBAC -----------------------------------------------------------------------------------------


def test_cluster_role_grants_nothing_with_a_wildcard(default: helm.Release) -> None:
    for rule in rules(default):
        for key in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[key], rule
    binding = default.one("ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": "barman-cloud"}  # fmt: skip
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "barman-cloud", "namespace": NAMESPACE}]


def test_secrets_are_read_only(default: helm.Release) -> None:
    secret_rules = [r for r in rules(default) if "" in r["apiGroups"] and "secrets" in r["resources"]]
    assert [sorted(r["verbs"]) for r in secret_rules] == [["get", "list", "watch"]]


def test_operator_holds_every_permission_it_grants_the_sidecars(default: helm.Release) -> None:
    # Kubernetes lets a subject write a Role only with permissions it holds itself (RBAC escalation
    # prevention): the ClusterRole must cover the per-cluster Roles the operator writes.
    store = parse_object_store(
        yaml.safe_load(
            """
            apiVersion: barmancloud.cnpg.io/v1
            kind: ObjectStore
            metadata: {name: minio-store, namespace: db}
            spec:
              configuration:
                destinationPath: s3://backups/
                endpointCA: {name: minio-ca, key: ca.crt}
                s3Credentials:
                  accessKeyId: {name: minio, key: ACCESS_KEY_ID}
                  secretAccessKey: {name: minio, key: ACCESS_SECRET_KEY}
            """
        )
    )
    role_rules = operator_rbac.role_rules([store])
    assert {r["resources"][0] for r in role_rules} == {"objectstores", "objectstores/status", "secrets"}
    held = rules(default)
    for rule in role_rules:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                missing = set(rule["verbs"]) - granted(held, group, resource)
                assert not missing, f"{group}/{resource}: the ClusterRole lacks {sorted(missing)}"


def test_operator_may_do_what_its_code_does(default: helm.Release) -> None:
    held = rules(default)
    needs = {
        # plugin_grpc/operator_side/rbac.py: read, create, merge-patch; the controller lists Roles.
        ("rbac.authorization.k8s.io", "roles"): {"get", "create", "patch", "list"},
        ("rbac.authorization.k8s.io", "rolebindings"): {"get", "create", "patch"},
        # plugin_grpc/operator_side/events.py: create, read, patch (aggregated Events).
        ("", "events"): {"get", "create", "patch"},  # and operator/events.py
        # plugin_grpc/kube.py reads ObjectStores; Kopf watches them (annotations storage), the
        # controller merge-patches their status (operator/api.py).
        ("barmancloud.cnpg.io", "objectstores"): {"get", "list", "watch", "patch"},
        ("barmancloud.cnpg.io", "objectstores/status"): {"patch"},
        # owner references with blockOwnerDeletion on the Cluster.
        ("postgresql.cnpg.io", "clusters/finalizers"): {"update"},
        # operator/api.py: Clusters read, ScheduledBackups listed, plugin Backups listed and deleted.
        ("postgresql.cnpg.io", "backups"): {"list", "delete"},
        ("postgresql.cnpg.io", "scheduledbackups"): {"list", "watch"},
        ("postgresql.cnpg.io", "clusters"): {"get", "list"},
        # Kopf: CRD and namespace observers; peering (the operator creates its object if missing).
        ("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"},
        ("", "namespaces"): {"list", "watch"},
        ("kopf.dev", "clusterkopfpeerings"): {"get", "list", "watch", "create", "patch"},
    }
    for (group, resource), verbs in needs.items():
        assert verbs <= granted(held, group, resource), f"{group}/{resource}"
    # ...and no more than that: nothing is deleted but Backups, nothing is updated but statuses.
    for rule in held:
        if "delete" in rule["verbs"]:
            assert rule["resources"] == ["backups"], rule
        if "update" in rule["verbs"]:
            assert set(rule["resources"]) <= {"objectstores/status", "clusters/finalizers"}, rule


def test_cnpg_group_is_configurable_for_forks() -> None:
    release = helm.installed({"rbac": {"cnpgGroup": "postgresql.example.com"}})
    groups = {g for rule in rules(release) for g in rule["apiGroups"]}
    assert "postgresql.example.com" in groups
    assert "postgresql.cnpg.io" not in groups
    assert env(release)["CUSTOM_CNPG_GROUP"] == "postgresql.example.com"  # what the operator watches
    assert {"clusters/finalizers", "backups"} <= {
        r
        for rule in rules(release)
        if "postgresql.example.com" in rule["apiGroups"]
        for r in rule["resources"]
    }


def test_aggregated_roles_for_namespace_users() -> None:
    release = helm.installed({"rbac": {"aggregateClusterRoles": True}})
    edit = release.one("ClusterRole", "barman-cloud-objectstores-edit")
    view = release.one("ClusterRole", "barman-cloud-objectstores-view")
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert all(set(r["verbs"]) <= {"get", "list", "watch"} for r in view["rules"])
    assert not any("secrets" in r["resources"] for r in edit["rules"] + view["rules"])


def test_without_rbac_nor_service_account() -> None:
    release = helm.installed({"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "mine"}})
    kinds = {kind for kind, _ in release.names()}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "ServiceAccount"}
    assert release.one("Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "mine"


# --- replicas, peering, strategy -----------------------------------------------------------------


def test_several_replicas_share_one_controller_through_peering() -> None:
    release = helm.installed({"replicaCount": 3})
    deployment = release.one("Deployment")["spec"]
    assert deployment["replicas"] == 3
    assert "strategy" not in deployment  # Kubernetes' RollingUpdate: the peers hand over
    options, _ = operator_arguments(release)
    assert options["leader_elect"] is True
    # The object the operator's controller meets its peers in, created before it starts.
    assert release.one("ClusterKopfPeering")["metadata"]["name"] == controller.PEERING_NAME


def test_standalone_runs_one_replica_and_never_two_controllers() -> None:
    release = helm.installed({"peering": {"enabled": False}})
    options, unknown = operator_arguments(release)
    assert (options["leader_elect"], unknown) == (False, [])
    assert release.one("Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    assert not release.all("ClusterKopfPeering")
    assert not granted(rules(release), "kopf.dev", "clusterkopfpeerings")
    refused = helm.install({"peering": {"enabled": False}, "replicaCount": 2})
    assert refused.error is not None
    assert "replicaCount > 1 needs peering.enabled" in refused.error


def test_update_strategy_is_passed_through() -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    release = helm.installed({"updateStrategy": strategy})
    assert release.one("Deployment")["spec"]["strategy"] == strategy


# --- values ---------------------------------------------------------------------------------------


def test_images_tags_and_digests() -> None:
    digest = "sha256:" + "ab" * 32
    release = helm.installed(
        {
            "image": {
                "registry": "registry.example.com/",
                "repository": "dba/barman-cloud-plugin",
                "tag": "1.2.3",
            },
            "sidecarImage": {"digest": digest},
        }
    )
    assert container(release)["image"] == "registry.example.com/dba/barman-cloud-plugin:1.2.3"
    assert env(release)["SIDECAR_IMAGE"] == f"registry.example.com/dba/barman-cloud-plugin@{digest}"
    release = helm.installed(
        {"sidecarImage": {"registry": "mirror.local", "repository": "sidecar", "tag": "7"}}
    )
    assert env(release)["SIDECAR_IMAGE"] == "mirror.local/sidecar:7"
    assert container(release)["image"] == f"barman-cloud-plugin:{barman_cloud.__version__}"


def test_additional_args_env_and_log_level() -> None:
    release = helm.installed(
        {
            "logLevel": "debug",
            "additionalArgs": ["--kubeconfig=/etc/kube/config"],
            "additionalEnv": [
                {"name": "RELEASE", "value": "{{ .Release.Name }}"},
                {"name": "PLAIN", "value": "x"},
            ],
        }
    )
    options, _ = operator_arguments(release)
    assert options["log_level"] == "debug"
    assert options["kubeconfig"] == "/etc/kube/config"
    variables = env(release)
    assert (variables["RELEASE"], variables["PLAIN"]) == ("barman-cloud", "x")  # templated
    assert "SIDECAR_IMAGE" in variables


def test_pod_metadata_scheduling_and_resources() -> None:
    scheduling: dict[str, Any] = {
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 1, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}]}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                       "whenUnsatisfiable": "ScheduleAnyway"}],
        "priorityClassName": "system-cluster-critical",
    }  # fmt: skip
    resources = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}
    release = helm.installed(
        {**scheduling, "resources": resources, "podAnnotations": {"a": "1"}, "podLabels": {"team": "db"},
         "imagePullSecrets": [{"name": "registry"}]}
    )  # fmt: skip
    template = release.one("Deployment")["spec"]["template"]
    for key, value in scheduling.items():
        assert template["spec"][key] == value, key
    assert template["spec"]["imagePullSecrets"] == [{"name": "registry"}]
    assert template["metadata"]["annotations"] == {"a": "1"}
    assert template["metadata"]["labels"]["team"] == "db"
    assert container(release)["resources"] == resources


def test_common_annotations_reach_every_template_object() -> None:
    release = helm.installed({"commonAnnotations": {"owner": "dba"}, "serviceAccount": {
        "additionalAnnotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/x"}}})  # fmt: skip
    for obj in release.objects:
        if obj["metadata"]["name"] == "clusterkopfpeerings.kopf.dev":
            continue
        assert obj["metadata"]["annotations"]["owner"] == "dba", obj["kind"]
    account = release.one("ServiceAccount")["metadata"]["annotations"]
    assert account["eks.amazonaws.com/role-arn"] == "arn:aws:iam::1:role/x"


def test_namespace_override_moves_every_namespaced_object() -> None:
    release = helm.installed({"namespaceOverride": "cnpg-operator"}, namespace="default")
    namespaces = {o["metadata"]["namespace"] for o in release.objects if "namespace" in o["metadata"]}
    assert namespaces == {"cnpg-operator"}
    assert release.one("ClusterRoleBinding")["subjects"][0]["namespace"] == "cnpg-operator"
    assert (
        "barman-cloud.cnpg-operator.svc"
        in release.one("Certificate", "barman-cloud-server")["spec"]["dnsNames"]
    )


def test_release_name_prefixes_the_objects_but_not_the_service() -> None:
    release = helm.installed(release="backups")
    assert release.one("Deployment")["metadata"]["name"] == "backups-barman-cloud"
    assert release.one("Service")["metadata"]["name"] == "barman-cloud"
    assert release.one("Certificate", "backups-barman-cloud-server")["spec"]["commonName"] == "barman-cloud"


def test_plugin_server_name_goes_to_the_service_and_the_certificate() -> None:
    release = helm.installed(
        {"service": {"annotations": {"pluginServerName": "barman-cloud.example.internal"}}}
    )
    annotations = release.one("Service")["metadata"]["annotations"]
    assert annotations["cnpg.io/pluginServerName"] == "barman-cloud.example.internal"
    assert (
        "barman-cloud.example.internal"
        in release.one("Certificate", "barman-cloud-server")["spec"]["dnsNames"]
    )


def test_service_port_and_dual_stack() -> None:
    release = helm.installed({"service": {"port": 19090, "ipFamilyPolicy": "PreferDualStack",
                                          "ipFamilies": ["IPv6", "IPv4"]}})  # fmt: skip
    service = release.one("Service")
    assert service["metadata"]["annotations"]["cnpg.io/pluginPort"] == "19090"
    assert service["spec"]["ports"][0]["port"] == 19090
    assert service["spec"]["ports"][0]["targetPort"] == "grpc"
    assert (service["spec"]["ipFamilyPolicy"], service["spec"]["ipFamilies"]) == (
        "PreferDualStack",
        ["IPv6", "IPv4"],
    )


# --- certificates ---------------------------------------------------------------------------------


def test_user_provided_tls_secrets() -> None:
    release = helm.installed(
        {"certificate": {"createClientCertificate": False, "createServerCertificate": False,
                         "clientSecretName": "my-client-tls", "serverSecretName": "my-server-tls"}}
    )  # fmt: skip
    assert not release.all("Certificate")
    assert not release.all("Issuer")
    annotations = release.one("Service")["metadata"]["annotations"]
    assert annotations["cnpg.io/pluginClientSecret"] == volume_secret(release, "/client") == "my-client-tls"
    assert annotations["cnpg.io/pluginServerSecret"] == volume_secret(release, "/server") == "my-server-tls"
    assert "my-server-tls" in release.notes


def test_certificates_from_an_existing_cluster_issuer() -> None:
    release = helm.installed(
        {"certificate": {"createIssuer": False, "issuerName": "corporate-ca", "issuerKind": "ClusterIssuer",
                         "duration": "720h", "renewBefore": "240h"}}
    )  # fmt: skip
    assert not release.all("Issuer")
    for certificate in release.all("Certificate"):
        spec = certificate["spec"]
        assert spec["issuerRef"] == {
            "group": "cert-manager.io",
            "kind": "ClusterIssuer",
            "name": "corporate-ca",
        }
        assert (spec["duration"], spec["renewBefore"]) == ("720h", "240h")


# --- the CRDs -------------------------------------------------------------------------------------


def test_objectstore_crd_is_the_one_in_crds(default: helm.Release) -> None:
    shipped = yaml.safe_load(CRD_FILE.read_text())
    installed = default.one("CustomResourceDefinition", "objectstores.barmancloud.cnpg.io")
    assert installed["spec"] == shipped["spec"]
    # Uninstalling the chart must not delete every ObjectStore with the CRD.
    assert installed["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_objectstore_crd_can_be_left_out_or_deleted_with_the_release() -> None:
    release = helm.installed({"crds": {"create": False}})
    assert ("CustomResourceDefinition", "objectstores.barmancloud.cnpg.io") not in release.names()
    release = helm.installed({"crds": {"keep": False}})
    crd = release.one("CustomResourceDefinition", "objectstores.barmancloud.cnpg.io")
    assert "helm.sh/resource-policy" not in crd["metadata"].get("annotations", {})


def test_peering_crd_is_what_kopf_looks_for(default: helm.Release) -> None:
    crd = default.one("CustomResourceDefinition", "clusterkopfpeerings.kopf.dev")["spec"]
    assert (crd["group"], crd["scope"], crd["names"]["plural"]) == (
        "kopf.dev",
        "Cluster",
        "clusterkopfpeerings",
    )
    (version,) = crd["versions"]
    assert version["name"] == "v1"
    # Kopf writes its keep-alives into .status through the main resource.
    assert "subresources" not in version
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]
    assert status["x-kubernetes-preserve-unknown-fields"] is True


# --- what Helm refuses ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"service": {"name": "plugin"}}, "/service/name"),
        ({"logLevel": "verbose"}, "/logLevel"),
        ({"replicaCount": 0}, "/replicaCount"),
        ({"certificate": {"duration": "90 days"}}, "/certificate/duration"),
        ({"certificate": {"issuerKind": "Vault"}}, "/certificate/issuerKind"),
        ({"health": {"port": 9090}}, "/health/port"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        ({"sidecarImages": {}}, "sidecarImages"),
    ],
)
def test_values_schema_refuses(values: dict[str, Any], complaint: str) -> None:
    refused = helm.install(values)
    assert refused.error is not None
    assert "schema" in refused.error
    assert complaint in refused.error


def test_kubernetes_without_native_sidecars_is_refused() -> None:
    refused = helm.install(kubernetes_version="1.28.9")
    assert refused.error is not None
    assert ">=1.29.0-0" in refused.error
    assert helm.install(kubernetes_version="1.29.0").error is None


# --- the chart's files ----------------------------------------------------------------------------


def test_chart_version_follows_the_package() -> None:
    chart = yaml.safe_load((helm.CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == barman_cloud.__version__
    assert chart["name"] == "barman-cloud"


WHOLE_VALUES = ("containerSecurityContext", "podSecurityContext", "livenessProbe", "readinessProbe")
"""Values documented as one object (Kubernetes types passed through)."""


def test_readme_documents_every_value() -> None:
    values = yaml.safe_load((helm.CHART / "values.yaml").read_text())
    readme = (helm.CHART / "README.md").read_text()

    def leaves(tree: dict[str, Any], prefix: str = "") -> list[str]:
        found = []
        for key, value in tree.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict) and value and key not in WHOLE_VALUES:
                found += leaves(value, f"{path}.")
            else:
                found.append(path)
        return found

    missing = [path for path in leaves(values) if f"`{path}`" not in readme]
    assert not missing, f"document in {Path('charts/barman-cloud/README.md')}: {missing}"
