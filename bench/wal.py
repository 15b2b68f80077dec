"""WAL archive and restore, side by side with barman-cloud on the same moto server.

    .venv/bin/python bench/wal.py [--segments 48] [--compression lz4] [--compression-level low]
                                  [--runs 3] [--methods abc] [--profile DIR]

A real PostgreSQL (15) builds a backlog of real 16 MiB segments while its archive_command fails;
then archive_command is switched and the time until PostgreSQL has archived the whole backlog is
measured, for:
  (a) barman-cloud-wal-archive, one process per segment (the in-tree way, barman 3.19);
  (b) the upstream plugin's batch scheme: the asked segment plus 3 .ready ones, one barman process
      each, wait for all, spool markers for the extras (bench/upstream_batch_archive.sh);
  (c) ours: CloudNativePG's instance-manager call sequence (plugin_grpc/cnpg_manager.py run as
      ``python -I -S``, a light client standing in for the Go binary) to our long-lived sidecar,
      which archives ahead.
Then every segment is restored serially, the way PostgreSQL's restore_command asks, by (a)
barman-cloud-wal-restore and (c) ours with prefetch. Every command runs under /usr/bin/time, which
gives each invocation's CPU seconds and peak RSS; the sidecar's own CPU and peak RSS come from
/proc. CPU per segment is reported for the client (what archive_command / restore_command runs:
barman's processes, or our stand-in for CloudNativePG's instance manager), for the sidecar alone,
and in total. Run on a quiet machine; compare ratios, not absolute numbers.

``--profile DIR`` records the sidecar with py-spy during each of our drains and restores
(collapsed stacks, ``DIR/<phase>-run<N>.txt``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from plugin_grpc.cnpg_manager import COMMAND as MANAGER_COMMAND  # noqa: E402
from tests.harness.object_stores import MotoS3  # noqa: E402
from tests.harness.postgres import PostgresServer, as_postgres, owned_by_postgres_tempdir  # noqa: E402
from tests.harness.processes import ManagedProcess  # noqa: E402
from tests.harness.tools import barman_cloud_bin  # noqa: E402

CLI = str(Path(sys.executable).with_name("barman-cloud-plugin"))
MANAGER = " ".join(MANAGER_COMMAND)
PY_SPY = str(Path(sys.executable).with_name("py-spy"))
TIME = "/usr/bin/time"


@dataclass
class Result:
    method: str
    segments: int
    seconds: float
    client_cpu: float
    """CPU seconds of every archive_command / restore_command process."""
    peak_rss_mib: float
    sidecar_cpu: float = 0.0
    """CPU seconds of our sidecar during the phase (0 for barman)."""
    server_cpu: float = 0.0
    """CPU seconds of the moto server during the phase."""

    @property
    def rate(self) -> float:
        return self.segments / self.seconds

    @property
    def cpu(self) -> float:
        return self.client_cpu + self.sidecar_cpu


class Profile:
    """py-spy recording a process until stopped (collapsed stacks); does nothing without a path."""

    def __init__(self, pid: int, output: Path | None) -> None:
        self.process = None
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)
            self.process = subprocess.Popen(
                [PY_SPY, "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "--threads",
                 "--output", str(output)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(0.5)  # attached before the measured part starts

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(2)  # SIGINT: py-spy writes its output and exits
            self.process.wait(timeout=60)


def timed(command: str, log: Path) -> str:
    """``command`` under /usr/bin/time, appending "user sys maxrss_kib" per run to ``log``."""
    return f'{TIME} -a -o {log} -f "%U %S %M" {command}'


def read_time_log(log: Path) -> tuple[float, float, int]:
    cpu, peak, runs = 0.0, 0.0, 0
    for line in log.read_text().splitlines() if log.exists() else []:
        parts = line.split()
        if len(parts) == 3 and all(p.replace(".", "").isdigit() for p in parts):
            cpu += float(parts[0]) + float(parts[1])
            peak = max(peak, int(parts[2]) / 1024)
            runs += 1
    return cpu, peak, runs


def proc_cpu_and_peak(pid: int) -> tuple[float, float]:
    ticks = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    peak = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    return cpu, peak


def python_child(pid: int) -> int:
    """The sidecar's Python process (ManagedProcess started runuser, which forks it)."""
    for _ in range(100):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.05)
    return pid


def manifest(
    workdir: Path, moto: MotoS3, prefix: str, compression: str, max_parallel: int, level: str | None
) -> Path:
    extra = f", archiveAdditionalCommandArgs: ['--compression-level={level}']" if level else ""
    path = workdir / f"store-{prefix}.yaml"
    path.write_text(
        moto.manifest(
            prefix, name="bench", wal=f"compression: {compression}, maxParallel: {max_parallel}{extra}"
        )
    )
    return path


class Sidecar:
    def __init__(self, workdir: Path, store: Path, name: str) -> None:
        self.socket = workdir / f"plugins-{name}" / "barman-cloud.cloudnative-pg.io"
        command = [CLI, "--log-level", "warning", "instance", "--socket", str(self.socket), "-f", str(store),
                   "--server-name", "pg", "--spool-dir", str(workdir / f"spool-{name}")]  # fmt: skip
        self.process = ManagedProcess("sidecar", as_postgres(command), workdir / f"sidecar-{name}.log")
        health = [CLI, "healthcheck", "unix", "--socket", str(self.socket)]
        self.process.wait_until(lambda: subprocess.run(health, capture_output=True).returncode == 0)
        self.pid = python_child(self.process.process.pid)


def build_backlog(segments: int) -> tuple[PostgresServer, list[str]]:
    server = PostgresServer(
        15,
        {
            "archive_command": "/bin/false",
            "max_wal_size": "8GB",
            "checkpoint_timeout": "1h",
            "wal_keep_size": "0",
        },
    )
    server.query("CREATE TABLE filler (payload text)")
    while True:
        ready = sorted(p.name[:-6] for p in (server.pg_wal / "archive_status").glob("*.ready"))
        if len(ready) >= segments:
            return server, ready
        server.query(
            "INSERT INTO filler SELECT repeat(md5(random()::text), 30) FROM generate_series(1, 12000)"
        )
        server.query("SELECT pg_switch_wal()")


def drain(server: PostgresServer, command: str, last: str) -> float:
    server.query("SELECT pg_stat_reset_shared('archiver')")
    start = time.monotonic()
    server.set(archive_command=command)
    while True:
        done, failed = server.query(
            "SELECT last_archived_wal >= %s, failed_count FROM pg_stat_archiver", [last]
        )[0]
        if done:
            return time.monotonic() - start
        if failed and failed > 20:
            raise RuntimeError(
                f"archive_command keeps failing: {command}\n{(server.log_path).read_text()[-3000:]}"
            )
        time.sleep(0.05)


def archive_methods(
    workdir: Path,
    moto: MotoS3,
    segments: int,
    compression: str,
    level: str | None,
    run: int,
    methods: str = "abc",
    profile: Path | None = None,
) -> list[Result]:
    barman = barman_cloud_bin("barman-cloud-wal-archive").parent
    env = " ".join(f"{k}={v}" for k, v in moto.env().items())
    flags = f"--cloud-provider aws-s3 --endpoint-url {moto.endpoint} --{compression}"
    if level:
        flags += f" --compression-level {level}"
    results = []
    for method in methods:
        prefix = f"run{run}-{method}"
        log = workdir / f"time-{prefix}.log"
        sidecar = None
        if method == "a":
            command = timed(
                f"env {env} {barman}/barman-cloud-wal-archive {flags} s3://{moto.bucket}/{prefix} pg %p", log
            )
        elif method == "b":
            spool = workdir / f"upstream-spool-{prefix}"
            spool.mkdir()
            shutil.chown(spool, "postgres")
            batch_env = (f"env {env} BARMAN_BIN={barman} SPOOL={spool} MAX_PARALLEL=4 "
                         f"DESTINATION=s3://{moto.bucket}/{prefix} SERVER=pg BARMAN_ARGS='{flags}'")  # fmt: skip
            command = timed(f"{batch_env} {ROOT / 'bench/upstream_batch_archive.sh'} %p", log)
        else:
            sidecar = Sidecar(workdir, manifest(workdir, moto, prefix, compression, 4, level), prefix)
            command = timed(f"{MANAGER} --socket {sidecar.socket} wal-archive %p", log)
        server, ready = build_backlog(segments)
        sidecar_cpu = 0.0
        try:
            recording = (
                Profile(sidecar.pid, profile and profile / f"archive-run{run}.txt") if sidecar else None
            )
            before = proc_cpu_and_peak(sidecar.pid)[0] if sidecar else 0.0
            moto_before = proc_cpu_and_peak(moto.process.process.pid)[0]
            seconds = drain(server, command, ready[-1])
            server_cpu = proc_cpu_and_peak(moto.process.process.pid)[0] - moto_before
            cpu, peak, _ = read_time_log(log)
            if sidecar:
                after, sidecar_peak = proc_cpu_and_peak(sidecar.pid)
                sidecar_cpu = after - before
                peak = max(peak, sidecar_peak)
            if recording:
                recording.stop()
        finally:
            server.destroy()
            if sidecar:
                sidecar.process.stop()
        label = {"a": "barman-cloud-wal-archive", "b": "upstream batch (4)", "c": "ours (archive-ahead)"}[
            method
        ]
        results.append(Result(label, len(ready), seconds, cpu, peak, sidecar_cpu, server_cpu))
    return results


def restore_methods(
    workdir: Path,
    moto: MotoS3,
    names: list[str],
    compression: str,
    run: int,
    prefix: str,
    profile: Path | None = None,
    with_barman: bool = True,
) -> list[Result]:
    barman = barman_cloud_bin("barman-cloud-wal-restore").parent
    target = workdir / "restored"
    results = []
    env = {**moto.env(), "PATH": "/usr/bin:/bin"}
    log = workdir / f"time-restore-barman-{run}.log"
    moto_before = proc_cpu_and_peak(moto.process.process.pid)[0]
    start = time.monotonic()
    for name in names if with_barman else []:
        subprocess.run(
            [TIME, "-a", "-o", str(log), "-f", "%U %S %M", f"{barman}/barman-cloud-wal-restore", "--cloud-provider",
             "aws-s3", "--endpoint-url", moto.endpoint, f"s3://{moto.bucket}/{prefix}", "pg", name, str(target)],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
    cpu, peak, _ = read_time_log(log)
    if with_barman:
        server_cpu = proc_cpu_and_peak(moto.process.process.pid)[0] - moto_before
        results.append(
            Result(
                "barman-cloud-wal-restore", len(names), time.monotonic() - start, cpu, peak, 0.0, server_cpu
            )
        )

    sidecar = Sidecar(workdir, manifest(workdir, moto, prefix, compression, 8, None), f"restore-{run}")
    log = workdir / f"time-restore-ours-{run}.log"
    try:
        recording = Profile(sidecar.pid, profile and profile / f"restore-run{run}.txt")
        before = proc_cpu_and_peak(sidecar.pid)[0]
        moto_before = proc_cpu_and_peak(moto.process.process.pid)[0]
        start = time.monotonic()
        for name in names:
            subprocess.run(
                as_postgres([TIME, "-a", "-o", str(log), "-f", "%U %S %M", *MANAGER_COMMAND,
                             "--socket", str(sidecar.socket), "wal-restore", name, str(target)]),
                check=True, capture_output=True,
            )  # fmt: skip
        seconds = time.monotonic() - start
        server_cpu = proc_cpu_and_peak(moto.process.process.pid)[0] - moto_before
        cpu, peak, _ = read_time_log(log)
        sidecar_cpu, sidecar_peak = proc_cpu_and_peak(sidecar.pid)
        recording.stop()
    finally:
        sidecar.process.stop()
    results.append(
        Result(
            "ours (prefetch)",
            len(names),
            seconds,
            cpu,
            max(peak, sidecar_peak),
            sidecar_cpu - before,
            server_cpu,
        )
    )
    return results


def report(title: str, runs: list[list[Result]], baseline: str) -> None:
    """Medians over the runs; the speed ratio is taken within each run, then its median."""
    print(f"\n{title}")
    print(
        f"{'method':<28}{'segments/s':>11}{'CPU s/seg':>10}{'client':>8}{'sidecar':>8}"
        f"{'peak RSS MiB':>13}{'moto CPU/seg':>13}{'vs ' + baseline:>30}"
    )
    methods = [r.method for r in runs[0]]
    for method in methods:
        rows = [r for run in runs for r in run if r.method == method]
        ratios = [
            r.rate / b.rate
            for run in runs
            for r in run
            for b in run
            if r.method == method and b.method == baseline
        ]
        ratio = f"{statistics.median(ratios):.1f}x" if ratios else "-"
        print(
            f"{method:<28}{statistics.median(r.rate for r in rows):>11.2f}"
            f"{statistics.median(r.cpu / r.segments for r in rows):>10.3f}"
            f"{statistics.median(r.client_cpu / r.segments for r in rows):>8.3f}"
            f"{statistics.median(r.sidecar_cpu / r.segments for r in rows):>8.3f}"
            f"{max(r.peak_rss_mib for r in rows):>13.0f}"
            f"{statistics.median(r.server_cpu / r.segments for r in rows):>13.3f}{ratio:>30}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--segments", type=int, default=48)
    parser.add_argument(
        "--compression", default="lz4", choices=["gzip", "bzip2", "lz4", "zstd", "snappy", "xz"]
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--compression-level", help="for both sides, e.g. low (barman's default otherwise)")
    parser.add_argument(
        "--methods", default="abc", help="archive methods to run (a: barman, b: batch, c: ours)"
    )
    parser.add_argument("--no-restore", action="store_true")
    parser.add_argument("--profile", type=Path, help="py-spy the sidecar, collapsed stacks in this directory")
    args = parser.parse_args()
    workdir = owned_by_postgres_tempdir("bcp-bench-wal-")
    services = Path(tempfile.mkdtemp(prefix="bcp-bench-services-"))
    moto = MotoS3.start(services)
    try:
        archive_runs, restore_runs = [], []
        for run in range(args.runs):
            archive_runs.append(
                archive_methods(workdir, moto, args.segments, args.compression, args.compression_level, run,
                                args.methods, args.profile)
            )  # fmt: skip
            if not args.no_restore:
                # barman's own archive when it ran (both read the same objects), else ours
                prefix = f"run{run}-{'a' if 'a' in args.methods else args.methods[-1]}"
                names = _archived_names(moto, prefix)
                restore_runs.append(
                    restore_methods(
                        workdir, moto, names, args.compression, run, prefix, args.profile, "a" in args.methods
                    )
                )
        print(
            f"\nWAL benchmark: {args.segments} segments of 16 MiB from PostgreSQL 15, --{args.compression}, moto S3"
        )
        print("CPU s per segment: total = client (archive/restore_command processes) + our sidecar")
        report(
            "archive: PostgreSQL's archive_command drains the backlog",
            archive_runs,
            "barman-cloud-wal-archive",
        )
        if restore_runs:
            report(
                "restore: restore_command, one segment after the other",
                restore_runs,
                "barman-cloud-wal-restore",
            )
    finally:
        moto.process.stop()
        shutil.rmtree(services, ignore_errors=True)
        subprocess.run(["rm", "-rf", str(workdir)], check=False)


def _archived_names(moto: MotoS3, prefix: str) -> list[str]:
    import boto3

    s3 = boto3.client(
        "s3", endpoint_url=moto.endpoint, aws_access_key_id=moto.access_key,
        aws_secret_access_key=moto.secret_key, region_name=moto.region,
    )  # fmt: skip
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=moto.bucket, Prefix=f"{prefix}/pg/wals/"):
        keys += [item["Key"].rsplit("/", 1)[-1].split(".")[0] for item in page.get("Contents", [])]
    return sorted(k for k in keys if len(k) == 24)


if __name__ == "__main__":
    main()
