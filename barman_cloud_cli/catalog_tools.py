"""Restore, list, show, delete and keep backups in a bucket, configured like the WAL tools
(``-f FILE`` or ``--namespace`` and ``--object-store``, plus ``--server-name``).

``restore BACKUP_ID DEST`` prepares DEST so that starting PostgreSQL on it performs the recovery:
the backup (an ID, a name, or ``latest`` to let the target choose) is restored in parallel and
the recovery configuration written, with ``restore_command`` calling our ``wal-restore`` on the
same object store. ``backup-list`` and ``backup-show`` print what barman-cloud-backup-list/-show
print (``--format json`` included); ``backup-delete`` and ``backup-keep`` follow
barman-cloud-backup-delete/-keep.

Exit codes: 0 done, 1 the operation was refused or found nothing (an unreadable catalog, a kept
backup, no backup for the target), 2 the store cannot be reached or refused the credentials,
3 bad arguments or data (an unsafe archive), 4 anything else.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from barman_cloud import errors
from barman_cloud_cli.bucket_tools import Target, add_source_arguments, exit_code, run_tool

if TYPE_CHECKING:
    from barman_cloud.catalog.listing import Catalog
    from barman_cloud.restore.targets import RecoveryTarget

RESTORE_JOBS = 4


def _exit_code(error: BaseException) -> int:
    if isinstance(error, errors.Forbidden):
        return 2
    if isinstance(error, errors.FailedPrecondition | errors.Conflict):
        return 1
    return exit_code(error)


def _run(args: argparse.Namespace, body: Callable[[argparse.Namespace, Target], Awaitable[int]]) -> int:
    return run_tool(args, body, _exit_code)


# -- restore ------------------------------------------------------------------------------------


def add_restore_tool_arguments(parser: argparse.ArgumentParser) -> None:
    """``restore BACKUP_ID DEST``; without them ``restore`` is the recovery Job's sidecar."""
    parser.add_argument(
        "backup_id", nargs="?", metavar="BACKUP_ID", help="a backup ID, a backup name, or latest"
    )
    parser.add_argument("destination", nargs="?", metavar="DEST", help="an empty directory to restore into")
    parser.add_argument("--namespace", help="read the ObjectStore and Secrets from this namespace")
    targets = parser.add_argument_group("recovery target (at most one; none: the end of the WAL)")
    exclusive = targets.add_mutually_exclusive_group()
    exclusive.add_argument("--target-time", help="recover up to this time (ISO 8601; naive: local time)")
    exclusive.add_argument("--target-lsn", help="recover up to this LSN (X/Y)")
    exclusive.add_argument("--target-xid", help="recover up to this transaction ID")
    exclusive.add_argument("--target-name", help="recover up to this restore point")
    exclusive.add_argument(
        "--target-immediate", action="store_true", help="stop as soon as the backup is consistent"
    )
    targets.add_argument("--target-tli", help="recovery_target_timeline: latest, current or a number")
    targets.add_argument(
        "--target-action",
        choices=["pause", "promote", "shutdown"],
        help="what PostgreSQL does at the target (default promote)",
    )
    parser.add_argument(
        "--tablespace",
        action="append",
        default=[],
        metavar="NAME:LOCATION",
        help="restore tablespace NAME to LOCATION (repeatable)",
    )
    parser.add_argument(
        "-j", "--jobs", type=int, help="archives and downloads in parallel (default: data.jobs, else 4)"
    )
    parser.add_argument(
        "--restore-command", help="restore_command to write (default: this tool's wal-restore)"
    )
    parser.add_argument(
        "--no-wal-check", action="store_true", help="do not check that the backup's first WAL is archived"
    )
    archiving = parser.add_mutually_exclusive_group()
    archiving.add_argument(
        "--archive-command",
        default="false",
        help="archive_command of the restored server (default 'false', as barman recover: the source's "
        "command would archive the new timeline into the source's archive)",
    )
    archiving.add_argument(
        "--keep-archive-command",
        action="store_true",
        help="leave the archive_command the backup carried over from the source",
    )


def _tablespace_map(rules: list[str]) -> dict[str, Path]:
    mapping = {}
    for rule in rules:
        name, sep, location = rule.partition(":")
        if not sep or not name or not location:
            raise errors.InvalidInput(
                f"invalid tablespace relocation rule {rule!r}", hint="the syntax is NAME:LOCATION"
            )
        mapping[name] = Path(location)
    return mapping


def _console_script() -> str:
    beside = Path(sys.executable).with_name("barman-cloud-plugin")
    return str(beside) if beside.exists() else "barman-cloud-plugin"


def default_restore_command(args: argparse.Namespace) -> str:
    """Our ``wal-restore`` reading the same object store, as PostgreSQL's restore_command."""
    words = [_console_script(), "wal-restore"]
    if args.file:
        words += ["-f", str(Path(args.file).resolve())]
        if args.object_store:
            words += ["--object-store", args.object_store]
    else:
        words += ["--namespace", args.namespace, "--object-store", args.object_store]
    words += ["--server-name", args.server_name]
    return " ".join(shlex.quote(word) for word in words) + " %f %p"


def recovery_target(args: argparse.Namespace) -> RecoveryTarget:
    from barman_cloud.restore.targets import RecoveryTarget, parse_target_time

    return RecoveryTarget(
        time=parse_target_time(args.target_time) if args.target_time else None,
        lsn=args.target_lsn,
        xid=args.target_xid,
        name=args.target_name,
        immediate=bool(args.target_immediate),
        timeline=args.target_tli,
        action=args.target_action,
    )


async def _restore(args: argparse.Namespace, target: Target) -> int:
    from barman_cloud.restore.recover import prepare_recovery

    goal = recovery_target(args)
    jobs = args.jobs or target.object_store.spec.configuration.data.jobs or RESTORE_JOBS
    result = await prepare_recovery(
        target.store,
        target.layout,
        Path(args.destination),
        restore_command=args.restore_command or default_restore_command(args),
        target=goal,
        backup=args.backup_id,
        jobs=jobs,
        tablespace_map=_tablespace_map(args.tablespace),
        check_wal=not args.no_wal_check,
        archive_command=None if args.keep_archive_command else args.archive_command,
    )
    print(f"restored backup {result.backup_id} into {result.destination}")
    for oid, location in sorted(result.tablespaces.items()):
        print(f"  tablespace {oid} -> {location}")
    if result.cleaned_previous_attempt:
        print("(what an interrupted attempt had left there was removed first)")
    if not args.keep_archive_command:
        print(
            f"archive_command set to {args.archive_command!r} in postgresql.auto.conf: "
            "give the restored server its own archive before it writes WAL you want to keep"
        )
    print("start PostgreSQL on it to recover")
    return 0


def run_restore_tool(args: argparse.Namespace) -> int:
    if not args.destination:
        print("barman-cloud-plugin restore: BACKUP_ID needs DEST", file=sys.stderr)
        return 3
    if not args.server_name:
        print("barman-cloud-plugin restore: --server-name is required", file=sys.stderr)
        return 3
    try:
        recovery_target(args)
        _tablespace_map(args.tablespace)
        if args.jobs is not None and args.jobs < 1:
            raise errors.InvalidInput("--jobs must be at least 1")
    except errors.BarmanCloudError as error:
        print(f"barman-cloud-plugin restore: {error}", file=sys.stderr)
        return _exit_code(error)
    return _run(args, _restore)


# -- list, show, delete, keep -----------------------------------------------------------------


def add_catalog_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    listing = commands.add_parser("backup-list", help="list the backups of a server in a bucket")
    add_source_arguments(listing)
    listing.add_argument("--format", choices=["console", "json"], default="console")
    listing.set_defaults(tool=run_backup_list)

    show = commands.add_parser("backup-show", help="show one backup (an ID, a name or a shortcut)")
    add_source_arguments(show)
    show.add_argument("backup_id", metavar="BACKUP_ID")
    show.add_argument("--format", choices=["console", "json"], default="console")
    show.set_defaults(tool=run_backup_show)

    delete = commands.add_parser(
        "backup-delete", help="delete a backup, or every backup a retention policy makes obsolete"
    )
    add_source_arguments(delete)
    which = delete.add_mutually_exclusive_group(required=True)
    which.add_argument("backup_id", nargs="?", metavar="BACKUP_ID", help="an ID, a name or a shortcut")
    which.add_argument(
        "-r",
        "--retention-policy",
        nargs="?",
        const="",
        metavar="POLICY",
        help="REDUNDANCY n, RECOVERY WINDOW OF n DAYS|WEEKS|MONTHS, or 30d/4w/3m "
        "(without a value: the ObjectStore's retentionPolicy)",
    )
    delete.add_argument("-m", "--minimum-redundancy", type=int, default=0, help="backups always kept")
    delete.add_argument("--dry-run", action="store_true", help="show what would be deleted, delete nothing")
    delete.set_defaults(tool=run_backup_delete)

    keep = commands.add_parser("backup-keep", help="keep a backup beyond retention, release it, show it")
    add_source_arguments(keep)
    keep.add_argument("backup_id", metavar="BACKUP_ID")
    action = keep.add_mutually_exclusive_group(required=True)
    action.add_argument("--target", choices=["full", "standalone"], help="keep for this recovery target")
    action.add_argument("-r", "--release", action="store_true", help="remove the keep annotation")
    action.add_argument("-s", "--status", action="store_true", help="print the keep status")
    keep.set_defaults(tool=run_backup_keep)


def _warn_unreadable(catalog: Catalog) -> None:
    for item in catalog.unreadable:
        print(f"warning: unable to read backup.info of {item.backup_id}: {item.reason}", file=sys.stderr)


async def _list(args: argparse.Namespace, target: Target) -> int:
    from barman_cloud.catalog import views
    from barman_cloud.catalog.listing import load_catalog

    catalog = await load_catalog(target.store, target.layout, keeps=args.format == "console")
    _warn_unreadable(catalog)
    if args.format == "json":
        print(views.list_json(catalog))
    else:
        print(views.list_console(catalog, catalog.keeps or {}))
    return 0


async def _show(args: argparse.Namespace, target: Target) -> int:
    from barman_cloud.catalog import views
    from barman_cloud.catalog.keep import read_keep
    from barman_cloud.catalog.listing import load_catalog, read_backup
    from barman_cloud.catalog.resolve import resolve_backup_id
    from barman_cloud.format.backup_id import is_backup_id

    backup_id = args.backup_id
    if not is_backup_id(backup_id):
        catalog = await load_catalog(target.store, target.layout)
        backup_id = resolve_backup_id(catalog, backup_id)
    try:
        backup = await read_backup(target.store, target.layout, backup_id)
    except errors.NotFound:
        raise errors.NotFound(f"backup {backup_id} of server {target.layout.server} does not exist") from None
    if args.format == "json":
        print(views.show_json(backup))
    else:
        print(views.show_console(backup, await read_keep(target.store, target.layout, backup_id)))
    return 0


async def _delete(args: argparse.Namespace, target: Target) -> int:
    from barman_cloud.retention.delete import Deletion, apply_retention_policy, delete_backup
    from barman_cloud.retention.policies import parse_policy

    def show(deletion: Deletion) -> None:
        verb = "would delete" if deletion.dry_run else "deleted"
        print(f"{verb} backup {deletion.backup_id}: {len(deletion.objects)} objects")
        for key in deletion.objects:
            print(f"  {key}")
        if deletion.wals:
            print(f"{verb} {len(deletion.wals)} WAL objects no longer needed")
            for key in deletion.wals:
                print(f"  {key}")
        if deletion.wal_error:
            print(f"warning: WAL cleanup failed: {deletion.wal_error}", file=sys.stderr)

    if args.retention_policy is None:
        show(
            await delete_backup(
                target.store,
                target.layout,
                args.backup_id,
                minimum_redundancy=args.minimum_redundancy,
                dry_run=args.dry_run,
            )
        )
        return 0
    if args.retention_policy:
        policy = parse_policy(args.retention_policy)
    elif target.object_store.spec.retention_policy is not None:
        policy = target.object_store.spec.retention_policy
    else:
        raise errors.InvalidInput(
            "the ObjectStore has no retentionPolicy", hint="give one: --retention-policy 'REDUNDANCY 7'"
        )
    run = await apply_retention_policy(
        target.store,
        target.layout,
        policy,
        minimum_redundancy=args.minimum_redundancy,
        dry_run=args.dry_run,
    )
    print(f"retention policy {policy}:")
    for backup_id, status in sorted(run.report.items()):
        print(f"  {backup_id}  {status}")
    for deletion in run.deletions:
        show(deletion)
    for key in run.orphans:
        print(f"{'would delete' if args.dry_run else 'deleted'} {key} (a deleted backup's checksum manifest)")
    return 0


async def _keep(args: argparse.Namespace, target: Target) -> int:
    from barman_cloud.catalog import keep
    from barman_cloud.catalog.listing import load_catalog
    from barman_cloud.catalog.resolve import resolve_backup_id
    from barman_cloud.format.backup_id import is_backup_id

    backup_id = args.backup_id
    if not is_backup_id(backup_id):
        backup_id = resolve_backup_id(await load_catalog(target.store, target.layout), backup_id)
    if args.status:
        print(f"Keep: {await keep.read_keep(target.store, target.layout, backup_id) or 'nokeep'}")
    elif args.release:
        await keep.release_keep(target.store, target.layout, backup_id)
    else:
        await keep.keep_backup(target.store, target.layout, backup_id, args.target)
    return 0


def run_backup_list(args: argparse.Namespace) -> int:
    return _run(args, _list)


def run_backup_show(args: argparse.Namespace) -> int:
    return _run(args, _show)


def run_backup_delete(args: argparse.Namespace) -> int:
    return _run(args, _delete)


def run_backup_keep(args: argparse.Namespace) -> int:
    return _run(args, _keep)
