"""What goes into each archive, in barman's order: the walk of PGDATA and of each tablespace, with
barman-cloud-backup's exclusion rules (barman-cloud-format.md 1.4).

Rules are rsync-like: a leading ``/`` anchors the rule at the walked root, otherwise it also
matches at any depth; ``*`` does not cross ``/``, ``**`` does, ``?`` is any one character; a
trailing ``/`` restricts the rule to directories. A matching directory is left out together with
the files directly in it, but its subdirectories are still visited and tested on their own (so
``pg_wal/`` is kept, empty, while ``pg_wal/archive_status/`` is left out).

One deliberate difference: barman escapes ``[`` and ``]``, so its temporary-relation rule
``**/[0-9]*/t[0-9]*_[0-9]*`` never matches a real file name. Here ``[...]`` is a character class,
as the rule intends: temporary relation files (``base/16384/t3_16390``) are left out, as
pg_basebackup does. PostgreSQL deletes them at startup anyway, so a restore is the same.

The walk is :func:`os.walk`, top-down, without following symbolic links to directories (a
symlinked ``pg_wal`` and the ``pg_tblspc/<OID>`` links are not stored at all); entries come in the
directory's own order, as barman's do. It runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

PGDATA_EXCLUDES = (
    # Server logs (pg_log before PostgreSQL 10) and WAL (pg_xlog before 10).
    "/pg_log/*",
    "/log/*",
    "/pg_xlog/*",
    "/pg_wal/*",
    # Added last, after the walk.
    "/global/pg_control",
)
EXCLUDES = (
    # PostgreSQL's excludeFiles.
    "pgsql_tmp*",
    "postgresql.auto.conf.tmp",
    "current_logfiles.tmp",
    "pg_internal.init",
    "postmaster.pid",
    "postmaster.opts",
    "recovery.conf",
    "standby.signal",
    # Temporary relations.
    "**/[0-9]*/t[0-9]*_[0-9]*",
    # PostgreSQL's excludeDirContents.
    "pg_dynshmem/*",
    "pg_notify/*",
    "pg_replslot/*",
    "pg_serial/*",
    "pg_stat_tmp/*",
    "pg_snapshots/*",
    "pg_subtrans/*",
)
PG_CONTROL = "global/pg_control"


def _pattern_regex(pattern: str) -> str:
    """barman's wildcard translation (``barman.fs._translate_to_regexp``), with character classes."""
    out = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if pattern.startswith("**", index):
            out.append(".*")
            index += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append(".")
        elif char == "[" and (end := pattern.find("]", index + 2)) != -1:
            body = pattern[index + 1 : end]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
            index = end + 1
            continue
        else:
            out.append(re.escape(char))
        index += 1
    return "".join(out)


@dataclass(frozen=True)
class _Rule:
    directories_only: bool
    regexes: tuple[re.Pattern[str], ...]


class Rules:
    """A compiled list of barman path rules (``barman.fs._match_path`` semantics)."""

    def __init__(self, rules: Sequence[str]) -> None:
        compiled = []
        for rule in rules:
            directories_only = rule.endswith("/")
            if directories_only:
                rule = rule[:-1]
            anchored = rule.startswith("/")
            if anchored:
                rule = rule[1:]
            patterns = [rule] if anchored else [rule, "**/" + rule]
            regexes = tuple(re.compile(r"(?s)" + _pattern_regex(p) + r"\Z") for p in patterns)
            compiled.append(_Rule(directories_only, regexes))
        self._rules = tuple(compiled)
        self.texts = tuple(rules)

    def match(self, path: str, is_dir: bool) -> bool:
        for rule in self._rules:
            if rule.directories_only and not is_dir:
                continue
            if any(regex.match(path) for regex in rule.regexes):
                return True
        return False


def allowed(path: str, is_dir: bool, exclude: Rules, include: Rules | None = None) -> bool:
    """barman's ``path_allowed``: an include match wins, then an exclude match rejects."""
    if include is not None and include.match(path, is_dir):
        return True
    return not exclude.match(path, is_dir)


@dataclass(frozen=True)
class Member:
    """One tar member: ``source`` on disk, stored as ``arcname``."""

    source: str
    arcname: str
    is_dir: bool = False
    optional: bool = False
    """Skipped silently when the source does not exist (barman's ``ident_file``)."""


def walk(root: str, exclude: Rules, include: Rules | None = None) -> Iterator[Member]:
    """barman's ``upload_directory``: each directory (arcname relative to ``root``, ``.`` for the
    root itself) followed by its files (``./name`` directly under the root)."""
    for directory, _subdirectories, files in os.walk(root):
        relative = os.path.relpath(directory, root)
        if not allowed(relative, True, exclude, include):
            continue
        yield Member(directory, relative, is_dir=True)
        for name in files:
            arcname = os.path.join(relative, name)
            if allowed(arcname, False, exclude, include):
                yield Member(os.path.join(directory, name), arcname)


def pgdata_rules(pgdata: str, tablespaces: Sequence[tuple[str, int, str]]) -> Rules:
    """The exclusions of the data archive: barman's lists, each tablespace's ``pg_tblspc`` link and,
    for a tablespace inside PGDATA, its directory (it has its own archive)."""
    extra = []
    for _name, oid, location in tablespaces:
        if location.startswith(pgdata + "/"):
            extra.append(location[len(pgdata) :])
        extra.append(f"/pg_tblspc/{oid}")
    return Rules([*PGDATA_EXCLUDES, *EXCLUDES, *extra])


def tablespace_rules(major: str) -> tuple[Rules, Rules]:
    """(exclude, include) of a tablespace archive: only the ``PG_<major>_*`` directories."""
    return Rules(["/*", *EXCLUDES]), Rules([f"/PG_{major}_*"])


def major_version(server_version: int) -> str:
    """``16`` for 160002, ``9.6`` for 90624: the ``PG_<major>_<catalog>`` directory prefix."""
    if server_version >= 100000:
        return str(server_version // 10000)
    return f"{server_version // 10000}.{server_version // 100 % 100}"


def pgdata_members(
    pgdata: str,
    tablespaces: Sequence[tuple[str, int, str]],
    external_files: Sequence[Member] = (),
) -> Iterator[Member]:
    """The data archive before ``backup_label``: the walk, then ``global/pg_control``, then the
    configuration files that live outside PGDATA."""
    root = os.path.realpath(pgdata) if os.path.islink(pgdata) else pgdata
    yield from walk(root, pgdata_rules(pgdata, tablespaces))
    yield Member(os.path.join(root, PG_CONTROL), PG_CONTROL)
    yield from external_files


def external_config_files(
    pgdata: str, config_file: str | None, hba_file: str | None, ident_file: str | None
) -> list[Member]:
    """Configuration files outside PGDATA, stored at the archive root under their base name.

    barman's test is a plain prefix test (``startswith(pgdata)``); files pulled in by ``include``
    directives outside PGDATA are not backed up, by barman either (the caller warns)."""
    members = []
    for path, optional in ((config_file, False), (hba_file, False), (ident_file, True)):
        if path and not path.startswith(pgdata):
            members.append(Member(path, os.path.basename(path), optional=optional))
    return members
