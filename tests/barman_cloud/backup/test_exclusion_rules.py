"""Which paths go into the archives: our rules against barman 3.19's own ``path_allowed`` (run in
its virtual environment), path by path, and the one place we differ on purpose."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from barman_cloud.backup import walk
from tests.harness.tools import barman_cloud_bin

PGDATA = "/var/lib/postgresql/data"
TABLESPACES = [("tbs1", 16385, "/srv/tbs1"), ("inside", 16390, f"{PGDATA}/tablespaces/inside")]

# (path relative to the walked root, is a directory)
PGDATA_PATHS = [
    (".", True), ("./PG_VERSION", False), ("./postgresql.conf", False), ("./postmaster.pid", False),
    ("./postmaster.opts", False), ("./postgresql.auto.conf", False), ("./postgresql.auto.conf.tmp", False),
    ("./current_logfiles", False), ("./current_logfiles.tmp", False), ("./recovery.conf", False),
    ("./recovery.signal", False), ("./standby.signal", False), ("./backup_label.old", False),
    ("./tablespace_map", False), ("pg_wal", True), ("pg_wal/000000010000000000000001", False),
    ("pg_wal/archive_status", True), ("pg_wal/archive_status/000000010000000000000001.ready", False),
    ("pg_wal/summaries", True), ("pg_xlog", True), ("pg_xlog/000000010000000000000001", False),
    ("log", True), ("log/postgresql.log", False), ("log/nested", True), ("log/nested/old.log", False),
    ("pg_log", True), ("pg_log/postgresql.log", False), ("global", True), ("global/pg_control", False),
    ("global/1262", False), ("global/pg_internal.init", False), ("base", True), ("base/1", True),
    ("base/1/1259", False), ("base/1/pg_internal.init", False), ("base/pgsql_tmp", True),
    ("base/pgsql_tmp/pgsql_tmp1234.0", False), ("base/16384/pgsql_tmp", True), ("pg_replslot", True),
    ("pg_replslot/slot1", True), ("pg_replslot/slot1/state", False), ("pg_stat_tmp", True),
    ("pg_stat_tmp/global.stat", False), ("pg_stat", True), ("pg_stat/pgstat.stat", False),
    ("pg_dynshmem", True), ("pg_dynshmem/mmap.1", False), ("pg_notify", True), ("pg_notify/0000", False),
    ("pg_serial", True), ("pg_serial/0000", False), ("pg_snapshots", True), ("pg_snapshots/0001", False),
    ("pg_subtrans", True), ("pg_subtrans/0000", False), ("pg_xact", True), ("pg_xact/0000", False),
    ("pg_multixact/members", True), ("pg_multixact/members/0000", False), ("pg_tblspc", True),
    ("pg_tblspc/16385", True), ("pg_tblspc/16390", True), ("pg_tblspc/16391", True), ("tablespaces", True),
    ("tablespaces/inside", True), ("tablespaces/inside/PG_16_202307071", True),
    ("tablespaces/other", True), ("sub/postmaster.pid", False), ("sub/recovery.conf", False),
    ("base/16384/16385", False), ("base/16384/16385_fsm", False), ("base/16384/t3_16390", False),
    ("base/16384/t3_16390_fsm", False), ("base/16384/t3_16390.1", False), ("base/16384/t_1", False),
    ("pg_wal.old", True), ("pg_wal.old/x", False), ("weird[0-9]name", False),
]  # fmt: skip
TABLESPACE_PATHS = [
    (".", True), ("./stray_file", False), ("PG_16_202307071", True), ("PG_16_202307071/16384", True),
    ("PG_16_202307071/16384/16385", False), ("PG_16_202307071/16384/pgsql_tmp", True),
    ("PG_16_202307071/16384/pgsql_tmp/pgsql_tmp1.1", False), ("PG_16_202307071/16384/t3_16390", False),
    ("PG_15_202209061", True), ("PG_15_202209061/1/2", False), ("PG_16", True), ("PG_16_x/a", False),
    ("lost+found", True), ("lost+found/x", False), ("PG_9.6_201608131", True),
]  # fmt: skip

BARMAN_CHECK = """
import json, sys
import barman.output  # noqa (barman's own import order)
from barman.fs import path_allowed
cases = json.load(sys.stdin)
print(json.dumps([path_allowed(c["exclude"], c["include"], c["path"], c["is_dir"]) for c in cases]))
"""
BARMAN_WALK = """
import json, os, sys
import barman.output  # noqa (barman's own import order)
from barman.fs import path_allowed
args = json.load(sys.stdin)
names = []
# The loop of barman.cloud.CloudUploadController.upload_directory, with barman's path_allowed.
for root, dirs, files in os.walk(args["src"]):
    tar_root = os.path.relpath(root, args["src"])
    if not path_allowed(args["exclude"], args["include"], tar_root, True):
        continue
    names.append(tar_root)
    for item in files:
        tar_item = os.path.join(tar_root, item)
        if path_allowed(args["exclude"], args["include"], tar_item, False):
            names.append(tar_item)
print(json.dumps(names))
"""
TEMPORARY_RELATIONS = {"base/16384/t3_16390", "base/16384/t3_16390_fsm", "base/16384/t3_16390.1",
                       "PG_16_202307071/16384/t3_16390"}  # fmt: skip


def run_barman(script: str, payload: object) -> object:
    python = barman_cloud_bin("barman-cloud-backup").parent / "python"
    result = subprocess.run(
        [str(python), "-c", script], input=json.dumps(payload), capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def make_tree(root: Path, paths: list[tuple[str, bool]]) -> None:
    for path, is_dir in paths:
        target = root / path
        if is_dir:
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(b"x")


def test_pgdata_rules_are_barmans_except_temporary_relations() -> None:
    rules = walk.pgdata_rules(PGDATA, TABLESPACES)
    expected = [
        *walk.PGDATA_EXCLUDES,
        *walk.EXCLUDES,
        "/pg_tblspc/16385",
        "/tablespaces/inside",
        "/pg_tblspc/16390",
    ]
    assert rules.texts == tuple(expected)
    cases = [{"exclude": expected, "include": None, "path": p, "is_dir": d} for p, d in PGDATA_PATHS]
    theirs = run_barman(BARMAN_CHECK, cases)
    assert isinstance(theirs, list)
    ours = [walk.allowed(p, d, rules) for p, d in PGDATA_PATHS]
    differences = {p for (p, _d), a, b in zip(PGDATA_PATHS, ours, theirs, strict=True) if a != b}
    # barman escapes "[0-9]" so its temporary-relation rule never matches; ours does.
    assert differences == {p for p in TEMPORARY_RELATIONS if p.startswith("base/")}
    assert not any(walk.allowed(p, False, rules) for p in differences)


def test_pgdata_walk_is_barmans_in_content_and_order(tmp_path: Path) -> None:
    pgdata = tmp_path / "data"
    make_tree(pgdata, PGDATA_PATHS)
    rules = walk.pgdata_rules(str(pgdata), [("inside", 16390, str(pgdata / "tablespaces/inside"))])
    theirs = run_barman(BARMAN_WALK, {"src": str(pgdata), "exclude": list(rules.texts), "include": None})
    assert isinstance(theirs, list)
    ours = [m.arcname for m in walk.walk(str(pgdata), rules)]
    assert ours == [name for name in theirs if name not in TEMPORARY_RELATIONS]
    # Excluded directories are kept, empty; their subdirectories are judged on their own.
    assert {"pg_wal", "log", "pg_replslot", "pg_stat_tmp", "pg_tblspc", "pg_subtrans", "."} <= set(ours)
    assert not set(ours) & {"pg_wal/000000010000000000000001", "pg_wal/archive_status", "log/postgresql.log",
                            "log/nested", "pg_replslot/slot1", "pg_replslot/slot1/state", "global/pg_control",
                            "./postmaster.pid", "pg_tblspc/16390", "tablespaces/inside", "base/pgsql_tmp",
                            "base/16384/t3_16390", "./postgresql.auto.conf.tmp"}  # fmt: skip
    assert {"./recovery.signal", "./backup_label.old", "pg_tblspc/16391", "pg_wal.old/x", "pg_xact/0000",
            "tablespaces/inside/PG_16_202307071", "base/16384/16385_fsm"} <= set(ours)  # fmt: skip


def test_tablespace_walk_is_barmans(tmp_path: Path) -> None:
    location = tmp_path / "tbs"
    make_tree(location, TABLESPACE_PATHS)
    exclude, include = walk.tablespace_rules("16")
    payload = {"src": str(location), "exclude": list(exclude.texts), "include": list(include.texts)}
    theirs = run_barman(BARMAN_WALK, payload)
    assert isinstance(theirs, list)
    ours = [m.arcname for m in walk.walk(str(location), exclude, include)]
    assert ours == [name for name in theirs if name not in TEMPORARY_RELATIONS]
    # Only PG_16_* entries at the tablespace's root (deeper levels of other directories are not
    # excluded: barman's quirk, kept identical).
    assert {name for name in ours if "/" not in name} == {"PG_16_202307071", "PG_16_x"}
    assert "PG_16_202307071/16384/16385" in ours and "PG_16_202307071/16384/pgsql_tmp" not in ours


@pytest.mark.parametrize(
    ("version", "major"), [(90624, "9.6"), (100023, "10"), (160002, "16"), (180000, "18")]
)
def test_major_version_of_the_tablespace_directory(version: int, major: str) -> None:
    assert walk.major_version(version) == major


def test_walk_order_and_symbolic_links(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "base/1").mkdir(parents=True)
    (root / "base/1/1259").write_bytes(b"x")
    (root / "PG_VERSION").write_text("16\n")
    (root / "global").mkdir()
    (root / "global/pg_control").write_bytes(b"c")
    (root / "pg_tblspc").mkdir()
    (tmp_path / "tbs").mkdir()
    os.symlink(tmp_path / "tbs", root / "pg_tblspc/16385")
    (tmp_path / "wal").mkdir()
    (tmp_path / "wal/000000010000000000000001").write_bytes(b"w")
    os.symlink(tmp_path / "wal", root / "pg_wal")
    os.symlink("PG_VERSION", root / "version_link")
    members = list(walk.pgdata_members(str(root), [("t", 16385, str(tmp_path / "tbs"))]))
    names = [m.arcname for m in members]
    assert names[0] == "." and names[-1] == "global/pg_control"
    assert names.count("global/pg_control") == 1
    # A directory comes before its files; files directly in the root are "./name".
    assert names.index("base/1") < names.index("base/1/1259") and "./PG_VERSION" in names
    # Symbolic links to directories are not stored at all (not followed); links to files are.
    assert "pg_wal" not in names and "pg_tblspc/16385" not in names and "pg_tblspc" in names
    assert "./version_link" in names


def test_configuration_files_outside_pgdata_go_at_the_root() -> None:
    members = walk.external_config_files(PGDATA, "/etc/postgresql/postgresql.conf", f"{PGDATA}/pg_hba.conf",
                                         "/etc/postgresql/pg_ident.conf")  # fmt: skip
    assert [(m.source, m.arcname, m.optional) for m in members] == [
        ("/etc/postgresql/postgresql.conf", "postgresql.conf", False),
        ("/etc/postgresql/pg_ident.conf", "pg_ident.conf", True),
    ]
