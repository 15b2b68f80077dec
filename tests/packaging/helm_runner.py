"""Helm (the Go library in PyPI's ``helm-sdkpy``) run in a child process, answering in JSON.

``python -m tests.packaging.helm_runner lint CHART`` is ``helm lint``. ``... install CHART`` is a
real ``helm install`` (Helm's rendering, ``kubeVersion`` and values-schema checks, ``crds/``
first, then every template object created through the API) against kmock's KubernetesEmulator,
an in-memory API server over HTTP; it prints the release's manifest and the objects the API
server received. Helm's own release record is kept in memory (``HELM_DRIVER=memory``): Helm writes
it as protobuf, which the emulator cannot read.

A child process because Helm's Go runtime reads the environment once, when the library loads,
from the process's initial environment: ``HELM_DRIVER`` and the ``HELM_*_HOME`` folders must be
set before the process starts (:func:`tests.packaging.helm.run`).

What the emulator does not check, so neither does ``install`` here: object schemas (a typo in a
Deployment field is stored as written), RBAC, admission (no CEL), and nothing runs (no Pods, no
cert-manager). The tests check the objects themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

import helm_sdkpy  # type: ignore[import-untyped]
import kmock
from kmock._internal import rendering

VERBS = ["get", "list", "watch", "create", "update", "patch", "delete"]

# Every resource the chart creates or Helm reads, as a 1.31 API server serves them.
BUILTIN_RESOURCES: dict[str, tuple[str, bool]] = {
    "v1/namespaces": ("Namespace", False),
    "v1/serviceaccounts": ("ServiceAccount", True),
    "v1/services": ("Service", True),
    "v1/secrets": ("Secret", True),
    "v1/configmaps": ("ConfigMap", True),
    "v1/events": ("Event", True),
    "apps/v1/deployments": ("Deployment", True),
    "rbac.authorization.k8s.io/v1/clusterroles": ("ClusterRole", False),
    "rbac.authorization.k8s.io/v1/clusterrolebindings": ("ClusterRoleBinding", False),
    "rbac.authorization.k8s.io/v1/roles": ("Role", True),
    "rbac.authorization.k8s.io/v1/rolebindings": ("RoleBinding", True),
    "apiextensions.k8s.io/v1/customresourcedefinitions": ("CustomResourceDefinition", False),
    # cert-manager's CRDs, installed beforehand as the chart requires.
    "cert-manager.io/v1/issuers": ("Issuer", True),
    "cert-manager.io/v1/clusterissuers": ("ClusterIssuer", False),
    "cert-manager.io/v1/certificates": ("Certificate", True),
}

CRDS = kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")


class HelmReadyEmulator(kmock.KubernetesEmulator):
    """The emulator, plus what Helm needs from an API server: the core group's discovery answered
    as ``v1`` (not ``/v1``), a configurable server version, and CustomResourceDefinitions that
    become Established and served as soon as they are created (the API server's CRD controller)."""

    kubernetes_version = "1.31.0"

    async def _serve_server_version(self, request: rendering.Request) -> rendering.Payload:
        major, minor, _ = self.kubernetes_version.split(".")
        return {"major": major, "minor": minor, "gitVersion": f"v{self.kubernetes_version}",
                "platform": "linux/amd64"}  # fmt: skip

    async def _serve_version(self, request: rendering.Request) -> rendering.Payload:
        document: dict[str, Any] = await super()._serve_version(request)  # type: ignore[assignment]
        if document.get("groupVersion") == "/v1":
            document["groupVersion"] = "v1"
        return document

    async def _handle(self, request: rendering.Request) -> Any:
        creating_crd = request.resource == CRDS and request.method == kmock.method.POST
        if creating_crd and isinstance(request.data, dict):
            establish(self, request.data)
        return await super()._handle(request)


def establish(emulator: kmock.KubernetesEmulator, crd: dict[str, Any]) -> None:
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    for version in spec.get("versions", []):
        if version.get("served"):
            key = f"{spec['group']}/{version['name']}/{names['plural']}"
            emulator.resources[key] = kmock.ResourceInfo(
                kind=names["kind"],
                singular=names.get("singular") or names["kind"].lower(),
                namespaced=spec.get("scope") == "Namespaced",
                verbs=set(VERBS),
                subresources=set(version.get("subresources", {})),
            )
    crd["status"] = {
        "acceptedNames": names,
        "storedVersions": [v["name"] for v in spec.get("versions", []) if v.get("storage")],
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": ""},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": ""},
        ],
    }


def kubeconfig(url: str, namespace: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {"server": url}}],
            "users": [{"name": "emulator", "user": {"token": "unused"}}],
            "contexts": [{"name": "emulator",
                          "context": {"cluster": "emulator", "user": "emulator", "namespace": namespace}}],
            "current-context": "emulator",
        }
    )  # fmt: skip


async def install(
    chart: str, values: dict[str, Any], *, release: str, namespace: str, kubernetes_version: str
) -> dict[str, Any]:
    emulator = HelmReadyEmulator()
    emulator.kubernetes_version = kubernetes_version
    for key, (kind, namespaced) in BUILTIN_RESOURCES.items():
        emulator.resources[key] = kmock.ResourceInfo(
            kind=kind, singular=kind.lower(), namespaced=namespaced, verbs=set(VERBS)
        )
    result: dict[str, Any] = {"error": None, "manifest": "", "notes": "", "objects": []}
    async with emulator, kmock.Server(emulator):
        with tempfile.TemporaryDirectory(prefix="helm-kubeconfig-") as folder:
            path = Path(folder) / "config"
            path.write_text(kubeconfig(str(emulator.url).rstrip("/"), namespace))
            configuration = helm_sdkpy.Configuration(namespace=namespace, kubeconfig=str(path))
            try:
                release_info = await helm_sdkpy.Install(configuration).run(
                    release, chart, values=values or None, wait=False, timeout=60
                )
            except helm_sdkpy.HelmError as error:
                result["error"] = str(error)
            else:
                result["manifest"] = release_info.get("manifest", "")
                result["notes"] = (release_info.get("info") or {}).get("notes", "")
        for object_key in emulator.objects:
            stored = emulator.objects[object_key]
            if not stored.deleted:
                result["objects"].append(stored.raw)
    return result


async def lint(chart: str) -> dict[str, Any]:
    configuration = helm_sdkpy.Configuration(namespace="default")
    outcome: dict[str, Any] = await helm_sdkpy.Lint(configuration).run(chart)
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.packaging.helm_runner")
    commands = parser.add_subparsers(dest="command", required=True)
    lint_parser = commands.add_parser("lint")
    lint_parser.add_argument("chart")
    install_parser = commands.add_parser("install")
    install_parser.add_argument("chart")
    install_parser.add_argument("--values", default="{}", help="JSON")
    install_parser.add_argument("--release", default="barman-cloud")
    install_parser.add_argument("--namespace", default="cnpg-system")
    install_parser.add_argument("--kubernetes-version", default=HelmReadyEmulator.kubernetes_version)
    args = parser.parse_args(argv)
    if os.environ.get("HELM_DRIVER") != "memory":
        print("HELM_DRIVER=memory must be set before the process starts", file=sys.stderr)
        return 2
    try:
        if args.command == "lint":
            outcome = asyncio.run(lint(args.chart))
        else:
            outcome = asyncio.run(
                install(
                    args.chart,
                    json.loads(args.values),
                    release=args.release,
                    namespace=args.namespace,
                    kubernetes_version=args.kubernetes_version,
                )
            )
    except Exception:
        traceback.print_exc()
        return 1
    json.dump(outcome, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
