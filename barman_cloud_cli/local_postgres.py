"""A throwaway local PostgreSQL: the quick start's database, and the tests' and benchmarks'.

initdb refuses to run as root, so when we are root every PostgreSQL program runs as the
`postgres` system user in a directory that user owns; archive_command and restore_command then
run as that user too (everything they execute must be reachable by it).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def find_bindir() -> Path | None:
    """The newest Debian PostgreSQL (``/usr/lib/postgresql/N/bin``), else ``pg_config --bindir``."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if candidates:
        return candidates[-1].parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = Path(
            subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=False
            ).stdout.strip()
        )
        if (found / "initdb").exists():
            return found
    return None


class LocalPostgres:
    """One initialised and running cluster on its own port and socket directory."""

    def __init__(self, bindir: Path, settings: dict[str, str] | None = None, *, name: str = "pg") -> None:
        self.bindir = bindir
        self.root = owned_by_postgres_tempdir(f"bcp-{name}-")
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
        self._run(["tee", "-a", f"{self.datadir}/postgresql.conf"], stdin=lines)
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
                f"PostgreSQL ({self.bindir}): {' '.join(command)} failed ({result.returncode}):\n"
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
