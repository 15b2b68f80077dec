"""End to end: real PostgreSQL -> the CNPG-I client -> our sidecar, against barman-cloud.

    .venv/bin/python bench/e2e.py [--segments 48] [--runs 1] [--compression lz4] [--compression-level low]
                                  [--pushed 100] [--cold 40] [--rss-segments 2000] [--rss-segment-mib 1]
                                  [--skip drain,latency,rss]

One moto S3 server for everything (tests/harness), our sidecar as ``barman-cloud-plugin instance``
with a local ObjectStore manifest (maxParallel 4).

(a) drain: PostgreSQL 15 builds a backlog of real 16 MiB segments while archive_command fails,
    then archive_command is switched and the time to archive the whole backlog is measured, for
    barman-cloud-wal-archive and for ours (CloudNativePG's instance-manager call sequence,
    plugin_grpc/cnpg_manager.py, to the sidecar). The same code as bench/wal.py (imported).
(b) latency: ``WAL.Archive`` from a warm client (one grpclib channel kept open, CloudNativePG's
    handshake done once, as plugin_grpc.cnpg_caller does it), per call, p50 and p99:
    - pushed ahead: every segment is ``.ready`` in a pg_wal directory, the first call starts the
      archive-ahead queue, and the calls are timed once the sidecar has pushed all of them (what
      PostgreSQL waits for during a backlog);
    - cold: only the requested segment is ``.ready``, nothing is pushed ahead: the call reads,
      compresses and uploads it (one LIST for the duplicate check, one PUT); the file is in the
      page cache, as a segment PostgreSQL has just written is;
    next to a warm in-process boto3 PutObject (client created and used once before timing) of
    the same segment raw, and of its compressed form (compression timed in, same codec and level:
    the work a cold call does, minus the sidecar).
    Segments: real 16 MiB segments from PostgreSQL (a backlog of --latency-sources of them), hard
    linked under as many names as the measurement needs (same bytes, distinct keys).
(c) RSS: a fresh sidecar archives --rss-segments generated segments of --rss-segment-mib MiB
    (1 MiB slices of the real segments, so they compress like WAL), fed through WAL.Archive by the
    warm client with 16 segments ``.ready`` ahead (archive-ahead on), each file removed once
    archived as PostgreSQL recycles it. The sidecar's VmRSS after 200 and after all, and its VmHWM.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import wal as walbench  # noqa: E402
from grpclib.client import Channel  # noqa: E402

from barman_cloud.format import compression  # noqa: E402
from barman_cloud.wal.prefetch import spool_key  # noqa: E402
from plugin_grpc.cnpg_caller import handshake  # noqa: E402
from plugin_grpc.proto import wal_grpc, wal_pb2  # noqa: E402
from tests.harness.object_stores import MotoS3  # noqa: E402
from tests.harness.postgres import owned_by_postgres_tempdir  # noqa: E402


def segment_name(timeline: int, number: int, segment_mib: int = 16) -> str:
    per_log = 4096 // segment_mib
    return f"{timeline:08X}{number // per_log:08X}{number % per_log:08X}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def rss_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


class PgWal:
    """A pg_wal directory the sidecar (user postgres) reads, with PostgreSQL's archive_status."""

    def __init__(self, root: Path) -> None:
        self.path = root / "pgdata" / "pg_wal"
        (self.path / "archive_status").mkdir(parents=True)
        for directory in (root / "pgdata", self.path, self.path / "archive_status"):
            shutil.chown(directory, "postgres")

    def ready(self, name: str) -> None:
        (self.path / "archive_status" / f"{name}.ready").touch()

    def done(self, name: str) -> None:
        (self.path / "archive_status" / f"{name}.ready").rename(self.path / "archive_status" / f"{name}.done")


class WarmClient:
    """One grpclib channel on the sidecar's socket, handshake done once (CloudNativePG's order)."""

    def __init__(self, socket: Path) -> None:
        self.channel = Channel(path=str(socket))
        self.stub = wal_grpc.WALStub(self.channel)

    async def start(self) -> None:
        await handshake(self.channel)

    async def archive(self, path: Path) -> float:
        started = time.perf_counter()
        await self.stub.Archive(
            wal_pb2.WALArchiveRequest(cluster_definition=b"{}", source_file_name=str(path))
        )
        return time.perf_counter() - started

    def close(self) -> None:
        self.channel.close()


# -- (a) --------------------------------------------------------------------------------------


def drain(args: argparse.Namespace, workdir: Path, moto: MotoS3) -> list[list[walbench.Result]]:
    runs = []
    for run in range(args.runs):
        runs.append(
            walbench.archive_methods(
                workdir, moto, args.segments, args.compression, args.compression_level, run, "ac"
            )
        )
    return runs


# -- (b) --------------------------------------------------------------------------------------


def real_segments(count: int, into: Path) -> list[Path]:
    server, ready = walbench.build_backlog(count)
    try:
        into.mkdir(parents=True, exist_ok=True)
        paths = []
        for name in ready[:count]:
            shutil.copy(server.pg_wal / name, into / name)
            paths.append(into / name)
        return paths
    finally:
        server.destroy()


async def latency(
    args: argparse.Namespace, workdir: Path, moto: MotoS3, sources: list[Path]
) -> dict[str, list[float]]:
    prefix = "latency"
    store = walbench.manifest(workdir, moto, prefix, args.compression, 4, args.compression_level)
    sidecar = walbench.Sidecar(workdir, store, prefix)
    pg_wal = PgWal(workdir / "latency-pgdata")
    client = WarmClient(sidecar.socket)
    samples: dict[str, list[float]] = {}
    try:
        await client.start()
        # Pushed ahead: timeline 1, every segment .ready before the first call.
        names = [segment_name(1, n + 1) for n in range(args.pushed + 1)]
        for index, name in enumerate(names):
            os.link(sources[index % len(sources)], pg_wal.path / name)
            pg_wal.ready(name)
        await client.archive(pg_wal.path / names[0])  # starts the queue
        pg_wal.done(names[0])
        markers = workdir / f"spool-{prefix}" / spool_key(f"s3://{moto.bucket}/{prefix}", "pg") / "archived"
        deadline = time.monotonic() + 600
        while len(list(markers.glob("0*"))) < len(names) - 1:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the sidecar pushed only {len(list(markers.glob('0*')))} segments ahead")
            await asyncio.sleep(0.2)
        pushed = []
        for name in names[1:]:
            pushed.append(await client.archive(pg_wal.path / name))
            pg_wal.done(name)
            (pg_wal.path / name).unlink()
        samples["pushed ahead"] = pushed
        # Cold: timeline 2, only the requested segment is .ready.
        cold = []
        for number in range(args.cold):
            name = segment_name(2, number + 1)
            os.link(sources[number % len(sources)], pg_wal.path / name)
            (pg_wal.path / name).read_bytes()  # in the page cache, as a segment PostgreSQL just wrote
            pg_wal.ready(name)
            cold.append(await client.archive(pg_wal.path / name))
            pg_wal.done(name)
            (pg_wal.path / name).unlink()
        samples["cold"] = cold
    finally:
        client.close()
        sidecar.process.stop()
    samples.update(put_object(args, moto, sources))
    return samples


def put_object(args: argparse.Namespace, moto: MotoS3, sources: list[Path]) -> dict[str, list[float]]:
    import boto3

    s3 = boto3.client(
        "s3", endpoint_url=moto.endpoint, aws_access_key_id=moto.access_key,
        aws_secret_access_key=moto.secret_key, region_name=moto.region,
    )  # fmt: skip
    codec = compression.codec_named(args.compression)
    level = compression.parse_level(codec, args.compression_level) if codec else None
    s3.put_object(Bucket=moto.bucket, Key="putobject/warm-up", Body=sources[0].read_bytes())
    raw, compressed = [], []
    for number in range(args.cold):
        data = sources[number % len(sources)].read_bytes()
        started = time.perf_counter()
        s3.put_object(Bucket=moto.bucket, Key=f"putobject/raw/{number}", Body=data)
        raw.append(time.perf_counter() - started)
        started = time.perf_counter()
        body = codec.compress(data, level) if codec else data
        s3.put_object(Bucket=moto.bucket, Key=f"putobject/compressed/{number}", Body=body)
        compressed.append(time.perf_counter() - started)
    return {"boto3 PutObject, raw segment": raw, f"boto3 {args.compression} + PutObject": compressed}


# -- (c) --------------------------------------------------------------------------------------


async def rss(args: argparse.Namespace, workdir: Path, moto: MotoS3, sources: list[Path]) -> dict[str, float]:
    prefix = "rss"
    store = walbench.manifest(workdir, moto, prefix, args.compression, 4, args.compression_level)
    sidecar = walbench.Sidecar(workdir, store, prefix)
    pg_wal = PgWal(workdir / "rss-pgdata")
    size = args.rss_segment_mib * 1024 * 1024
    slices = [
        data[offset : offset + size]
        for data in (path.read_bytes() for path in sources)
        for offset in range(0, len(data) - size + 1, size)
    ]
    client = WarmClient(sidecar.socket)
    window = 16
    names = [segment_name(1, n + 1, args.rss_segment_mib) for n in range(args.rss_segments)]

    def produce(index: int) -> None:
        if index < len(names):
            path = pg_wal.path / names[index]
            path.write_bytes(slices[index % len(slices)])
            path.chmod(0o644)
            pg_wal.ready(names[index])

    result: dict[str, float] = {"start": rss_mib(sidecar.pid)[0]}
    try:
        await client.start()
        for index in range(window):
            produce(index)
        started = time.monotonic()
        cpu_before = walbench.proc_cpu_and_peak(sidecar.pid)[0]
        for index, name in enumerate(names):
            await client.archive(pg_wal.path / name)
            pg_wal.done(name)
            (pg_wal.path / name).unlink()
            produce(index + window)
            if index + 1 in (200, len(names)) or (index + 1) % 1000 == 0:
                result[f"after {index + 1}"] = rss_mib(sidecar.pid)[0]
        result["seconds"] = time.monotonic() - started
        result["cpu per segment"] = (walbench.proc_cpu_and_peak(sidecar.pid)[0] - cpu_before) / len(names)
        result["peak (VmHWM)"] = rss_mib(sidecar.pid)[1]
    finally:
        client.close()
        sidecar.process.stop()
    return result


# -- report -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--segments", type=int, default=48)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument(
        "--compression", default="lz4", choices=["gzip", "bzip2", "lz4", "zstd", "snappy", "xz"]
    )
    parser.add_argument("--compression-level", help="e.g. low (barman's default otherwise)")
    parser.add_argument(
        "--latency-sources", type=int, default=8, help="real segments to build (b) and (c) from"
    )
    parser.add_argument("--pushed", type=int, default=100)
    parser.add_argument("--cold", type=int, default=40)
    parser.add_argument("--rss-segments", type=int, default=2000)
    parser.add_argument("--rss-segment-mib", type=int, default=1, choices=[1, 2, 4, 8, 16])
    parser.add_argument("--skip", default="", help="comma-separated: drain, latency, rss")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    workdir = owned_by_postgres_tempdir("bcp-bench-e2e-")
    services = Path(tempfile.mkdtemp(prefix="bcp-bench-services-"))
    moto = MotoS3.start(services)
    try:
        level = args.compression_level or "barman's default"
        print(f"\nend-to-end benchmark: --{args.compression}, level {level}, moto S3, sidecar maxParallel 4")
        if "drain" not in skip:
            runs = drain(args, workdir, moto)
            print("CPU s per segment: total = client (archive_command processes) + our sidecar")
            walbench.report(
                f"(a) drain: PostgreSQL's archive_command clears a backlog of {args.segments} x 16 MiB "
                f"(median of {args.runs})",
                runs,
                "barman-cloud-wal-archive",
            )
        sources: list[Path] = []
        if not {"latency", "rss"} <= skip:
            sources = real_segments(args.latency_sources, workdir / "sources")
            for path in sources:
                path.chmod(0o644)
        if "latency" not in skip:
            samples = asyncio.run(latency(args, workdir, moto, sources))
            reference = statistics.median(samples[f"boto3 {args.compression} + PutObject"])
            print("\n(b) WAL.Archive latency from a warm client, 16 MiB segments (ms)")
            print(f"{'call':<32}{'n':>5}{'p50':>9}{'p99':>9}{'max':>9}{'p50 / compress+PutObject':>27}")
            for what, values in samples.items():
                ms = [v * 1000 for v in values]
                print(
                    f"{what:<32}{len(ms):>5}{statistics.median(ms):>9.1f}{percentile(ms, 0.99):>9.1f}"
                    f"{max(ms):>9.1f}{statistics.median(values) / reference:>26.2f}x"
                )
        if "rss" not in skip:
            result = asyncio.run(rss(args, workdir, moto, sources))
            print(
                f"\n(c) sidecar memory while archiving {args.rss_segments} segments of {args.rss_segment_mib} MiB "
                f"through WAL.Archive ({args.rss_segments / result['seconds']:.1f} segments/s, "
                f"{result['cpu per segment'] * 1000:.1f} ms CPU per segment)"
            )
            for key in [k for k in result if k.startswith(("start", "after", "peak"))]:
                print(f"{'RSS ' + key:<24}{result[key]:>8.1f} MiB")
    finally:
        moto.process.stop()
        shutil.rmtree(services, ignore_errors=True)
        subprocess.run(["rm", "-rf", str(workdir)], check=False)


if __name__ == "__main__":
    main()
