"""Restore, catalog and retention against barman-cloud 3.19 on the same buckets.

- barman-cloud-backup (each base-backup compression) with barman-cloud-wal-archive as
  archive_command -> our `restore` -> PostgreSQL starts and stops at each recovery target, a
  tablespace relocated; one compression on Azure (and GCS with FULL=1);
- barman-cloud-backup-list (console and JSON), -keep and -delete agree with ours, both ways;
- retention: barman-cloud-backup-delete --retention-policy ... --dry-run deletes what our dry run
  deletes, and a real run leaves the same bucket, except for the two documented differences
  (barman's S3 prefix shortcut deleting non-WAL objects, and its protection of the deleted
  backup's timeline) which are asserted as such.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from barman_cloud.catalog.keep import keep_backup, read_keep, release_keep
from barman_cloud.catalog.listing import load_catalog
from barman_cloud.format.keys import ServerLayout
from barman_cloud.retention.delete import apply_retention_policy, delete_backup
from barman_cloud.retention.policies import parse_policy
from barman_cloud.storage import ObjectInfo, Store
from tests.barman_cloud.catalog.synthetic import info, put_backup, put_wal, wal
from tests.barman_cloud.restore import pitr
from tests.compat.conftest import SharedBucket, _s3
from tests.conftest import pg_versions
from tests.harness.object_stores import MotoS3
from tests.harness.postgres import PostgresServer, owned_by_postgres_tempdir
from tests.harness.tools import barman_cloud_bin

CODEC_FLAGS = {"none": [], "bzip2": ["--bzip2"], "snappy": ["--snappy"], "lz4": ["--lz4"], "gzip": ["--gzip"]}


# -- PostgreSQL archiving and backed up by barman-cloud ----------------------------------------------


def barman_archive_command(args: list[str], env: dict[str, str], destination: str) -> str:
    """barman-cloud-wal-archive as PostgreSQL runs it (as the postgres user)."""
    command = ["env", *(f"{k}={v}" for k, v in env.items() if k != "TMPDIR"),
               str(barman_cloud_bin("barman-cloud-wal-archive")), *args, destination, "pg"]  # fmt: skip
    return shlex.join(command) + " %p"


def barman_backup(
    args: list[str], env: dict[str, str], destination: str, server: PostgresServer, codec: str
) -> str:
    """Run barman-cloud-backup; returns the new backup's ID (from barman-cloud-backup-list)."""

    def run(command: str, *extra: str) -> str:
        result = subprocess.run(
            [str(barman_cloud_bin(f"barman-cloud-{command}")), *args, *extra],
            env={"PATH": "/usr/bin:/bin", **env},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, f"barman-cloud-{command}: {result.stderr[-3000:]}"
        return result.stdout

    def listed() -> set[str]:
        document = json.loads(run("backup-list", "--format", "json", destination, "pg"))
        return {str(b["backup_id"]) for b in document["backups_list"]}

    before = listed()
    run("backup", *CODEC_FLAGS[codec], "--immediate-checkpoint", "-h", "127.0.0.1", "-p", str(server.port),
        "-U", "postgres", destination, "pg")  # fmt: skip
    (new,) = listed() - before
    time.sleep(1)  # barman's IDs have a one-second resolution
    return new


@dataclass
class BarmanSource:
    version: int
    manifest: Path
    workload: pitr.Workload
    backups: dict[str, str] = field(default_factory=dict)
    """Codec -> backup ID (gzip taken last: the newest)."""


def write_manifest(workdir: Path, text: str) -> Path:
    manifest = workdir / "store.yaml"
    manifest.write_text(text)
    manifest.chmod(0o644)
    return manifest


def codecs_for(version: int, config: pytest.Config) -> list[str]:
    if version == 15 or config.getoption("--run-slow"):
        return list(CODEC_FLAGS)
    return ["gzip"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The session's PostgreSQL versions, one barman-backed source per version and module. Beyond
    PostgreSQL 15 the default run restores for the time, name and immediate targets only; LSN and
    xid targets and the other compressions join with FULL=1."""
    if "source_version" not in metafunc.fixturenames:
        return
    everywhere = metafunc.function.__name__ == "test_barman_backup_our_restore_reaches_the_target"
    versions = [
        pytest.param(v, id=f"pg{v}", marks=[] if everywhere or v == 15 else [pytest.mark.slow])
        for v in pg_versions(metafunc.config)
    ]
    metafunc.parametrize("source_version", versions, indirect=True, scope="module")


@pytest.fixture(scope="module")
def source_version(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture(scope="module")
def barman_source(
    source_version: int, moto_s3: MotoS3, request: pytest.FixtureRequest
) -> Iterator[BarmanSource]:
    pg_version = source_version
    destination, args, env, manifest_text = _s3(moto_s3, f"compat-restore-{uuid.uuid4().hex[:8]}")
    workdir = owned_by_postgres_tempdir("bcp-compat-source-")
    tablespace = owned_by_postgres_tempdir("bcp-compat-tbs-")
    env = {**env, "TMPDIR": str(workdir)}
    server = PostgresServer(pg_version, {"archive_command": barman_archive_command(args, env, destination)})
    try:
        pitr.prepare(server, tablespace)
        source = BarmanSource(pg_version, write_manifest(workdir, manifest_text), pitr.Workload())
        for codec in codecs_for(pg_version, request.config):
            source.backups[codec] = barman_backup(args, env, destination, server, codec)
        source.workload = pitr.run_after_backup(server)
        pitr.switch_and_wait_archived(server)
        yield source
    finally:
        server.destroy()
        pitr.remove(tablespace)
        pitr.remove(workdir)


@pytest.fixture
def restore_root() -> Iterator[Path]:
    root = owned_by_postgres_tempdir("bcp-compat-restore-")
    yield root
    subprocess.run(["rm", "-rf", str(root)], check=False)


def our_restore(manifest: Path, root: Path, backup: str, *args: str) -> None:
    result = pitr.cli(
        "restore", "-f", str(manifest), "--server-name", "pg", backup, str(root / "data"),
        "--tablespace", f"tbs:{root / 'tbs'}", *args,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("kind", ["immediate", "time", "name"])
def test_barman_backup_our_restore_reaches_the_target(
    barman_source: BarmanSource, restore_root: Path, kind: str
) -> None:
    target = barman_source.workload.targets[kind]
    our_restore(barman_source.manifest, restore_root, "latest", *target.args)
    log = pitr.recover_and_check(
        barman_source.version, restore_root / "data", target, barman_source.workload.tablespace_rows
    )
    assert "restored log file" in log


@pytest.mark.parametrize("kind", ["lsn", "xid"])
def test_barman_backup_our_restore_reaches_lsn_and_xid_targets(
    barman_source: BarmanSource, restore_root: Path, kind: str
) -> None:
    test_barman_backup_our_restore_reaches_the_target(barman_source, restore_root, kind)


@pytest.mark.parametrize("compression_name", ["none", "bzip2", "snappy", "lz4"])
def test_each_barman_compression_restores(
    barman_source: BarmanSource, restore_root: Path, compression_name: str
) -> None:
    backup_id = barman_source.backups[compression_name]
    our_restore(barman_source.manifest, restore_root, backup_id, "--target-immediate")
    pitr.recover_and_check(
        barman_source.version,
        restore_root / "data",
        barman_source.workload.targets["immediate"],
        barman_source.workload.tablespace_rows,
    )


@pytest.mark.parametrize(
    "shared_bucket", ["azure", pytest.param("gcs", marks=pytest.mark.slow)], indirect=True
)
def test_barman_backup_on_another_provider(shared_bucket: SharedBucket, restore_root: Path) -> None:
    bucket = shared_bucket
    workdir = owned_by_postgres_tempdir("bcp-compat-provider-")
    tablespace = owned_by_postgres_tempdir("bcp-compat-provider-tbs-")
    env = {**bucket.barman_env, "TMPDIR": str(workdir)}
    server = PostgresServer(
        15, {"archive_command": barman_archive_command(bucket.barman_args, env, bucket.destination)}
    )
    try:
        pitr.prepare(server, tablespace)
        barman_backup(bucket.barman_args, env, bucket.destination, server, "gzip")
        workload = pitr.run_after_backup(server)
        pitr.switch_and_wait_archived(server)
        manifest = write_manifest(workdir, bucket.manifest)
        target = workload.targets["name"]
        our_restore(manifest, restore_root, "latest", *target.args)
        pitr.recover_and_check(15, restore_root / "data", target, workload.tablespace_rows)
    finally:
        server.destroy()
        pitr.remove(tablespace)
        pitr.remove(workdir)


# -- catalog: list, show, keep, delete ---------------------------------------------------------


B1, B2, B3, B4, B5 = (f"2025010{day}T000000" for day in range(1, 6))


async def synthetic_catalog(store: Store, layout: ServerLayout) -> None:
    """Five backups of every kind barman-cloud meets, with WAL."""
    await put_backup(store, layout, B1, info(B1, segment=2, span=2))
    await put_backup(
        store, layout, B2,
        info(B2, segment=5, name="before upgrade", tablespaces=(("tbs", 16385, "/srv/tbs"),)),
        {"data.tar.gz": b"1", "data_0001.tar.gz": b"2", "16385.tar.gz": b"3"},
    )  # fmt: skip
    await put_backup(
        store, layout, B3, info(B3, status="FAILED", end_time=None, error="failure uploading data (x)")
    )
    await put_backup(store, layout, B4, info(B4, segment=8, included_files=("/etc/pg/extra.conf",)))
    await put_backup(store, layout, B5, info(B5, status="STARTED", segment=10), {})
    for segment in range(1, 11):
        await put_wal(store, layout, wal(segment))
    await put_wal(store, layout, f"{wal(5)}.00000028.backup")
    await put_wal(store, layout, "00000002.history")


def manifest_file(bucket: SharedBucket, tmp_path: Path) -> Path:
    path = tmp_path / "store.yaml"
    path.write_text(bucket.manifest)
    return path


def ours(bucket: SharedBucket, manifest: Path, command: str, *args: str) -> subprocess.CompletedProcess[str]:
    result = pitr.cli(command, "-f", str(manifest), "--server-name", bucket.server, *args)
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.parametrize(
    "shared_bucket", ["s3", "azure", pytest.param("gcs", marks=pytest.mark.slow)], indirect=True
)
async def test_backup_list_and_show_match_barman(shared_bucket: SharedBucket, tmp_path: Path) -> None:
    bucket = shared_bucket
    await synthetic_catalog(bucket.store, bucket.layout)
    await keep_backup(bucket.store, bucket.layout, B1, "full")
    manifest = manifest_file(bucket, tmp_path)

    theirs = bucket.barman("backup-list", "--format", "json", bucket.destination, "pg").stdout
    mine = ours(bucket, manifest, "backup-list", "--format", "json").stdout
    assert json.loads(mine) == json.loads(theirs)
    assert [list(b) for b in json.loads(mine)["backups_list"]] == [
        list(b) for b in json.loads(theirs)["backups_list"]
    ]
    assert (
        ours(bucket, manifest, "backup-list").stdout
        == bucket.barman("backup-list", bucket.destination, "pg").stdout
    )

    theirs = bucket.barman(
        "backup-show", "--format", "json", bucket.destination, "pg", "before upgrade"
    ).stdout
    mine = ours(bucket, manifest, "backup-show", "--format", "json", "before upgrade").stdout
    assert json.loads(mine) == json.loads(theirs) and list(json.loads(mine)) == ["cloud"]


# fake-gcs-server has no batch endpoint, which barman's GCS deletes need.
@pytest.mark.parametrize("shared_bucket", ["s3", "azure"], indirect=True)
async def test_keep_and_delete_agree_both_ways(shared_bucket: SharedBucket, tmp_path: Path) -> None:
    bucket = shared_bucket
    await synthetic_catalog(bucket.store, bucket.layout)
    manifest = manifest_file(bucket, tmp_path)

    # barman keeps, we see it; we keep, barman sees it; releases both ways.
    bucket.barman("backup-keep", "--target", "standalone", bucket.destination, "pg", B1)
    assert await read_keep(bucket.store, bucket.layout, B1) == "standalone"
    assert ours(bucket, manifest, "backup-keep", "--status", B1).stdout == "Keep: standalone\n"
    ours(bucket, manifest, "backup-keep", "--target", "full", "latest")  # latest: B4 (B5 is STARTED)
    assert bucket.barman("backup-keep", "--status", bucket.destination, "pg", B4).stdout == "Keep: full\n"
    refused = pitr.cli("backup-keep", "-f", str(manifest), "--server-name", "pg", "--target", "full", B3)
    assert refused.returncode == 1 and "status is FAILED" in refused.stderr
    bucket.barman("backup-keep", "--release", bucket.destination, "pg", B1)
    ours(bucket, manifest, "backup-keep", "--release", B4)
    assert (await load_catalog(bucket.store, bucket.layout, keeps=True)).keeps == {}
    assert bucket.barman("backup-keep", "--status", bucket.destination, "pg", B4).stdout == "Keep: nokeep\n"

    # barman deletes, our catalog agrees; we delete, barman's list agrees.
    bucket.barman("backup-delete", "-b", B2, bucket.destination, "pg")
    assert (await load_catalog(bucket.store, bucket.layout)).ids == [B1, B3, B4, B5]
    ours(bucket, manifest, "backup-delete", B3)
    listed = json.loads(bucket.barman("backup-list", "--format", "json", bucket.destination, "pg").stdout)
    assert [b["backup_id"] for b in listed["backups_list"]] == [B1, B4, B5]
    assert await keys(bucket.store, bucket.layout.backup_dir(B2)) == set()
    assert await keys(bucket.store, bucket.layout.backup_dir(B3)) == set()


async def keys(store: Store, prefix: str) -> set[str]:
    return {e.key for e in [e async for e in store.list(prefix)] if isinstance(e, ObjectInfo)}


@pytest.mark.parametrize("shared_bucket", ["s3"], indirect=True)
async def test_keep_annotations_with_a_trailing_slash(shared_bucket: SharedBucket) -> None:
    bucket = shared_bucket
    slashed = ServerLayout(bucket.layout.raw_prefix + "/", "pg")
    await synthetic_catalog(bucket.store, slashed)
    bucket.barman("backup-keep", "--target", "standalone", bucket.destination + "/", "pg", B1)
    catalog = await load_catalog(bucket.store, slashed, keeps=True)
    assert catalog.keeps == {B1: "standalone"}  # found under <P>//pg/base (E-20)
    await keep_backup(bucket.store, slashed, B2, "full")
    assert (
        bucket.barman("backup-keep", "--status", bucket.destination + "/", "pg", B2).stdout == "Keep: full\n"
    )
    await release_keep(bucket.store, slashed, B2)
    assert (
        bucket.barman("backup-keep", "--status", bucket.destination + "/", "pg", B2).stdout
        == "Keep: nokeep\n"
    )


# -- retention ------------------------------------------------------------------------------------


NOW = datetime.now().astimezone()


def days_ago(days: float) -> str:
    return (NOW - timedelta(days=days)).strftime("%Y%m%dT%H%M%S")


async def aged_catalog(store: Store, layout: ServerLayout) -> list[str]:
    """Eight backups over 60 days (one FAILED, one STARTED, keeps), each in its own WAL "log"
    directory (so barman's S3 prefix shortcut applies), WAL, history and a stray object."""
    ids = [days_ago(d) for d in (60, 45, 40, 30, 20, 10, 5, 1)]
    statuses = ["DONE", "DONE", "FAILED", "DONE", "DONE", "DONE", "STARTED", "DONE"]
    for index, (backup_id, status) in enumerate(zip(ids, statuses, strict=True)):
        first = 256 * index + 2
        backup = info(backup_id, status=status, segment=first, span=2)
        if status == "FAILED":
            backup = info(backup_id, status=status, segment=first, end_time=None)
        await put_backup(store, layout, backup_id, backup)
        for segment in range(first - 1, first + 3):
            await put_wal(store, layout, wal(segment))
    await put_wal(store, layout, "00000002.history")
    await store.put(f"{layout.wals}0000000100000000/stray-notes.txt", b"not WAL")
    await keep_backup(store, layout, ids[1], "standalone")
    await keep_backup(store, layout, ids[4], "full")
    return ids


def barman_plan(bucket: SharedBucket, everything: set[str], *args: str) -> set[str]:
    """What barman-cloud-backup-delete --dry-run would delete (prefixes expanded)."""
    out = bucket.barman("backup-delete", *args, "--dry-run", bucket.destination, bucket.server).stdout
    planned: set[str] = set()
    for line in out.splitlines():
        if match := re.match(r"Skipping deletion of objects (\[.*\]) due to --dry-run option", line):
            planned |= set(ast.literal_eval(match.group(1)))
        elif match := re.match(r"Skipping deletion of all objects under prefix (\S+) due to", line):
            planned |= {key for key in everything if key.startswith(match.group(1))}
    return planned


POLICIES = [
    ("REDUNDANCY 1",),
    ("REDUNDANCY 3",),
    ("REDUNDANCY 2", "-m", "4"),
    ("RECOVERY WINDOW OF 7 DAYS",),
    ("RECOVERY WINDOW OF 3 WEEKS",),
    ("RECOVERY WINDOW OF 1 MONTHS",),
    ("RECOVERY WINDOW OF 12 DAYS", "-m", "5"),
]


@pytest.mark.parametrize("shared_bucket", ["s3"], indirect=True)
async def test_retention_decisions_match_barman(shared_bucket: SharedBucket) -> None:
    bucket = shared_bucket
    await aged_catalog(bucket.store, bucket.layout)
    everything = await keys(bucket.store, bucket.layout.root)
    stray = f"{bucket.layout.wals}0000000100000000/stray-notes.txt"
    shortcut_taken: list[bool] = []
    for policy, *minimum in POLICIES:
        theirs = barman_plan(bucket, everything, "--retention-policy", policy, *minimum)
        run = await apply_retention_policy(
            bucket.store, bucket.layout, parse_policy(policy),
            minimum_redundancy=int(minimum[1]) if minimum else 0, dry_run=True,
        )  # fmt: skip
        mine = {key for d in run.deletions for key in [*d.objects, *d.wals]}
        # The only difference: barman's S3 shortcut deletes a whole old WAL directory, stray
        # objects included; we delete WAL objects only.
        assert theirs - {stray} == mine, policy
        assert theirs, policy
        shortcut_taken.append(stray in theirs)
    assert any(shortcut_taken), "no policy exercised barman's WAL-directory shortcut"
    assert await keys(bucket.store, bucket.layout.root) == everything  # dry runs delete nothing


@pytest.mark.parametrize("shared_bucket", ["s3"], indirect=True)
async def test_retention_runs_leave_the_same_bucket(shared_bucket: SharedBucket, tmp_path: Path) -> None:
    bucket = shared_bucket
    theirs_layout = ServerLayout(bucket.layout.raw_prefix, "pg")
    ours_layout = ServerLayout(bucket.layout.raw_prefix, "ours")
    await aged_catalog(bucket.store, theirs_layout)
    ids = await aged_catalog(bucket.store, ours_layout)
    policy = "RECOVERY WINDOW OF 15 DAYS"
    bucket.barman("backup-delete", "--retention-policy", policy, bucket.destination, "pg")
    manifest = manifest_file(bucket, tmp_path)
    before = await keys(bucket.store, ours_layout.root)
    dry = pitr.cli("backup-delete", "-f", str(manifest), "--server-name", "ours", "-r", policy, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would delete backup {ids[0]}" in dry.stdout and f"  {ids[1]}  KEEP:STANDALONE" in dry.stdout
    assert await keys(bucket.store, ours_layout.root) == before
    run = pitr.cli("backup-delete", "-f", str(manifest), "--server-name", "ours", "-r", policy)
    assert run.returncode == 0, run.stderr
    left_by_barman = {k[len(theirs_layout.root) :] for k in await keys(bucket.store, theirs_layout.root)}
    left_by_us = {k[len(ours_layout.root) :] for k in await keys(bucket.store, ours_layout.root)}
    assert left_by_us - left_by_barman == {"wals/0000000100000000/stray-notes.txt"}
    assert left_by_barman - left_by_us == set()


@pytest.mark.parametrize("shared_bucket", ["s3"], indirect=True)
async def test_documented_difference_the_deleted_backups_timeline(shared_bucket: SharedBucket) -> None:
    """Deleting the only timeline 1 backup whose successor is on timeline 2: barman keeps every
    timeline 1 WAL (its quirk), we delete them (barman_cloud.retention.wal_cleanup)."""
    bucket = shared_bucket
    for server in ("pg", "ours"):
        layout = ServerLayout(bucket.layout.raw_prefix, server)
        await put_backup(bucket.store, layout, B1, info(B1, segment=3, timeline=1))
        await put_backup(bucket.store, layout, B2, info(B2, segment=6, timeline=2))
        for segment in range(1, 7):
            await put_wal(bucket.store, layout, wal(segment, timeline=1))
        await put_wal(bucket.store, layout, wal(6, timeline=2))
        await put_wal(bucket.store, layout, "00000002.history")
    bucket.barman("backup-delete", "-b", B1, bucket.destination, "pg")
    ours_layout = ServerLayout(bucket.layout.raw_prefix, "ours")
    await delete_backup(bucket.store, ours_layout, B1)
    barman_wals = {
        k.rsplit("/", 1)[-1]
        for k in await keys(bucket.store, ServerLayout(bucket.layout.raw_prefix, "pg").wals)
    }
    our_wals = {k.rsplit("/", 1)[-1] for k in await keys(bucket.store, ours_layout.wals)}
    assert barman_wals == {*(wal(s) for s in range(1, 7)), wal(6, 2), "00000002.history"}
    assert our_wals == {wal(6, 2), "00000002.history"}
