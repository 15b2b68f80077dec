"""Base backup and restore, side by side with barman-cloud on the same moto server.

    .venv/bin/python bench/backup.py [--scale 70] [--compression lz4] [--jobs 2] [--runs 3]
        [--partitions N] [--max-archive-size SIZE] [--restore-only]

A real PostgreSQL 15 holds a pgbench database (scale 70 is about 1.1 GiB). Each run takes:
  backup   barman-cloud-backup 3.19 (--<compression> -J jobs: one tar+compress process and `jobs`
           upload processes), `barman-cloud-plugin backup` (ours, the CLI: a cold process), and our
           engine inside an already running process (what the instance sidecar does: imports done,
           connections open), all with an immediate checkpoint, into the same moto server;
  restore  barman-cloud-restore and our restore engine (barman_cloud.restore.restore_backup, when
           that module exists) each restore barman's backup of that run into an empty directory.
Wall time, CPU seconds (the whole process tree, from /usr/bin/time) and peak RSS (the sum over the
process tree, sampled every 20 ms: barman's worker processes count) per tool; moto's CPU beside,
since it shares the machine. The order of the tools rotates between runs. Medians and ratios are
printed. Run on a quiet machine; compare ratios, not absolute numbers.

Multi-tar restores: ``--partitions N`` splits pgbench_accounts into N partitions (N files instead of
one 900 MB relation) and ``--max-archive-size`` is passed to barman-cloud-backup, which then writes
data.tar as several parts (it never splits a file, hence the partitions). ``--restore-only`` takes
barman's backup once and times only the restores, ``--runs`` times each.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness.object_stores import MotoS3  # noqa: E402
from tests.harness.postgres import PostgresServer  # noqa: E402
from tests.harness.tools import barman_cloud_bin, postgres_bindir  # noqa: E402

CLI = str(Path(sys.executable).with_name("barman-cloud-plugin"))
TIME = "/usr/bin/time"
BARMAN_FLAGS = {
    "none": [],
    "gzip": ["--gzip"],
    "bzip2": ["--bzip2"],
    "snappy": ["--snappy"],
    "lz4": ["--lz4"],
}
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Measure:
    tool: str
    seconds: float
    cpu: float
    peak_rss_mib: float
    moto_cpu: float
    size: int = 0
    """Bytes stored (backup) or restored (restore)."""


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, pending = 0, [root]
    while pending:
        pid = pending.pop()
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
        pending += children.get(pid, [])
    return total


def timed(command: list[str], env: dict[str, str], moto_pid: int, tool: str) -> tuple[Measure, str]:
    """Run ``command`` under /usr/bin/time, sampling the RSS of its process tree."""
    with tempfile.NamedTemporaryFile(prefix="bench-time-", suffix=".txt") as out:
        before = proc_cpu(moto_pid)
        start = time.monotonic()
        process = subprocess.Popen(
            [TIME, "-o", out.name, "-f", "%e %U %S %M", *command],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        peak = [0]

        def sample() -> None:
            while process.poll() is None:
                peak[0] = max(peak[0], tree_rss(process.pid))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        stdout, stderr = process.communicate()
        seconds = time.monotonic() - start
        sampler.join()
        moto = proc_cpu(moto_pid) - before
        if process.returncode != 0:
            raise RuntimeError(f"{tool} failed ({process.returncode}):\n{stderr[-3000:]}")
        _elapsed, user, system, _rss = Path(out.name).read_text().split()[-4:]
    return Measure(tool, seconds, float(user) + float(system), peak[0] / 2**20, moto), stdout


def manifest(workdir: Path, moto: MotoS3, prefix: str, compression: str, jobs: int) -> Path:
    data = f"jobs: {jobs}, immediateCheckpoint: true" + (
        f", compression: {compression}" if compression != "none" else ""
    )
    path = workdir / f"store-{prefix}.yaml"
    path.write_text(moto.manifest(prefix, name="bench", data=data))
    return path


def s3_client(moto: MotoS3) -> Any:
    import boto3  # type: ignore[import-untyped]

    return boto3.client(
        "s3", endpoint_url=moto.endpoint, aws_access_key_id=moto.access_key,
        aws_secret_access_key=moto.secret_key, region_name=moto.region,
    )  # fmt: skip


def stored_bytes(moto: MotoS3, prefix: str) -> int:
    s3 = s3_client(moto)
    total = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=moto.bucket, Prefix=prefix):
        total += sum(int(item["Size"]) for item in page.get("Contents", []))
    return total


def delete_prefix(moto: MotoS3, prefix: str) -> None:
    s3 = s3_client(moto)
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=moto.bucket, Prefix=prefix):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=moto.bucket, Delete={"Objects": keys, "Quiet": True})


def restore_function() -> Any:
    """Our restore engine's entry point, if it exists yet (another engineer writes it)."""
    import importlib

    for module in ("barman_cloud.restore", "barman_cloud.restore.restore"):
        try:
            found = getattr(importlib.import_module(module), "restore_backup", None)
        except ImportError:
            continue
        if found is not None:
            return found
    return None


async def _open(manifest_path: str) -> Any:
    from barman_cloud.config.manifests import load_manifests
    from barman_cloud.config.secrets import resolve

    manifests = load_manifests(Path(manifest_path))
    return await resolve(manifests.object_store(), manifests)


def usage(before: Any, after: Any, seconds: float) -> dict[str, float]:
    """What an in-process measure prints: wall seconds, CPU seconds between two getrusage, peak RSS."""
    used = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return {"seconds": seconds, "cpu": used, "peak_rss_mib": after.ru_maxrss / 1024}


def own_clock(measure: Measure, out: str) -> None:
    """Replace the process's wall time and CPU by what it measured itself (its last line, JSON)."""
    inside = json.loads(out.strip().splitlines()[-1])
    measure.seconds, measure.cpu = inside["seconds"], inside["cpu"]


def engine_main(argv: list[str]) -> None:
    """``bench/backup.py backup-ours MANIFEST SERVER CONNINFO``: our engine in a warm process.

    Imports, the store's connection pool and PostgreSQL's connection are ready before the clock
    starts, as in the instance sidecar. Prints seconds, CPU seconds and peak RSS as JSON."""
    import asyncio
    import resource

    from barman_cloud.backup import backup as engine
    from barman_cloud.backup import postgres
    from barman_cloud.format.keys import ServerLayout
    from barman_cloud.storage.factory import open_store
    from barman_cloud.storage.location import parse_destination

    manifest_path, server, conninfo = argv

    async def run() -> dict[str, float]:
        resolved = await _open(manifest_path)
        configuration = resolved.object_store.spec.configuration
        settings = engine.settings_from(configuration)
        options = engine.backup_store_options(resolved.options, configuration, settings.jobs)
        store = open_store(resolved.destination, resolved.credentials, options)
        layout = ServerLayout(parse_destination(resolved.destination).prefix, server)
        try:
            async for _ in store.list(layout.base):  # warm: client created, connections open
                break
            connection = await postgres.connect(conninfo)

            async def session() -> postgres.Connection:
                return connection

            cpu = resource.getrusage(resource.RUSAGE_SELF)
            start = time.monotonic()
            await engine.take_backup(store, layout, session, settings)
            seconds = time.monotonic() - start
            after = resource.getrusage(resource.RUSAGE_SELF)
        finally:
            await store.close()
        return usage(cpu, after, seconds)

    print(json.dumps(asyncio.run(run())))


def restore_main(argv: list[str]) -> None:
    """``bench/backup.py restore-ours MANIFEST SERVER BACKUP_ID DEST JOBS [warm]``: our restore engine.

    ``warm``: how the restore Job's sidecar runs it. When CloudNativePG calls
    RestoreJobHooks.Restore the process is running (imports done) and, by the time it restores,
    it has opened the store to choose the backup and check its first WAL: the clock starts at
    ``restore_backup`` with a client and a connection open, as for the backup engine's row.
    Prints seconds, CPU seconds and peak RSS as JSON. Without ``warm``, a cold process like
    barman-cloud-restore, timed from outside."""
    import asyncio
    import resource

    from barman_cloud.format.keys import ServerLayout
    from barman_cloud.storage.factory import open_store
    from barman_cloud.storage.location import parse_destination

    manifest_path, server, backup_id, destination, jobs, *warm = argv
    restore_backup = restore_function()

    async def run() -> dict[str, float]:
        resolved = await _open(manifest_path)
        store = open_store(resolved.destination, resolved.credentials, resolved.options)
        try:
            layout = ServerLayout(parse_destination(resolved.destination).prefix, server)
            if warm:
                async for _ in store.list(layout.base):  # client created, a connection open
                    break
            cpu = resource.getrusage(resource.RUSAGE_SELF)
            start = time.monotonic()
            await restore_backup(store, layout, backup_id, Path(destination), jobs=int(jobs))
            seconds = time.monotonic() - start
            after = resource.getrusage(resource.RUSAGE_SELF)
        finally:
            await store.close()
        return usage(cpu, after, seconds)

    print(json.dumps(asyncio.run(run())))


def directory_size(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def set_aside(tree: Path, workdir: Path) -> None:
    """Put a restored tree out of the way without deleting it (the bench's end deletes them all).

    Deleting a restored tree (a thousand files) right before the next restore made the next tool's
    file creations slow: ext4 does not reuse an inode deleted less than ~30 s earlier, and its
    allocator scans past every one of them (``recently_deleted`` in ``ext4_create`` was 20 % of a
    restore's CPU in ``perf``, and growing from run to run). Everything written is on disk
    (``sync``, which also waits for the tool that does not sync, barman) and out of the page
    cache, so each tool starts from the same state."""
    if not tree.exists():
        return
    trash = workdir / "restored"  # about 1.1 GiB per restore until the end: ~17 GiB for 5 runs
    trash.mkdir(exist_ok=True)
    aside = trash / f"{len(list(trash.iterdir()))}-{tree.name}"
    tree.rename(aside)
    os.sync()
    for directory, _, files in os.walk(aside):
        for name in files:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                fd = os.open(path, os.O_RDONLY)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.close(fd)


def touch_memory(workdir: Path, size: int) -> None:
    """Write and delete a file a bit larger than the restore, right before each timed restore.

    On this VM (virtio-balloon free page reporting, DAMON) memory freed a few seconds earlier goes
    back to the host, and the next process to fill the page cache pays a host fault per page:
    writing 900 MiB took 1.05 s of kernel CPU instead of 0.19 s. Which tool met it depended on
    the order and the timing, a noise of up to 2x on a restore; now every tool starts with page
    cache memory the guest just used."""
    block = bytes(1 << 20)
    path = workdir / "touch-memory"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(size * 5 // 4 >> 20):
            os.write(fd, block)
    finally:
        os.close(fd)
        path.unlink()


def rotated(items: list[Any], run: int) -> list[Any]:
    shift = run % len(items) if items else 0
    return items[shift:] + items[:shift]


def one_run(
    run: int,
    args: argparse.Namespace,
    workdir: Path,
    moto: MotoS3,
    server: PostgresServer,
    restores: bool,
    database_bytes: int,
) -> list[Measure]:
    aws = {**moto.env(), "PATH": "/usr/bin:/bin", "TMPDIR": str(workdir)}
    conn = ["-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", "-d", "postgres"]
    tag = 0 if args.restore_only else run  # restore-only: barman's backup of the first run, restored again
    prefixes = {"barman": f"run{tag}-barman", "cli": f"run{tag}-ours-cli", "engine": f"run{tag}-ours-engine"}
    manifests = {
        name: manifest(workdir, moto, prefix, args.compression, args.jobs)
        for name, prefix in prefixes.items()
    }
    commands = {
        "barman": ("backup barman-cloud-backup", [
            str(barman_cloud_bin("barman-cloud-backup")), "--cloud-provider", "aws-s3", "--endpoint-url",
            moto.endpoint, *BARMAN_FLAGS[args.compression], "-J", str(args.jobs), "--immediate-checkpoint",
            *(["--max-archive-size", args.max_archive_size] if args.max_archive_size else []),
            *conn, f"s3://{moto.bucket}/{prefixes['barman']}", "pg",
        ], aws),
        "cli": ("backup ours (CLI)", [
            CLI, "--log-level", "warning", "backup", "-f", str(manifests["cli"]), "--server-name", "pg", "-d",
            server.conninfo,
        ], dict(os.environ)),
        "engine": ("backup ours (engine, warm)", [
            sys.executable, __file__, "backup-ours", str(manifests["engine"]), "pg", server.conninfo,
        ], dict(os.environ)),
    }  # fmt: skip
    pid = moto.process.process.pid
    measures = []
    backups = [] if args.restore_only and run > 0 else ["barman"] if args.restore_only else list(commands)
    for name in rotated(backups, run):
        tool, command, env = commands[name]
        measure, out = timed(command, env, pid, tool)
        if name == "engine":  # the engine's own clock, CPU and peak, without the process start
            own_clock(measure, out)
        measure.size = stored_bytes(moto, prefixes[name])
        measures.append(measure)
        time.sleep(1.1)  # backup IDs have a one-second resolution
    if restores:
        listing = subprocess.run(
            [str(barman_cloud_bin("barman-cloud-backup-list")), "--cloud-provider", "aws-s3", "--endpoint-url",
             moto.endpoint, "--format", "json", f"s3://{moto.bucket}/{prefixes['barman']}", "pg"],
            env=aws, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        backup_id = json.loads(listing)["backups_list"][-1]["backup_id"]
        targets = {"barman": workdir / f"restore-{run}-barman", "ours": workdir / f"restore-{run}-ours"}
        restore_jobs = [
            ("barman", "restore barman-cloud-restore", [
                str(barman_cloud_bin("barman-cloud-restore")), "--cloud-provider", "aws-s3", "--endpoint-url",
                moto.endpoint, f"s3://{moto.bucket}/{prefixes['barman']}", "pg", backup_id, str(targets["barman"]),
            ], aws),
        ]  # fmt: skip
        if restore_function() is not None:
            targets["warm"] = workdir / f"restore-{run}-ours-warm"
            restore_jobs += [
                ("ours", "restore ours (cold process)", [
                    sys.executable, __file__, "restore-ours", str(manifests["barman"]), "pg", backup_id,
                    str(targets["ours"]), str(args.jobs)], dict(os.environ)),
                ("warm", "restore ours (engine, warm)", [
                    sys.executable, __file__, "restore-ours", str(manifests["barman"]), "pg", backup_id,
                    str(targets["warm"]), str(args.jobs), "warm"], dict(os.environ)),
            ]  # fmt: skip
        if run == 0:
            print(f"barman's backup: {archives_of(moto, prefixes['barman'])} tar archive(s)", file=sys.stderr)
        for name, tool, command, env in rotated(restore_jobs, run):
            touch_memory(workdir, database_bytes)
            measure, out = timed(command, env, pid, tool)
            if name == "warm":  # the engine's own clock and CPU, from the call (see restore_main)
                own_clock(measure, out)
            measure.size = directory_size(targets[name])
            measures.append(measure)
            print(f"  {tool}: {measure.seconds:.2f} s, {measure.cpu:.2f} CPU s", file=sys.stderr)
            set_aside(targets[name], workdir)
    if not args.restore_only or run == args.runs - 1:
        for prefix in prefixes.values():
            delete_prefix(moto, prefix)
    return measures


def archives_of(moto: MotoS3, prefix: str) -> int:
    """The tar archives (data parts and tablespaces) of the backups under ``prefix``."""
    s3 = s3_client(moto)
    return sum(
        ".tar" in item["Key"].rsplit("/", 1)[-1]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=moto.bucket, Prefix=prefix)
        for item in page.get("Contents", [])
    )


def report(runs: list[list[Measure]], args: argparse.Namespace, database_bytes: int) -> None:
    tools = list(dict.fromkeys(m.tool for run in runs for m in run))
    medians = {}
    for tool in tools:
        rows = [m for run in runs for m in run if m.tool == tool]
        medians[tool] = Measure(
            tool,
            statistics.median(m.seconds for m in rows),
            statistics.median(m.cpu for m in rows),
            max(m.peak_rss_mib for m in rows),
            statistics.median(m.moto_cpu for m in rows),
            int(statistics.median(m.size for m in rows)),
        )
    print(
        f"\nbase backup benchmark: pgbench scale {args.scale} ({database_bytes / 2**30:.2f} GiB database), "
        f"PostgreSQL 15, compression {args.compression}, jobs {args.jobs}, moto S3 on loopback, "
        f"{len(runs)} run(s), medians ({os.cpu_count()} CPUs)"
        + (f", pgbench_accounts in {args.partitions} partitions" if args.partitions else "")
        + (f", barman --max-archive-size {args.max_archive_size}" if args.max_archive_size else "")
    )
    print(
        f"{'':<32}{'seconds':>8}{'MiB/s':>7}{'CPU s':>7}{'peak RSS MiB':>13}{'moto CPU s':>11}"
        f"{'MiB stored':>11}{'speed':>8}{'CPU':>7}"
    )
    for kind in ("backup", "restore"):
        base = medians.get(f"{kind} barman-cloud-{kind}")
        for tool, m in medians.items():
            if not tool.startswith(kind) or base is None:
                continue
            speed = base.seconds / m.seconds
            cpu = m.cpu / base.cpu if base.cpu else 0.0
            print(
                f"{tool:<32}{m.seconds:>8.2f}{database_bytes / 2**20 / m.seconds:>7.0f}{m.cpu:>7.2f}"
                f"{m.peak_rss_mib:>13.0f}{m.moto_cpu:>11.2f}{m.size / 2**20:>11.0f}{speed:>7.2f}x{cpu:>6.2f}x"
            )
    if not args.no_restore and not any(tool.startswith("restore ours") for tool in medians):
        print("restore ours: not run (barman_cloud.restore.restore_backup does not exist yet)")
    print("speed: barman's time / this time (higher is faster); CPU: this CPU / barman's CPU")
    print("MiB stored / restored: bytes in the bucket (backup) or written to disk (restore)")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "restore-ours":
        restore_main(sys.argv[2:])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "backup-ours":
        engine_main(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=int, default=70, help="pgbench scale (70: about 1.1 GiB)")
    parser.add_argument("--compression", default="lz4", choices=list(BARMAN_FLAGS))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-restore", action="store_true", help="backups only")
    parser.add_argument(
        "--restore-only", action="store_true", help="barman's backup once, then restores only"
    )
    parser.add_argument("--partitions", type=int, default=0, help="pgbench_accounts partitions (multi-tar)")
    parser.add_argument(
        "--max-archive-size", help="barman-cloud-backup's --max-archive-size (e.g. 100MB): data.tar in parts"
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bcp-bench-backup-"))
    moto = MotoS3.start(workdir)
    server = PostgresServer(
        15,
        {
            "archive_command": "/bin/true",
            "max_wal_size": "4GB",
            "checkpoint_timeout": "1h",
            "shared_buffers": "256MB",
        },
    )
    try:
        print(f"loading pgbench scale {args.scale}...", file=sys.stderr)
        subprocess.run(
            [str(postgres_bindir(15) / "pgbench"), "-i", "-q", "-s", str(args.scale), "-h", "127.0.0.1",
             *(["--partitions", str(args.partitions)] if args.partitions else []),
             "-p", str(server.port), "-U", "postgres", "postgres"],
            check=True, capture_output=True,
        )  # fmt: skip
        server.query("CHECKPOINT")
        database_bytes = int(server.query("SELECT sum(pg_tablespace_size(oid)) FROM pg_tablespace")[0][0])
        runs = []
        for run in range(args.runs):
            print(f"run {run + 1}/{args.runs}...", file=sys.stderr)
            runs.append(one_run(run, args, workdir, moto, server, not args.no_restore, database_bytes))
        report(runs, args, database_bytes)
    finally:
        server.destroy()
        moto.process.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
