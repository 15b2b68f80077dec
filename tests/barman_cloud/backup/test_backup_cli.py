"""``barman-cloud-plugin backup`` as an operator runs it, next to PostgreSQL archiving through
``barman-cloud-plugin wal-archive``: libpq's environment, the ObjectStore's data section, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from barman_cloud.format.backup_info import parse_backup_info
from tests.harness.object_stores import local_store_manifest
from tests.harness.postgres import PostgresServer, as_postgres, owned_by_postgres_tempdir

CLI = str(Path(sys.executable).with_name("barman-cloud-plugin"))


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = owned_by_postgres_tempdir("bcp-backup-cli-")
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=True)


def write_store(workdir: Path, data: str) -> Path:
    manifest = workdir / "store.yaml"
    manifest.write_text(local_store_manifest(workdir / "bucket", wal="compression: gzip", data=data))
    manifest.chmod(0o644)
    return manifest


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """As the postgres user, like PostgreSQL's archive_command (and the sidecar) writing the same bucket."""
    variables = [f"{name}={value}" for name, value in (env or {}).items()]
    return subprocess.run(
        as_postgres(["env", *variables, CLI, *args]), capture_output=True, text=True, timeout=300, check=False
    )


def test_backup_with_the_libpq_environment(
    postgres_factory: Callable[..., PostgresServer], pg_version: int, workdir: Path
) -> None:
    manifest = write_store(workdir, "compression: lz4, jobs: 2, immediateCheckpoint: true")
    server = postgres_factory(
        pg_version, archive_command=f"{CLI} wal-archive -f {manifest} --server-name pg %p"
    )
    server.query("CREATE TABLE t AS SELECT generate_series(1, 100000) AS n")
    environment = {"PGHOST": "127.0.0.1", "PGPORT": str(server.port), "PGUSER": "postgres"}
    result = run("backup", "-f", str(manifest), "--server-name", "pg", "--name", "weekly", env=environment)
    assert result.returncode == 0, result.stderr
    backup_id = result.stdout.strip()
    base = workdir / "bucket/pg/base" / backup_id
    assert sorted(p.name for p in base.iterdir()) == ["backup.info", "bcp_checksums.json", "data.tar.lz4"]
    info = parse_backup_info((base / "backup.info").read_bytes())
    assert (info.status, info.backup_name, (info.version or 0) // 10000) == ("DONE", "weekly", pg_version)
    assert info.copy_stats and info.copy_stats["number_of_workers"] == 2
    # PostgreSQL archived what the backup needs before DONE was written.
    archived = {p.name.split(".")[0] for p in (workdir / "bucket/pg/wals").rglob("*.gz")}
    assert info.end_wal in archived


def test_options_override_the_object_store(
    postgres_factory: Callable[..., PostgresServer], workdir: Path
) -> None:
    manifest = write_store(workdir, "compression: gzip, jobs: 4")
    server = postgres_factory(15, archive_command=f"{CLI} wal-archive -f {manifest} --server-name pg %p")
    result = run("backup", "-f", str(manifest), "--server-name", "pg", "-d", server.conninfo, "--jobs", "1",
                 "--immediate-checkpoint", "--max-archive-size", "1MB")  # fmt: skip
    assert result.returncode == 0, result.stderr
    base = workdir / "bucket/pg/base" / result.stdout.strip()
    parts = sorted(p.name for p in base.iterdir() if p.name not in ("backup.info", "bcp_checksums.json"))
    assert parts[0] == "data.tar.gz" and "data_0001.tar.gz" in parts
    recorded = json.loads((base / "bcp_checksums.json").read_text())["objects"]
    assert sorted(recorded) == parts  # every part's checksum, in the manifest
    info = parse_backup_info((base / "backup.info").read_bytes())
    assert info.copy_stats and info.copy_stats["number_of_workers"] == 1


def test_exit_codes(workdir: Path) -> None:
    manifest = write_store(workdir, "compression: gzip")
    reserved = run("backup", "-f", str(manifest), "--server-name", "pg", "--name", "latest")
    assert reserved.returncode == 3 and "reserved" in reserved.stderr
    unreachable = run("backup", "-f", str(manifest), "--server-name", "pg", "-d",
                      "host=127.0.0.1 port=1 user=postgres connect_timeout=2")  # fmt: skip
    assert unreachable.returncode == 2 and "cannot connect to PostgreSQL" in unreachable.stderr
    assert not (workdir / "bucket/pg/base").exists()
    no_store = run("backup", "--server-name", "pg")
    assert no_store.returncode == 3 and "use -f FILE" in no_store.stderr
