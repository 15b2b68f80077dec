"""``helm lint`` and ``helm install`` of the chart for the tests, through :mod:`helm_runner`.

Each call runs Helm in a child process with its own ``HELM_*_HOME`` folders and the in-memory
release driver (see :mod:`tests.packaging.helm_runner` for why, and for what the API server
emulator the chart is installed into does not check).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "barman-cloud"
INSTALL_HELM = "make venv  (or: .venv/bin/pip install --ignore-requires-python helm-sdkpy)"

# helm lint's severities (helm.sh/helm/v4/pkg/chart/v2/lint/support).
INFO, WARNING, ERROR = 1, 2, 3


class HelmFailed(AssertionError):
    """Helm itself could not run (not a chart problem Helm reported)."""


def run(*args: str) -> Any:
    """``python -m tests.packaging.helm_runner ARGS``; its JSON answer."""
    home = Path(tempfile.mkdtemp(prefix="bcp-helm-"))
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("HELM_")},
        "HELM_DRIVER": "memory",
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        "KUBECONFIG": str(home / "no-kubeconfig"),
    }
    try:
        result = subprocess.run(
            [sys.executable, "-m", "tests.packaging.helm_runner", *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if "No module named 'helm_sdkpy'" in result.stderr:
        raise HelmFailed(f"helm-sdkpy is not installed: {INSTALL_HELM}")
    if result.returncode != 0:
        raise HelmFailed(f"helm_runner {' '.join(args[:2])} failed ({result.returncode}):\n{result.stderr}")
    return json.loads(result.stdout)


@dataclass(frozen=True)
class Release:
    """What ``helm install`` did: its error (None on success), manifest, notes, and the objects the
    API server received (as Helm sent them, release labels and annotations included)."""

    error: str | None
    manifest: str
    notes: str
    objects: list[dict[str, Any]] = field(default_factory=list)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [o for o in self.all(kind) if name is None or o["metadata"]["name"] == name]
        names = [o["metadata"]["name"] for o in found]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {names}"
        return found[0]

    def names(self) -> set[tuple[str, str]]:
        return {(o["kind"], o["metadata"]["name"]) for o in self.objects}


def install(
    values: Mapping[str, Any] | None = None,
    *,
    chart: Path = CHART,
    release: str = "barman-cloud",
    namespace: str = "cnpg-system",
    kubernetes_version: str = "1.31.0",
) -> Release:
    answer = run(
        "install", str(chart), "--values", json.dumps(values or {}), "--release", release,
        "--namespace", namespace, "--kubernetes-version", kubernetes_version,
    )  # fmt: skip
    return Release(answer["error"], answer["manifest"], answer["notes"], answer["objects"])


def installed(values: Mapping[str, Any] | None = None, **options: Any) -> Release:
    """:func:`install` that must succeed."""
    outcome = install(values, **options)
    assert outcome.error is None, outcome.error
    return outcome


def lint(chart: Path = CHART) -> list[tuple[int, str]]:
    """``helm lint``: (severity, path) of each message. helm-sdkpy drops the message texts."""
    answer = run("lint", str(chart))
    assert answer["TotalChartsLinted"] == 1, answer
    return [(message["Severity"], message["Path"]) for message in answer["Messages"]]
