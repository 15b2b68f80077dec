"""Session-wide real services (docs/testing.md) and the options that widen the matrix.

Every service is started once per session on a free port in a temporary directory and stopped
at the end, even when tests fail. A missing service fails loudly with the command that installs
it: nothing is skipped because something is not installed.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness.certificates import PKI, make_pki
from tests.harness.object_stores import Azurite, FakeGCS, MotoS3
from tests.harness.postgres import PostgresServer

ALL_PG_VERSIONS = (15, 16, 17, 18)
# The representative slice CI runs: the oldest (Debian's) and the newest supported major.
DEFAULT_PG_VERSIONS = "15,18"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--pg-versions",
        default=DEFAULT_PG_VERSIONS,
        help=f"PostgreSQL majors to test, comma-separated, or 'all' ({DEFAULT_PG_VERSIONS} by default)",
    )
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow (the full matrix)")


def pg_versions(config: pytest.Config) -> list[int]:
    value = str(config.getoption("--pg-versions"))
    if value == "all":
        return list(ALL_PG_VERSIONS)
    versions = [int(v) for v in value.split(",") if v.strip()]
    unknown = set(versions) - set(ALL_PG_VERSIONS)
    if unknown:
        raise pytest.UsageError(
            f"--pg-versions: unsupported {sorted(unknown)}; choose from {ALL_PG_VERSIONS}"
        )
    return versions


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "pg_version" in metafunc.fixturenames:
        metafunc.parametrize(
            "pg_version", pg_versions(metafunc.config), scope="session", ids=lambda v: f"pg{v}"
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Slow tests are left out of the default run (deselected and counted, not skipped).
    if config.getoption("--run-slow"):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


@pytest.fixture(scope="session")
def services_dir() -> Iterator[Path]:
    """Logs and data of the session's services (kept only while the session runs)."""
    path = Path(tempfile.mkdtemp(prefix="bcp-services-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def moto_s3(services_dir: Path) -> Iterator[MotoS3]:
    server = MotoS3.start(services_dir)
    yield server
    server.process.stop()


@pytest.fixture(scope="session")
def azurite(services_dir: Path) -> Iterator[Azurite]:
    server = Azurite.start(services_dir)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def fake_gcs(services_dir: Path) -> Iterator[FakeGCS]:
    server = FakeGCS.start(services_dir)
    yield server
    server.process.stop()


@pytest.fixture(scope="session")
def postgres(pg_version: int) -> Iterator[PostgresServer]:
    """A running server of each selected major, shared by the session: don't change its settings."""
    server = PostgresServer(pg_version)
    yield server
    server.destroy()


@pytest.fixture
def postgres_factory() -> Iterator[Callable[..., PostgresServer]]:
    """Dedicated servers for tests that change settings; destroyed when the test ends."""
    servers: list[PostgresServer] = []

    def make(version: int = 15, **settings: str) -> PostgresServer:
        servers.append(PostgresServer(version, settings))
        return servers[-1]

    yield make
    for server in servers:
        server.destroy()


@pytest.fixture
def pki(tmp_path: Path) -> PKI:
    """Throwaway server and client certificates for the mutual-TLS endpoint."""
    return make_pki(tmp_path)
