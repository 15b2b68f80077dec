"""Restore, list, show, delete and keep backups in a bucket (issue #5)."""

from __future__ import annotations

import argparse

PENDING = "the restore engine and retention, issue #5"


def add_catalog_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name in ("backup-list", "backup-show", "backup-delete", "backup-keep"):
        leaf = commands.add_parser(name, help=f"(not implemented yet: {PENDING})")
        leaf.set_defaults(pending=(name,), arrives_with=PENDING)


def add_restore_tool_arguments(parser: argparse.ArgumentParser) -> None:
    """``restore BACKUP_ID DEST``; without them ``restore`` is the recovery Job's sidecar."""
    parser.add_argument("backup_id", nargs="?", metavar="BACKUP_ID", help="a backup ID, a name, or latest")
    parser.add_argument("destination", nargs="?", metavar="DEST", help="an empty directory to restore into")


def run_restore_tool(args: argparse.Namespace) -> int:
    import sys

    print(
        f"barman-cloud-plugin restore BACKUP_ID DEST: not implemented yet; it arrives with {PENDING}.",
        file=sys.stderr,
    )
    return 3
