"""``verify`` as people run it: a backup taken with ``backup`` and WAL archived by PostgreSQL with
``wal-archive`` (lz4), into a directory; clean, then damaged; the output formats and exit codes."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.barman_cloud.verify.conftest import CLI, cli, shared_directories, wait_archived
from tests.cli.test_wal_tools import write_store
from tests.harness.postgres import PostgresServer, owned_by_postgres_tempdir


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = owned_by_postgres_tempdir("bcp-verify-cli-")
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=True)


def test_verify_reports_and_exits_by_what_it_finds(
    postgres_factory: Callable[..., PostgresServer], workdir: Path
) -> None:
    manifest = write_store(workdir, compression="lz4")
    shared_directories(workdir / "bucket")
    source = ["-f", str(manifest), "--server-name", "pg"]
    server = postgres_factory(15)
    server.set(archive_command=f"{CLI} wal-archive {' '.join(source)} %p")
    server.query("CREATE TABLE t AS SELECT generate_series(1, 20000) AS n")
    backup = cli("backup", *source, "-d", server.conninfo, "--immediate-checkpoint")
    assert backup.returncode == 0, backup.stderr
    backup_id = backup.stdout.strip().splitlines()[-1].split()[-1]
    for _ in range(2):
        server.query("INSERT INTO t SELECT generate_series(1, 1000)")
        server.query("SELECT pg_switch_wal()")
    wait_archived(server)
    server.stop()

    clean = cli("verify", *source, "latest", "--to-latest")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert f"backup {backup_id} (DONE, timeline 1" in clean.stdout
    assert "OK: nothing missing, nothing corrupt" in clean.stdout
    as_json = cli("verify", *source, "--all", "--to-latest", "--format", "json", "-j", "2")
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert document["ok"] is True and document["problems"] == []
    assert [b["backup_id"] for b in document["backups"]] == [backup_id]
    assert document["backups"][0]["checksummed_archives"] == document["backups"][0]["archives"] == 1
    assert document["wal_after_backups"][0]["segments"] >= 2

    # One WAL segment after the backup gone, one bit flipped in another (lz4: its checksum says it).
    wals = sorted(p for p in (workdir / "bucket/pg/wals").rglob("*.lz4"))
    end_wal = document["backups"][0]["end_wal"]
    after = [p for p in wals if p.name.split(".")[0] > end_wal]
    assert len(after) >= 2
    after[0].unlink()
    with open(after[-1], "r+b") as handle:
        handle.seek(30)
        byte = handle.read(1)
        handle.seek(30)
        handle.write(bytes([byte[0] ^ 0x01]))
    damaged = cli("verify", *source, backup_id, "--to-latest")
    assert damaged.returncode == 1, damaged.stdout + damaged.stderr
    assert (
        f"[wal-gap] {after[0].name.split('.')[0]}: 1 segment missing from the WAL archive" in damaged.stdout
    )
    assert f"[checksum-mismatch] {after[-1].relative_to(workdir / 'bucket')}" in damaged.stdout
    assert "2 problem(s) found" in damaged.stderr
    problems = json.loads(cli("verify", *source, backup_id, "--to-latest", "--format", "json").stdout)[
        "problems"
    ]
    assert sorted(p["kind"] for p in problems) == ["checksum-mismatch", "wal-gap"]
    # Without --to-latest only the backup's own WAL is read: still fine.
    assert cli("verify", *source, backup_id).returncode == 0

    missing = cli("verify", *source, "20200101T000000")
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    bad = cli("verify", *source, "latest", "--jobs", "0")
    assert bad.returncode == 3 and "--jobs" in bad.stderr
    neither = cli("verify", *source)
    assert neither.returncode == 2 and "one of the arguments" in neither.stderr  # argparse usage error
