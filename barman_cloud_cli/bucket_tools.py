"""Tools that work straight on a bucket, configured like the plugin: by the ObjectStore a user
applies (``-f FILE``: a YAML stream with the ObjectStore and its Secrets) or read from the cluster
(``--namespace`` and ``--object-store``), plus ``--server-name``.

``wal-archive`` and ``wal-restore`` exit like barman-cloud-wal-restore (0 done, 1 not found,
2 cannot reach or authenticate to the store, 3 bad arguments or WAL name, 4 anything else), so
they can stand in ``archive_command`` / ``restore_command`` directly.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from barman_cloud import errors
from barman_cloud.config.command_args import compression_level
from barman_cloud.config.object_store import ObjectStore
from barman_cloud.config.secrets import ResolvedStore, resolve
from barman_cloud.format import compression
from barman_cloud.format.keys import ServerLayout
from barman_cloud.storage import Store
from barman_cloud.storage.factory import open_store
from barman_cloud.storage.location import parse_destination
from barman_cloud.wal.archive import ArchiveSettings, WalArchiver
from barman_cloud.wal.check import check_wal_archive
from barman_cloud.wal.prefetch import Prefetcher, spool_key
from barman_cloud.wal.restore import WalRestorer

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_UNREACHABLE = 2
EXIT_BAD_INPUT = 3
EXIT_OTHER = 4
EXIT_CORRUPT = 255
"""The object is damaged. Above 125, so that PostgreSQL aborts recovery (it treats 1-125 from
restore_command as "not archived" and would end recovery early, promoting at that segment)."""


def exit_code(error: BaseException) -> int:
    if isinstance(error, errors.Corrupt):
        return EXIT_CORRUPT
    if isinstance(error, errors.NotFound):
        return EXIT_NOT_FOUND
    if isinstance(error, errors.Unavailable | errors.Forbidden):
        return EXIT_UNREACHABLE
    if isinstance(error, errors.InvalidInput):
        return EXIT_BAD_INPUT
    return EXIT_OTHER


def add_source_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_argument_group("object store (one of)")
    source.add_argument("-f", "--file", type=Path, help="YAML with the ObjectStore and its Secrets")
    source.add_argument("--namespace", help="read the ObjectStore and Secrets from this namespace")
    source.add_argument("--object-store", help="the ObjectStore's name (required with --namespace)")
    parser.add_argument("--server-name", required=True, help="the server name in the bucket (the cluster's)")


def add_wal_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    archive = commands.add_parser("wal-archive", help="archive WAL files (usable as archive_command)")
    add_source_arguments(archive)
    archive.add_argument("wal_paths", nargs="+", type=Path, metavar="WAL_PATH")
    archive.set_defaults(tool=run_wal_archive)

    restore = commands.add_parser("wal-restore", help="restore one WAL file (usable as restore_command)")
    add_source_arguments(restore)
    restore.add_argument("wal_name", metavar="WAL_NAME")
    restore.add_argument("destination", type=Path, metavar="DEST")
    restore.add_argument(
        "--parallel", type=int, default=0, help="also fetch this many next segments into the spool"
    )
    restore.add_argument("--spool-dir", type=Path, help="prefetch spool (with --parallel)")
    restore.set_defaults(tool=run_wal_restore)

    check = commands.add_parser("check-wal-archive", help="fail if the destination already holds WAL")
    add_source_arguments(check)
    check.add_argument("--timeline", type=int, help="only WAL of this timeline or later counts")
    check.set_defaults(tool=run_check_wal_archive)


@dataclass
class Target:
    object_store: ObjectStore
    resolved: ResolvedStore
    store: Store
    layout: ServerLayout


async def open_target(args: argparse.Namespace, stack: AsyncExitStack) -> Target:
    if args.file:
        from barman_cloud.config.manifests import load_manifests

        manifests = load_manifests(args.file)
        object_store = manifests.object_store(args.object_store)
        resolved = await resolve(object_store, manifests)
    elif args.namespace and args.object_store:
        from plugin_grpc.kube import KubernetesReader

        reader = await KubernetesReader.connect()
        stack.push_async_callback(reader.close)
        object_store = await reader.get_object_store(args.namespace, args.object_store)
        resolved = await resolve(object_store, reader)
    else:
        raise errors.InvalidInput(
            "no object store given", hint="use -f FILE, or --namespace and --object-store"
        )
    store = open_store(resolved.destination, resolved.credentials, resolved.wal_options)
    stack.push_async_callback(store.close)
    layout = ServerLayout(parse_destination(resolved.destination).prefix, args.server_name)
    return Target(object_store, resolved, store, layout)


def archive_settings(object_store: ObjectStore) -> ArchiveSettings:
    configuration = object_store.spec.configuration
    codec = compression.codec_named(configuration.wal.compression)
    level = compression_level(configuration.wal.archive_additional_command_args)
    return ArchiveSettings(
        codec=codec,
        level=compression.parse_level(codec, level) if codec else None,
        tags=dict(configuration.tags),
        history_tags=dict(configuration.history_tags),
    )


async def _archive(args: argparse.Namespace, target: Target) -> int:
    archiver = WalArchiver(target.store, target.layout, archive_settings(target.object_store))
    limit = asyncio.Semaphore(target.object_store.spec.configuration.wal.max_parallel)

    async def one(path: Path) -> None:
        async with limit:
            await archiver.archive(path)

    await asyncio.gather(*(one(path) for path in args.wal_paths))
    return EXIT_OK


async def _restore(args: argparse.Namespace, target: Target) -> int:
    restorer = WalRestorer(target.store, target.layout)
    if args.parallel <= 0:
        await restorer.restore(args.wal_name, args.destination)
        return EXIT_OK
    if args.spool_dir is None:
        raise errors.InvalidInput("--parallel needs --spool-dir")
    key = spool_key(target.resolved.destination, args.server_name, target.resolved.options.endpoint_url)
    prefetcher = Prefetcher(restorer, args.spool_dir, key, depth=args.parallel)
    await prefetcher.restore(args.wal_name, args.destination)
    await prefetcher.drain()
    return EXIT_OK


async def _check(args: argparse.Namespace, target: Target) -> int:
    try:
        await check_wal_archive(target.store, target.layout, args.timeline)
    except errors.FailedPrecondition as error:
        # barman-cloud-check-wal-archive exits 1 when the archive is in use.
        print(f"barman-cloud-plugin check-wal-archive: {error}", file=sys.stderr)
        return 1
    return EXIT_OK


def run_tool(
    args: argparse.Namespace,
    body: Callable[[argparse.Namespace, Target], Awaitable[int]],
    exit_code_of: Callable[[errors.BarmanCloudError], int] = exit_code,
) -> int:
    """Open the target store, run ``body``, close everything; errors become a message and a code."""

    async def main() -> int:
        async with AsyncExitStack() as stack:
            return await body(args, await open_target(args, stack))

    try:
        return asyncio.run(main())
    except errors.BarmanCloudError as error:
        print(f"barman-cloud-plugin {args.command}: {error}", file=sys.stderr)
        return exit_code_of(error)


def run_wal_archive(args: argparse.Namespace) -> int:
    return run_tool(args, _archive)


def run_wal_restore(args: argparse.Namespace) -> int:
    return run_tool(args, _restore)


def run_check_wal_archive(args: argparse.Namespace) -> int:
    return run_tool(args, _check)
