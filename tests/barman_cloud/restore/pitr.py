"""Point-in-time recovery checks on real PostgreSQL: a workload that leaves one row before and one
after each kind of recovery target, and a restored server started on the restored directory."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tests.harness.postgres import PostgresServer, as_postgres
from tests.harness.processes import free_port, tail
from tests.harness.tools import postgres_bindir

CLI = str(Path(sys.executable).with_name("barman-cloud-plugin"))
TIMEOUT = 120


@dataclass
class Target:
    args: list[str]
    """restore options selecting the target."""
    rows: list[str]
    """Rows of table ``t`` recovery must end with, in insertion order."""


@dataclass
class Workload:
    targets: dict[str, Target] = field(default_factory=dict)
    tablespace_rows: list[str] = field(default_factory=list)


def prepare(server: PostgresServer, tablespace: Path | None) -> None:
    """Tables (one in a tablespace) and the rows a base backup taken next will contain."""
    if tablespace is not None:
        server.query(f"CREATE TABLESPACE tbs LOCATION '{tablespace}'")
        server.query("CREATE TABLE tt (tag text) TABLESPACE tbs")
        server.query("INSERT INTO tt VALUES ('before-backup')")
    server.query("CREATE TABLE t (n serial PRIMARY KEY, tag text)")
    server.query("INSERT INTO t (tag) VALUES ('before-backup')")


def run_after_backup(server: PostgresServer) -> Workload:
    """One row before and one after each target, all committed after the base backup ended."""
    work = Workload(tablespace_rows=["before-backup"])
    rows = ["before-backup"]
    work.targets["immediate"] = Target(["--target-immediate"], list(rows))

    def insert(tag: str) -> None:
        server.query("INSERT INTO t (tag) VALUES (%s)", [tag])
        rows.append(tag)

    insert("time-before")
    moment = server.query("SELECT clock_timestamp()")[0][0]
    time.sleep(0.05)  # distinct commit timestamps, not a timing assertion
    work.targets["time"] = Target(["--target-time", moment.isoformat()], list(rows))
    insert("time-after")

    insert("lsn-before")
    lsn = server.query("SELECT pg_current_wal_insert_lsn()::text")[0][0]
    work.targets["lsn"] = Target(["--target-lsn", lsn], list(rows))
    insert("lsn-after")

    with psycopg.connect(server.conninfo) as conn:  # one transaction: its xid is the target
        conn.execute("INSERT INTO t (tag) VALUES ('xid-before')")
        xid = conn.execute("SELECT txid_current()").fetchone()[0]  # type: ignore[index]
    rows.append("xid-before")
    work.targets["xid"] = Target(["--target-xid", str(xid)], list(rows))
    insert("xid-after")

    insert("name-before")
    server.query("SELECT pg_create_restore_point('before-the-mistake')")
    work.targets["name"] = Target(["--target-name", "before-the-mistake"], list(rows))
    insert("name-after")
    insert("end")
    return work


def switch_and_wait_archived(server: PostgresServer) -> None:
    last = server.query("SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0]
    server.query("SELECT pg_switch_wal()")
    deadline = time.monotonic() + TIMEOUT
    while True:
        archived, failed = server.query("SELECT last_archived_wal, failed_count FROM pg_stat_archiver")[0]
        if archived and archived >= last:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{last} not archived (failures: {failed}):\n{tail(server.log_path)}")
        time.sleep(0.2)


class RestoredServer:
    """PostgreSQL started on a restored data directory (archiving off: it must not write into the
    archive it recovers from), stopped by :meth:`stop`."""

    def __init__(self, version: int, datadir: Path) -> None:
        self.bindir = postgres_bindir(version)
        self.datadir = datadir
        self.port = free_port()
        self.sockets = datadir.parent / f"sockets-{self.port}"
        self.log_path = datadir.parent / f"restored-{self.port}.log"
        subprocess.run(as_postgres(["mkdir", "-p", str(self.sockets)]), check=True)
        options = (
            f"-c port={self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.sockets} "
            "-c archive_mode=off"
        )
        self._pg_ctl("-o", options, "-l", str(self.log_path), "-w", "-t", str(TIMEOUT), "start")

    def _pg_ctl(self, *args: str) -> None:
        result = subprocess.run(
            as_postgres([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), *args]),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            log = self.log_path.read_text() if self.log_path.exists() else ""
            raise AssertionError(
                f"pg_ctl {' '.join(args)} failed: {result.stdout}{result.stderr}\n{log[-4000:]}"
            )

    @property
    def conninfo(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def query(self, statement: str) -> list[tuple[object, ...]]:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            return conn.execute(statement.encode()).fetchall()

    def wait_promoted(self) -> None:
        deadline = time.monotonic() + TIMEOUT
        while self.query("SELECT pg_is_in_recovery()")[0][0]:
            if time.monotonic() > deadline:
                raise AssertionError(f"recovery did not end:\n{self.log_path.read_text()[-4000:]}")
            time.sleep(0.2)

    def rows(self, table: str = "t") -> list[str]:
        order = "n" if table == "t" else "tag"
        return [str(r[0]) for r in self.query(f"SELECT tag FROM {table} ORDER BY {order}")]

    def stop(self) -> None:
        if (self.datadir / "postmaster.pid").exists():
            self._pg_ctl("-m", "immediate", "-w", "stop")


def recover_and_check(version: int, datadir: Path, target: Target, tablespace_rows: list[str] | None) -> str:
    """Start PostgreSQL on ``datadir``, wait for the end of recovery, compare rows; returns the log."""
    server = RestoredServer(version, datadir)
    try:
        server.wait_promoted()
        assert server.rows() == target.rows
        if tablespace_rows is not None:
            assert server.rows("tt") == tablespace_rows
        return server.log_path.read_text()
    finally:
        server.stop()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=600, check=False)


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
