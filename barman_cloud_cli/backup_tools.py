"""``barman-cloud-plugin backup``: take an online base backup of a running PostgreSQL into a bucket.

Configured like the other bucket tools: the ObjectStore (``-f FILE`` with its Secrets, or
``--namespace``/``--object-store``) gives the destination, credentials, ``data.compression``,
``data.jobs``, ``data.immediateCheckpoint``, ``data.encryption`` and ``tags``; ``--server-name`` the
server's folder. PostgreSQL is reached through libpq's environment (``PGHOST``, ``PGPORT``,
``PGUSER``, ``PGPASSWORD``...) and ``-d CONNINFO``, which wins.

Prints the backup ID on stdout. Exit status: 0 done; 1 the backup failed (its backup.info says
FAILED when it had started); 2 the store or PostgreSQL cannot be reached or refused the
credentials; 3 bad arguments or configuration. SIGTERM and Ctrl-C fail the backup cleanly (backup
mode ended on the server, uploads aborted, FAILED recorded).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from contextlib import AsyncExitStack

from barman_cloud import errors

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNREACHABLE = 2
EXIT_BAD_INPUT = 3


def add_backup_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from barman_cloud_cli.bucket_tools import add_source_arguments

    backup = commands.add_parser(
        "backup",
        help="take an online base backup of PostgreSQL into the bucket (barman-cloud-backup)",
        description="Compression, jobs, immediate checkpoint, encryption and tags come from the "
        "ObjectStore's data section (options here win). PostgreSQL is reached through the PG* "
        "environment variables and -d. Prints the backup ID.",
    )
    add_source_arguments(backup)
    backup.add_argument("-n", "--name", help="a name to find the backup by (not an ID or a shortcut)")
    backup.add_argument(
        "--immediate-checkpoint",
        action="store_true",
        default=None,
        help="start with an immediate checkpoint (default: data.immediateCheckpoint, else spread)",
    )
    backup.add_argument(
        "-J", "--jobs", type=int, help="parallel compression and uploads (default: data.jobs, else 2)"
    )
    backup.add_argument(
        "-S",
        "--max-archive-size",
        help="archives continue in a new part past this size (barman syntax, default 100GB)",
    )
    backup.add_argument(
        "-d", "--dbname", metavar="CONNINFO", help="libpq connection string (default: the PG* environment)"
    )
    backup.set_defaults(tool=run_backup)


def backup_exit_code(error: BaseException) -> int:
    if isinstance(error, errors.InvalidInput):
        return EXIT_BAD_INPUT
    if isinstance(error, errors.Unavailable | errors.Forbidden):
        return EXIT_UNREACHABLE
    return EXIT_FAILED


async def _backup(args: argparse.Namespace) -> str:
    from barman_cloud.backup import backup as engine
    from barman_cloud.storage.factory import open_store
    from barman_cloud_cli.bucket_tools import open_target

    async with AsyncExitStack() as stack:
        target = await open_target(args, stack)
        configuration = target.object_store.spec.configuration
        overrides: dict[str, object] = {"backup_name": args.name}
        if args.immediate_checkpoint is not None:
            overrides["immediate_checkpoint"] = True
        if args.jobs is not None:
            overrides["jobs"] = args.jobs
        if args.max_archive_size is not None:
            overrides["max_archive_size"] = engine.parse_size(args.max_archive_size)
        settings = engine.settings_from(configuration, **overrides)
        options = engine.backup_store_options(target.resolved.options, configuration, settings.jobs)
        store = open_store(target.resolved.destination, target.resolved.credentials, options)
        stack.push_async_callback(store.close)
        result = await engine.take_backup(store, target.layout, args.dbname, settings)
        return result.backup_id


def run_backup(args: argparse.Namespace) -> int:
    async def main() -> str:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await _backup(args)
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    try:
        backup_id = asyncio.run(main())
    except errors.BarmanCloudError as error:
        print(f"barman-cloud-plugin backup: {error}", file=sys.stderr)
        return backup_exit_code(error)
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("barman-cloud-plugin backup: interrupted, the backup is marked FAILED", file=sys.stderr)
        return EXIT_FAILED
    except Exception as error:  # a PostgreSQL or library error the engine did not translate
        first = str(error).strip().splitlines()
        print(f"barman-cloud-plugin backup: {first[0] if first else type(error).__name__}", file=sys.stderr)
        return EXIT_FAILED
    with contextlib.suppress(BrokenPipeError):
        print(backup_id)
    return EXIT_OK
