"""The recovery configuration written into a restored data directory (PostgreSQL 12 and later).

``postgresql.auto.conf`` (read last, so it wins over ``postgresql.conf``) gets a block with
``restore_command`` and the recovery target settings, after dropping the recovery settings the
restored file carried over from the source (a source that was itself restored would otherwise
pass on its stale targets, and two different target kinds make PostgreSQL refuse to start).
``recovery.signal`` is created and ``standby.signal`` removed, so that starting PostgreSQL on the
directory performs a targeted recovery with no other step. Files get the data directory's owner.

``archive_command`` can be replaced too (the tools set it to ``false``, as ``barman recover``
does): the restored configuration still carries the source's command, and a server promoted at
its target would otherwise archive its new timeline into the source's archive. In a CloudNativePG
Pod the instance manager writes the configuration, so the restore sidecar leaves it alone.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from barman_cloud.errors import InvalidInput
from barman_cloud.restore.targets import RecoveryTarget

AUTO_CONF = "postgresql.auto.conf"
RECOVERY_SIGNAL = "recovery.signal"
STANDBY_SIGNAL = "standby.signal"
MANAGED = frozenset(
    {
        "restore_command",
        "recovery_target",
        "recovery_target_time",
        "recovery_target_lsn",
        "recovery_target_xid",
        "recovery_target_name",
        "recovery_target_timeline",
        "recovery_target_action",
        "recovery_target_inclusive",
    }
)
_SETTING = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(=|\s)")
MIN_VERSION = 120000


@dataclass(frozen=True)
class RecoveryConfig:
    restore_command: str
    """The shell command PostgreSQL runs to fetch a WAL file (``%f``, ``%p``)."""
    target: RecoveryTarget = field(default_factory=RecoveryTarget)
    comment: str = "barman-cloud-plugin restore"
    archive_command: str | None = None
    """Replaces the restored ``archive_command`` when set (``false``: archive nothing)."""


def quote(value: str) -> str:
    """A configuration-file string literal; a line break or NUL would end it early (and let the
    rest of the value become a setting of its own), so they are refused."""
    if any(c in value for c in "\n\r\x00"):
        raise InvalidInput(
            f"{value[:80]!r} cannot be written to the PostgreSQL configuration: it contains a line break "
            "or NUL",
            hint="remove it from the recovery target or command",
        )
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def settings(config: RecoveryConfig) -> dict[str, str]:
    target = config.target
    values: dict[str, str] = {"restore_command": config.restore_command}
    if config.archive_command is not None:
        values["archive_command"] = config.archive_command
    if target.time is not None:
        values["recovery_target_time"] = target.time.isoformat(sep=" ")
    if target.lsn is not None:
        values["recovery_target_lsn"] = target.lsn
    if target.xid is not None:
        values["recovery_target_xid"] = target.xid
    if target.name is not None:
        values["recovery_target_name"] = target.name
    if target.immediate:
        values["recovery_target"] = "immediate"
    if target.timeline is not None:
        values["recovery_target_timeline"] = target.timeline
    action = target.action or ("promote" if target.has_stop_point else None)
    if action is not None:
        values["recovery_target_action"] = action
    return values


def _owner(path: Path) -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    st = path.stat()
    return st.st_uid, st.st_gid


def _write(path: Path, text: str, owner: tuple[int, int] | None) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(temporary, 0o600)
    if owner is not None:
        os.chown(temporary, *owner)
    os.replace(temporary, path)


def write_recovery_config(datadir: Path, config: RecoveryConfig, version: int | None) -> None:
    """Write the recovery settings and ``recovery.signal`` into ``datadir`` (blocking)."""
    if version is not None and version < MIN_VERSION:
        raise InvalidInput(
            f"PostgreSQL {version} needs recovery.conf, which this tool does not write",
            hint="restore without recovery configuration and write recovery.conf yourself",
        )
    owner = _owner(datadir)
    auto_conf = datadir / AUTO_CONF
    managed = MANAGED | ({"archive_command"} if config.archive_command is not None else set())
    kept: list[str] = []
    if auto_conf.exists():
        for line in auto_conf.read_text(encoding="utf-8").splitlines():
            match = _SETTING.match(line)
            if match and match.group(1).lower() in managed:
                continue
            kept.append(line)
    if not kept:
        kept = ["# Do not edit this file manually!", "# It will be overwritten by the ALTER SYSTEM command."]
    block = [f"# Recovery settings written by {config.comment}"]
    block += [f"{name} = {quote(value)}" for name, value in settings(config).items()]
    _write(auto_conf, "\n".join([*kept, *block]) + "\n", owner)
    _write(datadir / RECOVERY_SIGNAL, "", owner)
    with contextlib.suppress(FileNotFoundError):
        (datadir / STANDBY_SIGNAL).unlink()
