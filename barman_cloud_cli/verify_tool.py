"""``verify``: re-read backups and the WAL they need from a bucket and report every missing or
damaged object (:mod:`barman_cloud.verify.engine`). Configured like the other bucket tools
(``-f FILE`` or ``--namespace`` and ``--object-store``, plus ``--server-name``).

Exit codes: 0 every object checked is there and intact; 1 a problem was found (missing or corrupt
object, WAL gap, WAL of another cluster, unusable backup), or the backup asked for does not exist;
2 the store cannot be reached or refused the credentials; 3 bad arguments; 4 anything else.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

from barman_cloud_cli.bucket_tools import Target, add_source_arguments, exit_code, run_tool

EXIT_PROBLEMS = 1


def add_verify_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    verify = commands.add_parser(
        "verify",
        help="re-read backups and their WAL from the bucket; report missing or corrupt objects",
        description="Read a backup's archives through to their end and the WAL from its begin to its "
        "end WAL (with --to-latest: to the end of the archive, across timeline switches), checking "
        "checksums, decompression, tar structure and WAL page headers. Exit 0: all good; 1: a "
        "problem was found; 2: the store cannot be reached; 3: bad arguments; 4: anything else.",
    )
    add_source_arguments(verify)
    which = verify.add_mutually_exclusive_group(required=True)
    which.add_argument("backup_id", nargs="?", metavar="BACKUP_ID", help="a backup ID, a name, or latest")
    which.add_argument("--all", action="store_true", help="every completed backup of the server")
    verify.add_argument(
        "--to-latest",
        action="store_true",
        help="also the WAL after each backup, to the end of the archive (following .history files)",
    )
    verify.add_argument("--format", choices=["console", "json"], default="console")
    verify.add_argument("-j", "--jobs", type=int, default=4, help="objects read in parallel (default 4)")
    verify.set_defaults(tool=run_verify)


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def render_console(report: Any) -> str:
    lines = []
    for backup in report.backups:
        head = f"backup {backup.backup_id}"
        if backup.status is None:
            lines.append(f"{head}: unreadable")
            continue
        lines.append(
            f"{head} ({backup.status}, timeline {backup.timeline}, system {backup.system_id}): "
            f"{backup.archives} archives ({_size(backup.archive_bytes)}, {backup.tar_members} tar members, "
            f"{backup.checksummed_archives} with our checksum); "
            f"WAL {backup.begin_wal} to {backup.end_wal}: {backup.wal_segments} segments read"
        )
    for chain in report.chains:
        timelines = " -> ".join(str(t) for t in chain.timelines)
        span = f"{chain.first_wal} to {chain.last_wal}" if chain.last_wal else "nothing archived yet"
        lines.append(
            f"WAL after backup {chain.backup_id} (timelines {timelines}): {span}, "
            f"{chain.segments} segments read"
        )
    lines.append(f"{report.objects_read} objects read, {_size(report.bytes_read)}")
    problems = report.problems
    if not problems:
        lines.append("OK: nothing missing, nothing corrupt")
        return "\n".join(lines)
    lines.append(f"PROBLEMS ({len(problems)}):")
    for problem in problems:
        lines.append(f"  [{problem.kind}] {problem.subject}: {problem.message}")
    return "\n".join(lines)


def render_json(report: Any) -> str:
    document = {
        "server": report.server,
        "ok": report.ok,
        "objects_read": report.objects_read,
        "bytes_read": report.bytes_read,
        "backups": [{**asdict(b), "ok": b.ok} for b in report.backups],
        "wal_after_backups": [asdict(c) for c in report.chains],
        "problems": [asdict(p) for p in report.problems],
    }
    return json.dumps(document, indent=2)


async def _verify(args: argparse.Namespace, target: Target) -> int:
    from barman_cloud.errors import InvalidInput
    from barman_cloud.verify.engine import verify

    if args.jobs < 1:
        raise InvalidInput("--jobs must be at least 1")
    report = await verify(
        target.store,
        target.layout,
        args.backup_id,
        all_backups=args.all,
        to_latest=args.to_latest,
        jobs=args.jobs,
    )
    print(render_json(report) if args.format == "json" else render_console(report))
    if not report.ok:
        print(
            f"barman-cloud-plugin verify: {len(report.problems)} problem(s) found in the backups of "
            f"{target.layout.server}",
            file=sys.stderr,
        )
        return EXIT_PROBLEMS
    return 0


def _exit_code(error: BaseException) -> int:
    from barman_cloud.errors import Corrupt

    return EXIT_PROBLEMS if isinstance(error, Corrupt) else exit_code(error)


def run_verify(args: argparse.Namespace) -> int:
    return run_tool(args, _verify, _exit_code)
