"""Online base backups into a bucket, laid out as barman-cloud-backup 3.19 writes them.

Entry point: :func:`take_backup`. Step by step (barman-cloud-format.md section 4):

1. connect (libpq environment and/or conninfo), read the system identifier, check the version;
2. pick the backup ID (local time, ``%Y%m%dT%H%M%S``) and refuse it if ``base/<ID>/`` already
   holds objects (E-11);
3. read the server's metadata and start a non-exclusive backup (label ``Barman backup cloud
   <ID>``, immediate or spread checkpoint);
4. upload ``backup.info`` with ``status=STARTED`` (barman 3.19: the backup is visible at once);
5. stream every tablespace (``<OID>.tar``) and PGDATA (``data.tar``, then ``global/pg_control``,
   then configuration files kept outside PGDATA) as tar archives, compressed and uploaded in a
   pipeline (:mod:`barman_cloud.backup.archives`);
6. once every file is read, stop the backup (waiting for the WAL it needs to be archived), switch
   WAL and create the restore point ``barman_<ID>`` (primary only), then append ``backup_label``
   to the data archive and close it;
7. when every archive object is complete, upload ``backup.info`` with ``status=DONE`` and
   ``copy_stats``.

Any failure or cancellation after step 2 ends the backup mode on the server (explicitly, and in
any case by closing the session), lets the store abort the uploads in flight, and uploads
``backup.info`` with ``status=FAILED`` and barman's ``error`` text. ``DONE`` is written only after
every archive object was confirmed by the store, and backup.info is always the last object
written.

Calling it (what the instance sidecar's Backup service does, issue #6)::

    configuration = object_store.spec.configuration
    settings = settings_from(configuration, backup_name=name)
    options = backup_store_options(resolved.options, configuration, settings.jobs)
    store = open_store(resolved.destination, resolved.credentials, options)
    layout = ServerLayout(parse_destination(resolved.destination).prefix, server_name)
    result = await take_backup(store, layout, None, settings)  # libpq environment
    # result.backup_id, result.info (begin/end WAL and LSN, times, timeline, version, name...)

Failures raise the engine's errors (:mod:`barman_cloud.errors`) or ``CancelledError``; cancel the
task to stop a backup cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal, Protocol, runtime_checkable

from barman_cloud.backup import postgres, progress
from barman_cloud.backup.archives import ArchiveWriter, Counters, PartRecord, Pipeline
from barman_cloud.backup.encoders import encoder_for
from barman_cloud.backup.postgres import BackupStart, Connector, PostgresSession, ServerMetadata
from barman_cloud.backup.tarstream import DEFAULT_CHUNK
from barman_cloud.backup.walk import (
    external_config_files,
    major_version,
    pgdata_members,
    tablespace_rules,
    walk,
)
from barman_cloud.config.object_store import BarmanObjectStoreConfiguration
from barman_cloud.errors import BarmanCloudError, Conflict, InvalidInput
from barman_cloud.format import compression
from barman_cloud.format.backup_id import check_backup_name, is_backup_id, new_backup_id
from barman_cloud.format.backup_info import BackupInfo, format_backup_info
from barman_cloud.format.compression import Codec
from barman_cloud.format.keys import ServerLayout
from barman_cloud.storage import Provider, Store
from barman_cloud.storage.options import StoreOptions
from barman_cloud.verify.manifest import ArchiveChecksum, write_manifest

log = logging.getLogger("barman_cloud.backup")

GiB = 1024**3
DEFAULT_MAX_ARCHIVE_SIZE = 100 * GiB
"""barman's default ``--max-archive-size`` (``100GB``, which barman reads in base 1024)."""
MAX_ARCHIVE_SIZE = 1 << 40
"""barman caps the maximum archive size at 1 TiB for every provider."""
UPLOAD_PART_SIZE = 8 * 1024 * 1024
"""Multipart part size of backup uploads (S3, Azure); the store grows it past 1000 parts, so an
archive of any size fits S3's 10,000 parts."""
DEFAULT_READ_AHEAD = 2 * UPLOAD_PART_SIZE
DEFAULT_JOBS = 2
"""barman-cloud-backup's default ``--jobs`` (and the upstream plugin's when ``data.jobs`` is unset)."""


@dataclass(frozen=True)
class BackupSettings:
    """How to take one backup (the ObjectStore's ``data`` section, see :func:`settings_from`)."""

    compression: Codec | None = None
    """``data.compression``: gzip, bzip2, snappy or lz4 (None: plain ``.tar``)."""
    jobs: int = DEFAULT_JOBS
    """``data.jobs``: compression threads and archives read at once. The store's
    ``max_concurrency`` bounds the parts of one object uploaded at once (see
    :func:`backup_store_options`)."""
    immediate_checkpoint: bool = False
    """``data.immediateCheckpoint``: start with an immediate checkpoint instead of a spread one."""
    backup_name: str | None = None
    """A name to find the backup by (``backup_name`` in backup.info)."""
    backup_id: str | None = None
    """Force the backup ID (``YYYYMMDDTHHMMSS``); by default the local time at start, as barman."""
    tags: Mapping[str, str] = field(default_factory=dict)
    """Tags of every object of the backup (``tags``)."""
    max_archive_size: int = DEFAULT_MAX_ARCHIVE_SIZE
    """Past this many (compressed) bytes an archive continues in a new part (``data_0001.tar``)."""
    wait_for_archive: bool = True
    """Let ``pg_backup_stop`` wait until the WAL the backup needs is archived (barman always
    does; only tests of servers without a working archive_command turn it off)."""
    progress_interval: float = 30.0
    """Seconds between progress log lines."""
    chunk_size: int = DEFAULT_CHUNK
    """Tar bytes read and compressed as one unit of work."""
    read_ahead: int = DEFAULT_READ_AHEAD
    """Bytes an archive object being uploaded may hold ahead of the store (chunks being compressed
    and compressed bytes waiting): about one multipart part more than the store's own buffers, so
    the next part is ready when an upload slot frees."""

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise InvalidInput(f"jobs must be at least 1, not {self.jobs}")
        if self.compression is not None and self.compression not in compression.BACKUP_CODECS:
            raise InvalidInput(
                f"{self.compression.name} is not a base-backup compression",
                hint="use gzip, bzip2, snappy or lz4",
            )
        if self.backup_name is not None:
            check_backup_name(self.backup_name)
        if self.backup_id is not None and not is_backup_id(self.backup_id):
            raise InvalidInput(f"{self.backup_id!r} is not a backup ID", hint="YYYYMMDDTHHMMSS")
        if self.max_archive_size < 1:
            raise InvalidInput("the maximum archive size must be positive")
        if self.progress_interval <= 0:
            raise InvalidInput("the progress interval must be positive")


def parse_size(text: str) -> int:
    """A size as barman reads ``--max-archive-size``: ``NNN[KMGT...]B`` in base 1024,
    ``NNN[KMGT...]iB`` in base 1000 (sic), a plain number of bytes otherwise."""
    value = text.strip().upper()
    try:
        if value.endswith("B"):
            base, index = (1000, 3) if value[-2:-1] == "I" else (1024, 2)
            multiplier = base
            for prefix in "KMGTPEZY":
                if len(value) >= index and value[-index] == prefix:
                    size = int(float(value[:-index]) * multiplier)
                    break
                multiplier *= base
            else:
                size = int(value[: -index + 1])
        else:
            size = int(value)
    except (ValueError, IndexError):
        raise InvalidInput(f"{text!r} is not a size", hint="e.g. 100GB, 512MB or a number of bytes") from None
    if size < 1:
        raise InvalidInput(f"{text!r} is not a size", hint="it must be positive")
    return size


def _option(args: tuple[str, ...], *names: str) -> str | None:
    """The value of the last ``--name=value`` / ``--name value`` among ``args`` (tokens may
    hold ``--name value`` in one element, as upstream users write them)."""
    tokens = [part for arg in args for part in (arg.split(None, 1) if arg.startswith("-") else [arg])]
    value = None
    for index, token in enumerate(tokens):
        name, sep, rest = token.partition("=")
        if name in names:
            if sep:
                value = rest
            elif index + 1 < len(tokens):
                value = tokens[index + 1]
    return value


def settings_from(configuration: BarmanObjectStoreConfiguration, **overrides: Any) -> BackupSettings:
    """Backup settings from an ObjectStore's configuration (``data`` and ``tags``).

    ``data.additionalCommandArgs`` written for barman-cloud-backup keep their meaning for
    ``--max-archive-size``/``-S``; ``data.encryption`` is a store option
    (:func:`backup_store_options`). ``overrides`` replace any field."""
    data = configuration.data
    values: dict[str, Any] = {
        "compression": compression.codec_named(data.compression),
        "jobs": data.jobs or DEFAULT_JOBS,
        "immediate_checkpoint": data.immediate_checkpoint,
        "tags": dict(configuration.tags),
    }
    size = _option(data.additional_command_args, "--max-archive-size", "-S")
    if size is not None:
        values["max_archive_size"] = parse_size(size)
    values.update(overrides)
    return BackupSettings(**values)


_S3_ENCRYPTION: dict[str, Literal["AES256", "aws:kms"]] = {"AES256": "AES256", "aws:kms": "aws:kms"}


def backup_store_options(
    options: StoreOptions, configuration: BarmanObjectStoreConfiguration, jobs: int
) -> StoreOptions:
    """The store options for a backup's uploads: ``data.encryption`` (S3 server-side encryption,
    as barman-cloud-backup ``--encryption``), ``jobs`` parts of an object in flight, and parts of
    :data:`UPLOAD_PART_SIZE` on S3 and Azure unless the ObjectStore sets a size (memory: about
    ``(jobs + 2)`` parts per archive being uploaded)."""
    provider = configuration.provider
    encryption = _S3_ENCRYPTION.get(configuration.data.encryption or "")
    if encryption is not None and provider is Provider.S3:
        options = replace(options, encryption=replace(options.encryption, s3=encryption))
    if options.part_size is None and provider in (Provider.S3, Provider.AZURE):
        options = replace(options, part_size=UPLOAD_PART_SIZE)
    return replace(options, max_concurrency=max(1, jobs))


@dataclass(frozen=True)
class BackupResult:
    backup_id: str
    info: BackupInfo
    """The backup.info written last (status DONE)."""
    archives: tuple[str, ...]
    """Keys of the archive objects, tablespaces first."""
    tar_bytes: int
    """Bytes read from the cluster (tar stream before compression)."""
    uploaded_bytes: int
    """Bytes stored (after compression)."""
    seconds: float


def _first_line(error: BaseException) -> str:
    """barman's ``error`` detail: the first line of the message, else the exception's class name."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


async def take_backup(
    store: Store,
    layout: ServerLayout,
    postgres_source: str | Connector | None = None,
    settings: BackupSettings | None = None,
) -> BackupResult:
    """Take an online base backup of the PostgreSQL server behind ``postgres_source`` into
    ``layout``'s server in ``store``.

    ``postgres_source``: a conninfo string (None: libpq's environment only), or a coroutine
    function returning an open autocommit :class:`psycopg.AsyncConnection`. The session is
    closed at the end either way.

    Returns when backup.info says DONE. Raises the error that stopped the backup (the engine's
    errors, ``CancelledError`` if cancelled); if the backup had started by then, its backup.info
    says FAILED (unless the store refused that upload too). Either way the server is no longer
    in backup mode.
    """
    settings = settings or BackupSettings()
    connect = postgres_source if callable(postgres_source) else postgres.connector(postgres_source)
    session = PostgresSession(await connect())
    try:
        return await _Backup(store, layout, session, settings).run()
    finally:
        await _finish_session(session)


async def _finish_session(session: PostgresSession) -> None:
    """End the backup mode if it is still on, then close the session, even when cancelled."""

    async def finish() -> None:
        try:
            await asyncio.wait_for(session.abort_backup(), timeout=30)
        except Exception as error:  # closing the session below ends a non-exclusive backup anyway
            log.warning("could not end the backup mode; closing the session", extra={"error": str(error)})
        finally:
            await session.close()

    task = asyncio.ensure_future(finish())
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            with contextlib.suppress(BaseException):
                await asyncio.wait([task], timeout=30)
        raise


@runtime_checkable
class _AbortsIncompleteUploads(Protocol):
    """A store that can list and abort multipart uploads left in progress (S3)."""

    async def abort_incomplete_uploads(
        self, prefix: str, *, initiated_before: datetime, keep_prefix: str | None = None
    ) -> int: ...


class _Backup:
    def __init__(
        self, store: Store, layout: ServerLayout, session: PostgresSession, settings: BackupSettings
    ):
        self.store = store
        self.layout = layout
        self.session = session
        self.settings = settings
        self.info = BackupInfo()
        self.backup_id = ""
        self.counters = Counters()
        self.started = time.monotonic()
        self.started_at = datetime.now(UTC)
        self.announced = False
        """True once the backup started on the server: from then on it ends with a backup.info."""
        self.start: BackupStart | None = None

    async def run(self) -> BackupResult:
        session = self.session
        session.check_version()
        systemid = await session.system_identifier()
        self.backup_id = self.settings.backup_id or new_backup_id()
        await self._refuse_existing()
        await self._abort_leftover_uploads()
        self.info = BackupInfo(server_name="cloud", systemid=systemid)
        failed: BaseException | None = None
        try:
            archives = await self._coordinate()
        except BaseException as error:
            failed = error
            self.info = self.info.with_status(
                "FAILED", error=f"failure uploading data ({_first_line(error)})"
            )
            log.error(
                f"backup {self.backup_id} failed: {_first_line(error)}",
                extra={"backup_id": self.backup_id, "error": _first_line(error)},
            )
            leaf = _leaf(error)
            if leaf is not error:
                raise leaf from None
            raise
        finally:
            await self._end_backup_mode()
            if self.settings.backup_name is not None:
                self.info = replace(self.info, backup_name=self.settings.backup_name)
            await self._upload_final_info(failed)
        log.info(
            f"backup {self.backup_id} completed: end WAL {self.info.end_wal}",
            extra={
                "backup_id": self.backup_id,
                "begin_wal": self.info.begin_wal,
                "end_wal": self.info.end_wal,
                "tar_bytes": self.counters.tar_bytes,
                "uploaded_bytes": self.counters.uploaded,
                "seconds": round(time.monotonic() - self.started, 3),
            },
        )
        return BackupResult(
            backup_id=self.backup_id,
            info=self.info,
            archives=archives,
            tar_bytes=self.counters.tar_bytes,
            uploaded_bytes=self.counters.uploaded,
            seconds=time.monotonic() - self.started,
        )

    async def _abort_leftover_uploads(self) -> None:
        """Abort the multipart uploads an earlier backup of this server left in progress: a process
        killed in the middle of an upload runs no abort, and its parts stay billable. CloudNativePG
        takes one backup of a cluster at a time, so an upload under ``base/`` that started before
        this backup (and is not this backup's) is such a leftover. Failing to clean is only logged."""
        if not isinstance(self.store, _AbortsIncompleteUploads):
            return
        own = self.layout.backup_dir(self.backup_id)
        try:
            aborted = await self.store.abort_incomplete_uploads(
                self.layout.base, initiated_before=self.started_at, keep_prefix=own
            )
        except BarmanCloudError as error:
            log.warning(
                "could not clean up multipart uploads left by earlier backups",
                extra={"backup_id": self.backup_id, "error": str(error)},
            )
            return
        if aborted:
            log.info(
                "aborted multipart uploads left in progress by earlier backups",
                extra={"backup_id": self.backup_id, "aborted": aborted},
            )

    async def _refuse_existing(self) -> None:
        prefix = self.layout.backup_dir(self.backup_id)
        async for _entry in self.store.list(prefix, delimiter="/"):
            raise Conflict(
                f"backup {self.backup_id} already exists in {self.store.location.url} ({prefix})",
                hint="backup IDs are the local time at second resolution: wait a second and retry",
            )

    async def _put_info(self) -> None:
        await self.store.put(
            self.layout.backup_info(self.backup_id),
            format_backup_info(self.info),
            tags=dict(self.settings.tags) or None,
        )

    async def _end_backup_mode(self) -> None:
        if not self.session.in_backup:
            return
        task = asyncio.ensure_future(self.session.abort_backup())
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(task), timeout=30)

    async def _upload_final_info(self, failed: BaseException | None) -> None:
        """backup.info with the final status, last, even if the backup was cancelled."""
        if not self.announced:
            # Failed before pg_backup_start succeeded: nothing of this backup is in the bucket, and
            # a FAILED backup.info without begin_wal would only trip barman's readers (E-9).
            return
        task = asyncio.ensure_future(self._put_info())
        try:
            await asyncio.shield(task)
        except BaseException as error:
            if not task.done():
                raise  # cancelled again: the upload goes on in the background
            log.error(
                f"backup {self.backup_id}: backup.info not uploaded: {_first_line(error)}",
                extra={"backup_id": self.backup_id, "error": _first_line(error)},
            )
            self.info = self.info.with_status(
                "FAILED", error=f"failure uploading backup.info file ({_first_line(error)})"
            )
            if failed is None:
                raise

    async def _coordinate(self) -> tuple[str, ...]:
        session, settings = self.session, self.settings
        metadata = await session.metadata()
        self.info = replace(
            self.info,
            pgdata=metadata.pgdata,
            version=metadata.version,
            xlog_segment_size=metadata.xlog_segment_size,
            config_file=metadata.config_file,
            hba_file=metadata.hba_file,
            ident_file=metadata.ident_file,
            included_files=metadata.included_files,
            tablespaces=metadata.tablespaces or None,
            data_checksums=metadata.data_checksums,
            summarize_wal=metadata.summarize_wal,
            cluster_size=metadata.cluster_size,
        )
        start = await session.start_backup(
            f"Barman backup cloud {self.backup_id}", settings.immediate_checkpoint, metadata.xlog_segment_size
        )
        self.announced = True
        self.start = start
        self.info = self.info.with_status(
            "STARTED",
            begin_time=start.begin_time,
            begin_xlog=start.begin_xlog,
            timeline=start.timeline,
            begin_wal=start.begin_wal,
            begin_offset=start.begin_offset,
        )
        log.info(
            f"backup {self.backup_id} started at {start.begin_xlog} ({start.begin_wal})",
            extra={"backup_id": self.backup_id, "begin_wal": start.begin_wal, "begin_xlog": start.begin_xlog},
        )
        await self._put_info()
        reporter = asyncio.create_task(
            progress.report(
                self.backup_id,
                lambda: (self.counters.tar_bytes, self.counters.uploaded),
                metadata.cluster_size,
                settings.progress_interval,
            )
        )
        try:
            records = await self._archives(metadata)
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
        await self._put_manifest(records)
        self.info = self.info.with_status("DONE", copy_stats=self._copy_stats(records))
        return tuple(record.key for _name, parts in records for record in parts)

    async def _put_manifest(self, records: list[tuple[str, list[PartRecord]]]) -> None:
        """The archives' checksums (:mod:`barman_cloud.verify.manifest`), before backup.info."""
        folder = self.layout.backup_dir(self.backup_id)
        entries = [
            ArchiveChecksum(part.key[len(folder) :], part.size, part.sha256)
            for _name, parts in records
            for part in parts
            if part.sha256 is not None
        ]
        await write_manifest(self.store, self.layout, self.backup_id, entries, self.settings.tags)

    async def _archives(self, metadata: ServerMetadata) -> list[tuple[str, list[PartRecord]]]:
        settings = self.settings
        pool = ThreadPoolExecutor(max_workers=settings.jobs, thread_name_prefix="backup-compress")
        readers = ThreadPoolExecutor(max_workers=settings.jobs, thread_name_prefix="backup-read")
        try:
            async with asyncio.TaskGroup() as group:
                pipeline = Pipeline(
                    store=self.store,
                    group=group,
                    compression_pool=pool,
                    read_pool=readers,
                    encoder=partial(encoder_for, settings.compression),
                    jobs=settings.jobs,
                    chunk_size=settings.chunk_size,
                    read_ahead=settings.read_ahead,
                    max_archive_size=min(settings.max_archive_size, MAX_ARCHIVE_SIZE),
                    # Tells the store the objects are big: multipart from the first bytes, no
                    # buffering to find out (an over-estimate only makes parts bigger).
                    size_hint=min(metadata.cluster_size or MAX_ARCHIVE_SIZE, settings.max_archive_size),
                    tags=settings.tags,
                    counters=self.counters,
                )
                slots = asyncio.Semaphore(settings.jobs)
                writers: list[ArchiveWriter] = []
                walks = []
                for _name, oid, location in metadata.tablespaces:
                    writer = self._writer(pipeline, str(oid))
                    writers.append(writer)
                    root = os.path.join(metadata.pgdata, location)  # in-place tablespaces are relative
                    walks.append(group.create_task(self._walk_tablespace(writer, root, metadata, slots)))
                data = self._writer(pipeline, "data")
                writers.append(data)
                walks.append(group.create_task(self._walk_pgdata(data, metadata, slots)))
                await asyncio.gather(*walks)
                log.debug(
                    "every file read",
                    extra={"backup_id": self.backup_id, "tar_bytes": self.counters.tar_bytes},
                )
                await self._stop(metadata)
                log.debug("backup stopped on the server", extra={"backup_id": self.backup_id})
                owner = await asyncio.to_thread(os.stat, metadata.pgdata)
                assert self.info.backup_label is not None
                await data.add_file(
                    "backup_label", self.info.backup_label.encode(), owner.st_uid, owner.st_gid
                )
                await data.close()
                records = [(writer.base_name, await writer.wait()) for writer in writers]
                log.debug("every archive uploaded", extra={"backup_id": self.backup_id})
        except BaseExceptionGroup as failures:
            raise _leaf(failures) from None
        finally:
            for executor in (readers, pool):
                await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
        return records

    def _writer(self, pipeline: Pipeline, base_name: str) -> ArchiveWriter:
        key = partial(self.layout.archive, self.backup_id, base_name, codec=self.settings.compression)
        return ArchiveWriter(pipeline, base_name, lambda part: key(part))

    async def _walk_tablespace(
        self, writer: ArchiveWriter, root: str, metadata: ServerMetadata, slots: asyncio.Semaphore
    ) -> None:
        exclude, include = tablespace_rules(major_version(metadata.version))
        async with slots:
            await writer.add(walk(root, exclude, include))
            await writer.close()

    async def _walk_pgdata(
        self, writer: ArchiveWriter, metadata: ServerMetadata, slots: asyncio.Semaphore
    ) -> None:
        external = external_config_files(
            metadata.pgdata, metadata.config_file, metadata.hba_file, metadata.ident_file
        )
        outside = [path for path in metadata.included_files or () if not path.startswith(metadata.pgdata)]
        if outside:
            log.warning(
                "configuration files included from outside PGDATA are not backed up: back them up yourself",
                extra={"backup_id": self.backup_id, "files": outside},
            )
        async with slots:
            await writer.add(pgdata_members(metadata.pgdata, metadata.tablespaces, external))
        if writer.tar.stats.skipped:
            log.info(
                "files vanished during the backup (WAL replay recreates them)",
                extra={"backup_id": self.backup_id, "count": len(writer.tar.stats.skipped)},
            )

    async def _stop(self, metadata: ServerMetadata) -> None:
        """Stop the backup; wait (as barman does) until the WAL it needs is archived.

        When the session may watch the archiver, the wait is ours (same condition as PostgreSQL's,
        checked every few tens of milliseconds instead of every second); otherwise PostgreSQL's."""
        session, segment_size = self.session, metadata.xlog_segment_size
        wait = self.settings.wait_for_archive and await session.archiving_required(metadata.in_recovery)
        watch = wait and await session.can_watch_archiver()
        stop = await session.stop_backup(segment_size, wait_for_archive=wait and not watch)
        if watch:
            assert self.start is not None
            await session.wait_for_archive(self.start, stop, segment_size)
        self.info = replace(
            self.info,
            backup_label=stop.backup_label,
            end_time=stop.end_time,
            end_xlog=stop.end_xlog,
            end_wal=stop.end_wal,
            end_offset=stop.end_offset,
        )
        if not metadata.in_recovery:
            await self.session.switch_wal()
            await self.session.create_restore_point(f"barman_{self.backup_id}")

    def _copy_stats(self, records: list[tuple[str, list[PartRecord]]]) -> dict[str, Any]:
        """barman's ``copy_stats`` for an object-store backup (times in seconds)."""
        starts = [part.started for _name, parts in records for part in parts]
        ends = [part.finished or part.started for _name, parts in records for part in parts]
        copy_time: dict[str, float] = {}
        serialized: dict[str, float] = {}
        for name, parts in records:
            copy_time[name] = round(
                max(p.finished or p.started for p in parts) - min(p.started for p in parts), 6
            )
            serialized[name] = round(sum((p.finished or p.started) - p.started for p in parts), 6)
        return {
            "total_time": round(time.monotonic() - self.started, 6),
            "number_of_workers": self.settings.jobs,
            "analysis_time": 0,
            "analysis_time_per_item": {name: 0 for name, _parts in records},
            "copy_time_per_item": copy_time,
            "serialized_copy_time_per_item": serialized,
            "copy_time": round(max(ends) - min(starts), 6) if starts else 0,
            "serialized_copy_time": round(sum(serialized.values()), 6),
        }
