"""Object-store throughput: our S3Store against a plain boto3 loop, on the same moto server.

    .venv/bin/python bench/storage_throughput.py [--runs 3] [--objects 64] [--object-mib 16]

Four scenarios move 1 GiB each (by default): upload and download of 64 objects of 16 MiB, and
upload and download of one 1 GiB object (multipart). Every (scenario, client) pair runs in a fresh
child process so that CPU seconds and peak RSS belong to that phase alone; the data (one random
block, repeated) is generated before the clock starts, and clients are created and warmed up (one
HEAD) before it too. Rows:

- ``ours``: S3Store with its defaults (8 parts or objects in flight, 16 MiB parts);
- ``ours x1``: S3Store one object at a time (per-request overhead against the plain loop);
- ``boto3``: a sequential put_object/get_object loop for many objects, the managed transfer
  (upload_fileobj/download_fileobj, 8 MiB parts, 10 threads) for the single object.

Both clients send checksums only where required (``when_required``, our default and barman's
documented setting for S3-compatible stores), so both sign the payload over HTTP the same way.
``speed`` is boto3's median seconds divided by ours (above 1: ours is faster). ``server CPU`` is
moto's CPU time during the phase: moto is single-process Python, and when it is the bottleneck
both clients converge on its speed.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MiB = 1024 * 1024
SCENARIOS = ("upload many", "download many", "upload one", "download one")
CLIENTS = ("ours", "ours x1", "boto3")
SOURCE = "bench/source"
# moto accepts any credentials; these are not secrets.
ACCESS_KEY, SECRET_KEY = "bench", "bench-secret"


# -- the child: one timed phase --------------------------------------------------------------------


def block_of(size: int) -> bytes:
    """The payload: random (incompressible) bytes, generated before timing starts."""
    return os.urandom(size)


class RepeatingReader(io.RawIOBase):
    """``total`` bytes made of ``block`` repeated: a file for boto3's managed upload."""

    def __init__(self, block: bytes, total: int) -> None:
        self.block = memoryview(block)
        self.total = total
        self.position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        remaining = self.total - self.position
        if remaining <= 0:
            return 0
        offset = self.position % len(self.block)
        count = min(len(buffer), remaining, len(self.block) - offset)
        buffer[:count] = self.block[offset : offset + count]
        self.position += count
        return count


class NullSink(io.RawIOBase):
    """A seekable file that counts what is written to it and keeps nothing."""

    def __init__(self) -> None:
        self.written = 0
        self.position = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.position = offset if whence == 0 else self.position + offset
        return self.position

    def tell(self) -> int:
        return self.position

    def write(self, data: Any) -> int:
        count = len(data)
        self.written += count
        self.position += count
        return count


async def run_ours(args: argparse.Namespace, sequential: bool) -> tuple[float, float, int]:
    from barman_cloud.storage import exists
    from barman_cloud.storage.factory import open_store
    from barman_cloud.storage.options import S3Credentials, StoreOptions

    store = open_store(
        "s3://backups/bench",
        S3Credentials(access_key_id=ACCESS_KEY, secret_access_key=SECRET_KEY, region="us-east-1"),
        StoreOptions(endpoint_url=args.endpoint),
    )
    block = block_of(args.object_mib * MiB)
    total = args.objects * len(block)
    concurrency = 1 if sequential else StoreOptions().max_concurrency
    slots = asyncio.Semaphore(concurrency)
    received = 0

    async def stream() -> AsyncIterator[bytes]:
        view = memoryview(block)
        for _ in range(args.objects):
            for offset in range(0, len(block), MiB):
                yield bytes(view[offset : offset + MiB])

    async def put(number: int) -> None:
        async with slots:
            await store.put(f"{args.prefix}/many/{number:03d}", block)

    async def get(key: str) -> None:
        nonlocal received
        async with slots:
            async for chunk in store.get(key):
                received += len(chunk)

    try:
        await exists(store, "bench/warm-up")  # client, connection pool, first connection
        cpu_started, started = time.process_time(), time.perf_counter()
        if args.scenario == "upload many":
            await asyncio.gather(*(put(n) for n in range(args.objects)))
        elif args.scenario == "download many":
            await asyncio.gather(*(get(f"{SOURCE}/many/{n:03d}") for n in range(args.objects)))
        elif args.scenario == "upload one":
            await store.put(f"{args.prefix}/one", stream(), size_hint=total)
        else:
            await get(f"{SOURCE}/one")
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    finally:
        await store.close()
    if args.scenario.startswith("download") and received != total:
        raise SystemExit(f"downloaded {received} bytes, expected {total}")
    return elapsed, cpu, total


def boto3_client(endpoint: str) -> Any:
    """A plain boto3 S3 client, checksums only where required (like S3Store's default)."""
    import boto3  # type: ignore[import-untyped]
    from botocore.config import Config  # type: ignore[import-untyped]

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(
            request_checksum_calculation="when_required", response_checksum_validation="when_required"
        ),
    )


def run_boto3(args: argparse.Namespace) -> tuple[float, float, int]:
    client = boto3_client(args.endpoint)
    block = block_of(args.object_mib * MiB)
    total = args.objects * len(block)
    received = 0
    client.head_bucket(Bucket="backups")  # client and first connection
    cpu_started, started = time.process_time(), time.perf_counter()
    if args.scenario == "upload many":
        for number in range(args.objects):
            client.put_object(Bucket="backups", Key=f"{args.prefix}/many/{number:03d}", Body=block)
    elif args.scenario == "download many":
        for number in range(args.objects):
            body = client.get_object(Bucket="backups", Key=f"{SOURCE}/many/{number:03d}")["Body"]
            for chunk in body.iter_chunks(MiB):
                received += len(chunk)
    elif args.scenario == "upload one":
        client.upload_fileobj(RepeatingReader(block, total), "backups", f"{args.prefix}/one")
    else:
        sink = NullSink()
        client.download_fileobj("backups", f"{SOURCE}/one", sink)
        received = sink.written
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    if args.scenario.startswith("download") and received != total:
        raise SystemExit(f"downloaded {received} bytes, expected {total}")
    return elapsed, cpu, total


def peak_rss() -> int:
    """This process's peak resident set (VmHWM; ru_maxrss would carry the parent's over exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(args: argparse.Namespace) -> None:
    if args.client == "boto3":
        elapsed, cpu, total = run_boto3(args)
    else:
        elapsed, cpu, total = asyncio.run(run_ours(args, sequential=args.client == "ours x1"))
    # CPU seconds of the timed part only (all threads); peak RSS of the whole child.
    result = {"seconds": elapsed, "bytes": total, "cpu": cpu, "peak_rss": peak_rss()}
    print(json.dumps(result))


# -- the parent: server, seeding, runs, table --------------------------------------------------------


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def seed(endpoint: str, objects: int, object_mib: int) -> None:
    """The objects the download phases read (outside any measurement)."""
    client = boto3_client(endpoint)
    block = block_of(object_mib * MiB)
    for number in range(objects):
        client.put_object(Bucket="backups", Key=f"{SOURCE}/many/{number:03d}", Body=block)
    client.upload_fileobj(RepeatingReader(block, objects * len(block)), "backups", f"{SOURCE}/one")


def clean(endpoint: str, prefix: str) -> None:
    """Drop what an upload phase wrote, so that moto's memory and disk stay flat across runs."""
    client = boto3_client(endpoint)
    listed = client.list_objects_v2(Bucket="backups", Prefix=f"{prefix}/")
    keys = [{"Key": item["Key"]} for item in listed.get("Contents", [])]
    if keys:
        client.delete_objects(Bucket="backups", Delete={"Objects": keys, "Quiet": True})


def measure(args: argparse.Namespace, moto_pid: int, scenario: str, client: str, run: int) -> dict[str, Any]:
    prefix = f"bench/up-{run}-{client.replace(' ', '')}"
    command = [
        sys.executable, __file__, "--child", "--client", client, "--scenario", scenario,
        "--endpoint", args.endpoint, "--prefix", prefix,
        "--objects", str(args.objects), "--object-mib", str(args.object_mib),
    ]  # fmt: skip
    server_before = process_cpu(moto_pid)
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    server_cpu = process_cpu(moto_pid) - server_before
    if done.returncode != 0:
        raise SystemExit(f"{client} / {scenario} failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["server_cpu"] = server_cpu
    if scenario.startswith("upload"):
        clean(args.endpoint, prefix)
    return result


def table(results: dict[tuple[str, str], list[dict[str, Any]]], runs: int) -> str:
    def median(scenario: str, client: str, field: str) -> float:
        return float(statistics.median(r[field] for r in results[(scenario, client)]))

    header = (
        f"{'scenario':<14} {'client':<8} {'seconds':>8} {'MiB/s':>8} {'speed':>6} "
        f"{'CPU s':>7} {'server CPU s':>12} {'peak RSS MiB':>12}"
    )
    lines = [f"medians of {runs} runs; speed = boto3 seconds / this row's seconds", header, "-" * len(header)]
    for scenario in SCENARIOS:
        boto_seconds = median(scenario, "boto3", "seconds")
        for client in CLIENTS:
            seconds = median(scenario, client, "seconds")
            size = results[(scenario, client)][0]["bytes"]
            lines.append(
                f"{scenario:<14} {client:<8} {seconds:>8.2f} {size / MiB / seconds:>8.1f} "
                f"{boto_seconds / seconds:>6.2f} {median(scenario, client, 'cpu'):>7.2f} "
                f"{median(scenario, client, 'server_cpu'):>12.2f} "
                f"{median(scenario, client, 'peak_rss') / MiB:>12.0f}"
            )
    return "\n".join(lines)


def parent(args: argparse.Namespace) -> None:
    from tests.harness.object_stores import MotoS3

    workdir = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    server = MotoS3.start(workdir)
    args.endpoint = server.endpoint
    try:
        total_mib = args.objects * args.object_mib
        print(f"moto at {server.endpoint}; {args.objects} x {args.object_mib} MiB and 1 x {total_mib} MiB")
        seed(args.endpoint, args.objects, args.object_mib)
        results: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for run in range(args.runs):
            # Alternate the order of the clients between runs: no one always goes first.
            order: tuple[str, ...] = CLIENTS if run % 2 == 0 else tuple(reversed(CLIENTS))
            for scenario in SCENARIOS:
                for client in order:
                    result = measure(args, server.process.process.pid, scenario, client, run)
                    results.setdefault((scenario, client), []).append(result)
                    print(
                        f"run {run + 1}/{args.runs} {scenario:<14} {client:<8} {result['seconds']:7.2f} s",
                        flush=True,
                    )
        print()
        print(table(results, args.runs))
    finally:
        server.process.stop()
        for path in sorted(workdir.rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        workdir.rmdir()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--objects", type=int, default=64)
    parser.add_argument("--object-mib", type=int, default=16)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--scenario", choices=SCENARIOS, help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    args = parser.parse_args()
    (child if args.child else parent)(args)


if __name__ == "__main__":
    main()
