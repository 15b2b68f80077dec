"""``barman-cloud-plugin backup``: take a base backup into a bucket (issue #5)."""

from __future__ import annotations

import argparse


def add_backup_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backup = commands.add_parser("backup", help="(not implemented yet: the backup engine, issue #5)")
    backup.set_defaults(pending=("backup",), arrives_with="the backup engine, issue #5")
