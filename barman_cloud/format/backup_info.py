"""``backup.info``: read and written exactly as barman 3.14-3.19 do (barman-cloud-format.md 2).

Writer: one ``key=value`` line per known field, sorted by key, ``None`` for nulls (``backup_name``
and ``snapshots_info`` omitted when null), Python ``repr`` for the literal fields, ``str`` for the
rest. Never a key barman does not know: barman >= 3.15 aborts every command on one (E-1).
Reader: tolerant like barman (blank and ``#`` lines skipped, split on the first ``=``, values
stripped) and forward compatible (unknown keys are kept aside, not fatal).
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any

from barman_cloud.errors import InvalidInput

log = logging.getLogger(__name__)

STATUSES = ("EMPTY", "STARTED", "FAILED", "WAITING_FOR_WALS", "DONE", "SYNCING")
DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024

Tablespace = tuple[str, int, str]


@dataclass(frozen=True)
class BackupInfo:
    """The 35 fields of barman's backup.info (3.14 ... 3.19.1). The backup ID is not one of them:
    it is the name of the backup's directory."""

    backup_label: str | None = None
    backup_name: str | None = None
    begin_offset: int | None = None
    begin_time: datetime | None = None
    begin_wal: str | None = None
    begin_xlog: str | None = None
    children_backup_ids: tuple[str, ...] | None = None
    cluster_size: int | None = None
    compression: str | None = None
    config_file: str | None = None
    copy_stats: Mapping[str, Any] | None = None
    data_checksums: str | None = None
    deduplicated_size: int | None = None
    encryption: str | None = None
    end_offset: int | None = None
    end_time: datetime | None = None
    end_wal: str | None = None
    end_xlog: str | None = None
    error: str | None = None
    hba_file: str | None = None
    ident_file: str | None = None
    included_files: tuple[str, ...] | None = None
    mode: str | None = None
    parent_backup_id: str | None = None
    pgdata: str | None = None
    server_name: str | None = "cloud"
    """Literally ``cloud`` for object-store backups: CloudNativePG reads ``show`` output under it."""
    size: int | None = None
    snapshots_info: Mapping[str, Any] | None = None
    status: str = "EMPTY"
    summarize_wal: str | None = None
    systemid: str | None = None
    tablespaces: tuple[Tablespace, ...] | None = None
    timeline: int | None = None
    version: int | None = None
    xlog_segment_size: int | None = DEFAULT_SEGMENT_SIZE
    unknown: Mapping[str, str] = field(default_factory=dict, compare=False)
    """Keys this version does not know, as read (never written back)."""

    @property
    def segment_size(self) -> int:
        return self.xlog_segment_size or DEFAULT_SEGMENT_SIZE

    def with_status(self, status: str, **changes: Any) -> BackupInfo:
        if status not in STATUSES:
            raise InvalidInput(f"unknown backup status {status!r}")
        return replace(self, status=status, **changes)


_OMITTED_WHEN_NULL = {"backup_name", "snapshots_info"}
_LITERAL = {"backup_label", "copy_stats", "included_files", "snapshots_info", "tablespaces"}
_INT = {"begin_offset", "cluster_size", "deduplicated_size", "end_offset", "size", "timeline", "version",
        "xlog_segment_size"}  # fmt: skip
_TIME = {"begin_time", "end_time"}
FIELD_NAMES = tuple(sorted(f.name for f in fields(BackupInfo) if f.name != "unknown"))


def _encode(name: str, value: Any) -> str | None:
    """The text barman writes for ``value``; None means "omit the line"."""
    if name in _OMITTED_WHEN_NULL and value is None:
        return None
    if name in _LITERAL:
        if not value:
            return "None"
        if name == "tablespaces":
            return repr([tuple(t) for t in value])
        if name == "included_files":
            return repr(list(value))
        if name in ("copy_stats", "snapshots_info"):
            return repr(dict(value))
        return repr(value)
    if value is None:
        return "None"
    if name == "children_backup_ids":
        return ",".join(value) if value else "None"
    return str(value)


def format_backup_info(info: BackupInfo) -> bytes:
    """Serialise as barman does (the bytes a barman 3.19 writer would produce for these values)."""
    lines = []
    for name in FIELD_NAMES:
        text = _encode(name, getattr(info, name))
        if text is not None:
            if len(f"{text}x".splitlines()) > 1:
                # Every line break str.splitlines knows (\x85, \u2028...): barman-cloud reads
                # backup.info through codecs' StreamReader, which splits on all of them.
                raise InvalidInput(f"backup.info field {name} cannot contain a line break: {text[:80]!r}")
            lines.append(f"{name}={text}\n")
    return "".join(lines).encode()


def _load_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        moment = datetime.strptime(text, "%a %b %d %H:%M:%S %Y")
    # barman attaches the local zone to a naive time.
    return moment if moment.tzinfo else moment.astimezone()


def _load_literal(name: str, text: str) -> Any:
    value = ast.literal_eval(text)
    if name == "backup_label":
        if not isinstance(value, str):
            raise ValueError("not a string")
        return value
    if name == "tablespaces":
        if not isinstance(value, list | tuple):
            raise ValueError("not a list")
        result = []
        for item in value:
            tablespace_name, oid, location = item
            result.append((str(tablespace_name), int(oid), str(location)))
        return tuple(result)
    if name == "included_files":
        if not isinstance(value, list | tuple):
            raise ValueError("not a list")
        return tuple(str(v) for v in value)
    if not isinstance(value, dict):
        raise ValueError("not a dict")
    return value


def _loader(name: str) -> Callable[[str], Any]:
    if name in _INT:
        return int
    if name in _TIME:
        return _load_time
    if name in _LITERAL:
        return lambda text: _load_literal(name, text)
    if name == "children_backup_ids":
        return lambda text: tuple(text.split(",")) if text else None
    return str


RESTORE_REQUIRED = ("begin_time", "end_time")
"""Fields a DONE backup needs to be restored (CloudNativePG needs both times); barman always
writes them, so their absence means a damaged or hand-edited file."""


def unrestorable_reason(info: BackupInfo) -> tuple[str, str] | None:
    """Why a backup cannot be restored (reason, what to do), or None when it can."""
    if info.status != "DONE":
        return (
            f"its status is {info.status}",
            "choose a backup with status DONE (barman-cloud-plugin backup-list)",
        )
    missing = [name for name in RESTORE_REQUIRED if getattr(info, name) is None]
    if missing:
        return (
            f"its backup.info has status DONE but no {' and no '.join(missing)}",
            "the file is incomplete: restore it from barman's copy, or choose another backup",
        )
    return None


def parse_backup_info(data: bytes, *, where: str = "backup.info") -> BackupInfo:
    """Parse a backup.info; InvalidInput names the line or key that is wrong."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise InvalidInput(f"{where} is not UTF-8 text") from None
    values: dict[str, Any] = {}
    unknown: dict[str, str] = {}
    known = set(FIELD_NAMES)
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not line.strip() or line.startswith("#"):
            continue
        if "=" not in line:
            raise InvalidInput(f"{where} line {number} is not key=value: {line[:80]!r}")
        key, value = (part.strip() for part in line.split("=", 1))
        if key not in known:
            unknown[key] = value
            continue
        if value == "None":
            values[key] = None
            continue
        try:
            values[key] = _loader(key)(value)
        except (ValueError, SyntaxError, TypeError, OverflowError, MemoryError, RecursionError) as error:
            raise InvalidInput(
                f"{where}: invalid value for {key} ({type(error).__name__}): {value[:80]!r}",
                hint="the file is damaged: correct that line, or delete the backup",
            ) from None
    if unknown:
        log.warning(
            "backup.info has fields this version does not know",
            extra={"where": where, "fields": sorted(unknown)},
        )
    status = values.get("status") or "EMPTY"
    if status not in STATUSES:
        raise InvalidInput(f"{where}: unknown status {status!r}", hint=f"one of {', '.join(STATUSES)}")
    values["status"] = status
    return BackupInfo(**values, unknown=unknown)
