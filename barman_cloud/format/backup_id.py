"""Backup IDs (``%Y%m%dT%H%M%S``, the uploader's local time at start), names and shortcuts."""

from __future__ import annotations

import re
from datetime import datetime

from barman_cloud.errors import InvalidInput

BACKUP_ID = re.compile(r"^\d{8}T\d{6}$")
RESERVED_NAMES = frozenset(
    {"latest", "last", "oldest", "first", "last-failed", "latest-full", "last-full", "auto"}
)


def is_backup_id(text: str) -> bool:
    return BACKUP_ID.fullmatch(text) is not None


def new_backup_id(now: datetime | None = None) -> str:
    """barman's ID: naive local wall-clock time, second resolution."""
    moment = (now or datetime.now().astimezone()).astimezone()
    return moment.strftime("%Y%m%dT%H%M%S")


def backup_id_time(backup_id: str) -> datetime:
    if not is_backup_id(backup_id):
        raise InvalidInput(f"{backup_id!r} is not a backup ID", hint="expected YYYYMMDDTHHMMSS")
    return datetime.strptime(backup_id, "%Y%m%dT%H%M%S")


def check_backup_name(name: str) -> str:
    """A backup name may be anything but an ID or one of barman's shortcuts."""
    if not name or not name.strip():
        raise InvalidInput("empty backup name")
    if is_backup_id(name):
        raise InvalidInput(
            f"backup name {name!r} looks like a backup ID", hint="choose a name that is not YYYYMMDDTHHMMSS"
        )
    if name in RESERVED_NAMES:
        raise InvalidInput(
            f"backup name {name!r} is reserved", hint=f"not one of {', '.join(sorted(RESERVED_NAMES))}"
        )
    if "\n" in name or "\r" in name:
        raise InvalidInput("a backup name cannot contain line breaks")
    return name
