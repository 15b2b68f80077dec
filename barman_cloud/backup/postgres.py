"""The PostgreSQL side of a backup: one async psycopg 3 session, the metadata barman records and
the non-exclusive backup API of each version.

The queries are barman-cloud-backup's (barman 3.19 ``barman/postgres.py``), so every value lands in
backup.info as barman would record it. ``pg_backup_start``/``pg_backup_stop`` on PostgreSQL 15 and
later, ``pg_start_backup(label, fast, false)``/``pg_stop_backup(false)`` before. The backup belongs
to the session: it must stay open from start to stop, and closing it ends the backup mode on the
server (PostgreSQL aborts a non-exclusive backup whose session goes away).

The connection comes from libpq's environment (``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGPASSWORD``,
``PGSSLMODE``...: what the instance sidecar inherits from the PostgreSQL container) and an optional
conninfo string, which wins. Neither is ever logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import conninfo as libpq_conninfo

from barman_cloud.errors import FailedPrecondition, InvalidInput, Unavailable
from barman_cloud.format.wal import parse_lsn, wal_file_for_lsn

log = logging.getLogger(__name__)

APPLICATION_NAME = "barman_cloud_backup"
"""barman-cloud-backup's ``application_name``: what an administrator sees in pg_stat_activity."""
MINIMUM_VERSION = 100000
"""The non-exclusive API and the ``pg_wal`` names used here exist since PostgreSQL 10
(CloudNativePG itself supports 13 and later)."""

Connection = psycopg.AsyncConnection[tuple[Any, ...]]
Connector = Callable[[], Awaitable[Connection]]
"""How the engine gets its session: a coroutine function returning an open autocommit connection."""


async def connect(conninfo: str | None = None, *, environ: Mapping[str, str] | None = None) -> Connection:
    """Open an autocommit session from libpq's environment and ``conninfo`` (which wins).

    Like barman-cloud-backup: ``application_name=barman_cloud_backup``, database ``postgres`` when
    none is given, and an empty ``search_path`` (secure schema usage) unless ``options`` is set.
    """
    environ = os.environ if environ is None else environ
    try:
        given = libpq_conninfo.conninfo_to_dict(conninfo or "")
    except psycopg.ProgrammingError as error:
        raise InvalidInput("invalid PostgreSQL connection string", hint=str(error).split("\n")[0]) from None
    extra: dict[str, str] = {}
    if "application_name" not in given:
        extra["application_name"] = APPLICATION_NAME
    if "dbname" not in given and not environ.get("PGDATABASE"):
        extra["dbname"] = "postgres"
    if "options" not in given and not environ.get("PGOPTIONS"):
        extra["options"] = "-csearch_path="
    try:
        merged = libpq_conninfo.make_conninfo(conninfo or "", **extra)
        return await psycopg.AsyncConnection.connect(merged, autocommit=True)
    except psycopg.OperationalError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise Unavailable(
            f"cannot connect to PostgreSQL: {first}",
            hint="check the libpq environment (PGHOST, PGPORT, PGUSER...) or the connection string",
        ) from None


def connector(conninfo: str | None = None) -> Connector:
    """A :data:`Connector` for :func:`connect` with ``conninfo``."""

    async def open_session() -> Connection:
        return await connect(conninfo)

    return open_session


@dataclass(frozen=True)
class ServerMetadata:
    """What barman records about the server before the backup starts."""

    version: int
    """``server_version_num`` (e.g. 160002)."""
    pgdata: str
    xlog_segment_size: int
    config_file: str | None
    hba_file: str | None
    ident_file: str | None
    included_files: tuple[str, ...] | None
    tablespaces: tuple[tuple[str, int, str], ...]
    """(name, oid, location) of every tablespace with a location, in catalog order."""
    data_checksums: str | None
    summarize_wal: str | None
    cluster_size: int | None
    in_recovery: bool


@dataclass(frozen=True)
class BackupStart:
    begin_xlog: str
    begin_time: datetime
    timeline: int
    begin_wal: str
    begin_offset: int


@dataclass(frozen=True)
class BackupStop:
    end_xlog: str
    end_time: datetime
    timeline: int
    end_wal: str
    end_offset: int
    backup_label: str


# Function names come from these fixed tables only; values always go as parameters.
_START_CALLS = {
    "pg_backup_start": "pg_backup_start(%s, %s)",
    "pg_start_backup": "pg_start_backup(%s, %s, FALSE)",
}
_START_QUERY = (
    "SELECT location::text, (SELECT timeline_id FROM pg_control_checkpoint()) AS timeline, "
    "now() AS timestamp FROM {function} AS location"
)
_STOP_QUERY = (
    "SELECT end_row.lsn::text AS location, "
    "(SELECT CASE WHEN pg_is_in_recovery() THEN min_recovery_end_timeline ELSE timeline_id END "
    "FROM pg_control_checkpoint(), pg_control_recovery()) AS timeline, "
    "end_row.labelfile AS backup_label, now() AS timestamp FROM {call} AS end_row"
)
_ABORT_QUERY = "SELECT 1 FROM {call}"
# PostgreSQL's XLogArchiveIsBusy(): not busy once ``.done`` exists; busy while ``.ready`` exists, or
# while the file is still in pg_wal without either (its .ready is about to appear).
_BUSY_QUERY = (
    "SELECT n FROM unnest(%s::text[]) AS n "
    "WHERE NOT EXISTS (SELECT 1 FROM pg_ls_archive_statusdir() s WHERE s.name = n || '.done') "
    "AND (EXISTS (SELECT 1 FROM pg_ls_archive_statusdir() s WHERE s.name = n || '.ready') "
    "OR EXISTS (SELECT 1 FROM pg_ls_waldir() w WHERE w.name = n)) ORDER BY n"
)
ARCHIVE_POLL = (0.02, 0.05, 0.1, 0.2)
"""Seconds between checks of the archiver while waiting (PostgreSQL's own wait checks every second)."""
ARCHIVE_WARNING = 60.0


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


class PostgresSession:
    """One session: metadata queries, then start and stop of one non-exclusive backup."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.version = connection.info.server_version
        self.in_backup = False
        """True between a successful start and a stop (or abort) on this session."""

    async def _one(self, query: str, params: tuple[Any, ...] = ()) -> tuple[Any, ...]:
        async with self.connection.cursor() as cursor:
            await cursor.execute(query.encode(), params)  # static SQL only; values go as parameters
            row = await cursor.fetchone()
        if row is None:
            raise FailedPrecondition(f"PostgreSQL returned no row for {query.split()[1]!r}")
        return row

    async def _all(self, query: str) -> list[tuple[Any, ...]]:
        async with self.connection.cursor() as cursor:
            await cursor.execute(query.encode())
            return await cursor.fetchall()

    async def _optional(self, query: str) -> Any:
        """The first column of the first row, or None when the query fails (missing privileges)."""
        try:
            return (await self._one(query))[0]
        except psycopg.Error as error:
            log.debug("metadata query failed", extra={"query": query, "error": _first_line(error)})
            return None

    async def system_identifier(self) -> str:
        return str((await self._one("SELECT system_identifier::text FROM pg_control_system()"))[0])

    def check_version(self) -> None:
        if self.version < MINIMUM_VERSION:
            raise FailedPrecondition(
                f"PostgreSQL {self.version} is not supported",
                hint=f"backups need PostgreSQL {MINIMUM_VERSION // 10000} or later",
            )

    async def metadata(self) -> ServerMetadata:
        pgdata = str((await self._one("SHOW data_directory"))[0])
        segment = int((await self._one("SELECT setting FROM pg_settings WHERE name='wal_segment_size'"))[0])
        if self.version < 110000:  # in blocks before PostgreSQL 11
            block = await self._one("SELECT setting FROM pg_settings WHERE name='wal_block_size'")
            segment *= int(block[0])
        files = dict(
            await self._all(
                "SELECT name, setting FROM pg_settings "
                "WHERE name IN ('config_file', 'hba_file', 'ident_file')"
            )
        )
        included = [
            str(row[0])
            for row in await self._all(
                "SELECT DISTINCT sourcefile AS included_file FROM pg_settings "
                "WHERE sourcefile IS NOT NULL AND sourcefile NOT IN "
                "(SELECT setting FROM pg_settings WHERE name = 'config_file') ORDER BY 1"
            )
        ]
        tablespaces = tuple(
            (str(name), int(oid), str(location))
            for name, oid, location in await self._all(
                "SELECT spcname, oid, pg_tablespace_location(oid) AS spclocation "
                "FROM pg_tablespace WHERE pg_tablespace_location(oid) != ''"
            )
        )
        checksums = await self._optional("SHOW data_checksums")
        summarize = await self._optional("SHOW summarize_wal") if self.version >= 170000 else None
        size = await self._optional("SELECT sum(pg_tablespace_size(oid)) FROM pg_tablespace")
        in_recovery = bool((await self._one("SELECT pg_is_in_recovery()"))[0])
        return ServerMetadata(
            version=self.version,
            pgdata=pgdata,
            xlog_segment_size=segment,
            config_file=files.get("config_file"),
            hba_file=files.get("hba_file"),
            ident_file=files.get("ident_file"),
            included_files=tuple(included) or None,
            tablespaces=tablespaces,
            data_checksums=None if checksums is None else str(checksums),
            summarize_wal=None if summarize is None else str(summarize),
            cluster_size=None if size is None else int(size),
            in_recovery=in_recovery,
        )

    async def start_backup(self, label: str, fast: bool, segment_size: int) -> BackupStart:
        """``pg_backup_start(label, fast)`` (``pg_start_backup(label, fast, false)`` before 15).

        With ``fast`` the checkpoint is immediate; otherwise it is spread over
        ``checkpoint_completion_target`` (minutes on a busy server)."""
        # A role-level statement_timeout would cut a spread checkpoint short; idle_session_timeout
        # would end the session (and the backup) while the files are copied (barman sets it too).
        await self.connection.execute(b"SET statement_timeout TO 0")
        if self.version >= 140000:
            await self.connection.execute(b"SET idle_session_timeout TO 0")
        function = "pg_backup_start" if self.version >= 150000 else "pg_start_backup"
        try:
            location, timeline, timestamp = await self._one(
                _START_QUERY.format(function=_START_CALLS[function]), (label, fast)
            )
        except psycopg.Error as error:
            raise FailedPrecondition(f"{function} failed: {_first_line(error)}") from None
        self.in_backup = True
        lsn = parse_lsn(location)
        return BackupStart(
            begin_xlog=str(location),
            begin_time=timestamp,
            timeline=int(timeline),
            begin_wal=wal_file_for_lsn(int(timeline), lsn, segment_size),
            begin_offset=lsn % segment_size,
        )

    def _stop_call(self, wait_for_archive: bool) -> str:
        if self.version >= 150000:
            return "pg_backup_stop()" if wait_for_archive else "pg_backup_stop(FALSE)"
        return "pg_stop_backup(FALSE)" if wait_for_archive else "pg_stop_backup(FALSE, FALSE)"

    async def stop_backup(self, segment_size: int, *, wait_for_archive: bool = True) -> BackupStop:
        """``pg_backup_stop()`` (``pg_stop_backup(false)`` before 15): by default it waits until
        the WAL the backup needs is archived, as barman-cloud-backup does."""
        if self.version >= 140000:
            await self.connection.execute(b"RESET idle_session_timeout")
        call = self._stop_call(wait_for_archive)
        try:
            location, timeline, label, timestamp = await self._one(_STOP_QUERY.format(call=call))
        except psycopg.Error as error:
            raise FailedPrecondition(f"{call.split('(')[0]} failed: {_first_line(error)}") from None
        self.in_backup = False
        lsn = parse_lsn(location)
        return BackupStop(
            end_xlog=str(location),
            end_time=timestamp,
            timeline=int(timeline),
            end_wal=wal_file_for_lsn(int(timeline), lsn, segment_size),
            end_offset=lsn % segment_size,
            backup_label=str(label),
        )

    async def archiving_required(self, in_recovery: bool) -> bool:
        """Whether ``pg_backup_stop`` would wait for archiving: ``archive_mode`` on (primary) or
        always (also on a standby)."""
        mode = await self._optional("SHOW archive_mode")
        return mode == "always" or (mode == "on" and not in_recovery)

    async def can_watch_archiver(self) -> bool:
        """Whether this session may list pg_wal and its archive_status (superuser or pg_monitor)."""
        try:
            await self._one("SELECT count(*) FROM pg_ls_archive_statusdir()")
            await self._one("SELECT count(*) FROM pg_ls_waldir()")
        except psycopg.Error:
            return False
        return True

    async def wait_for_archive(self, start: BackupStart, stop: BackupStop, segment_size: int) -> None:
        """Wait as ``pg_backup_stop(wait_for_archive => true)`` does, polling faster.

        PostgreSQL waits until the segment holding the byte before the stop location and the backup
        history file are archived, checking once a second; this checks the same condition (see
        ``XLogArchiveIsBusy``) every few tens of milliseconds, which saves up to a second per
        backup. Needs :meth:`can_watch_archiver`."""
        end = parse_lsn(stop.end_xlog)
        begin = parse_lsn(start.begin_xlog)
        last_segment = wal_file_for_lsn(stop.timeline, max(end - 1, 0), segment_size)
        history = f"{wal_file_for_lsn(stop.timeline, begin, segment_size)}.{begin % segment_size:08X}.backup"
        names = [last_segment, history]
        waited = 0.0
        warned = 0.0
        step = 0
        while True:
            async with self.connection.cursor() as cursor:
                await cursor.execute(_BUSY_QUERY.encode(), (names,))
                busy = [str(row[0]) for row in await cursor.fetchall()]
            if not busy:
                return
            if waited - warned >= ARCHIVE_WARNING:
                warned = waited
                log.warning(
                    f"still waiting for the WAL archive ({waited:.0f}s): {', '.join(busy)}",
                    extra={"waiting_for": busy, "seconds": round(waited)},
                )
            delay = ARCHIVE_POLL[min(step, len(ARCHIVE_POLL) - 1)]
            step += 1
            await asyncio.sleep(delay)
            waited += delay

    async def abort_backup(self) -> None:
        """End the backup mode without waiting for WAL archiving (after a failure)."""
        if not self.in_backup or self.connection.closed:
            return
        call = self._stop_call(wait_for_archive=False)
        try:
            await self.connection.execute(_ABORT_QUERY.format(call=call).encode())
        except psycopg.Error as error:
            log.warning("could not stop the backup: closing the session ends it", extra={"error": str(error)})
        self.in_backup = False

    async def switch_wal(self) -> None:
        """``pg_switch_wal()`` so that the segment holding the backup end gets archived."""
        try:
            await self.connection.execute(b"SELECT pg_switch_wal()")
        except psycopg.Error as error:
            log.warning("pg_switch_wal() failed", extra={"error": _first_line(error)})

    async def create_restore_point(self, name: str) -> None:
        """``pg_create_restore_point(name)``; failures are ignored, as barman does."""
        try:
            await self.connection.execute(b"SELECT pg_create_restore_point(%s)", (name,))
        except psycopg.Error as error:
            log.debug("pg_create_restore_point() failed", extra={"error": _first_line(error)})

    async def close(self) -> None:
        await self.connection.close()
