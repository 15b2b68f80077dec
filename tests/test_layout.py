"""The package layout promises of docs/architecture.md."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SOURCE_FOLDERS = {
    "barman_cloud": "barman_cloud",
    "barman_cloud_cli": "barman_cloud_cli",
    "operator": "barman_cloud_operator",
    "plugin_grpc": "plugin_grpc",
}


@pytest.mark.parametrize("cwd", [".", "operator", "plugin_grpc", "plugin_grpc/services"])
def test_import_operator_is_always_the_standard_library(cwd: str) -> None:
    # Python puts the current directory first on sys.path for `-c` and `-m`; with `-m`, runpy
    # imports collections (hence operator) after that. No folder or module of ours may win.
    stdlib = Path(subprocess.__file__).parent
    result = subprocess.run(
        [sys.executable, "-c", "import operator; print(operator.__file__)"],
        cwd=ROOT / cwd, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert Path(result.stdout.strip()).parent == stdlib
    result = subprocess.run(
        [sys.executable, "-m", "json.tool", "--help"],
        cwd=ROOT / cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_operator_folder_is_installed_under_another_name() -> None:
    import barman_cloud_operator.process

    assert Path(barman_cloud_operator.process.__file__).resolve().parent == ROOT / "operator"
    assert not (ROOT / "operator/__init__.py").exists(), "an __init__.py would shadow the standard library"


def test_every_source_package_is_installed() -> None:
    declared = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = set()
    for folder, name in SOURCE_FOLDERS.items():
        for module in (ROOT / folder).rglob("*.py"):
            relative = module.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *relative.parts]))
    assert found == declared, "list new packages in [tool.setuptools] packages"


def test_console_script_is_the_cli() -> None:
    assert PYPROJECT["project"]["scripts"] == {"barman-cloud-plugin": "barman_cloud_cli.main:main"}
