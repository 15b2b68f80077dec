"""``verify``: re-read backups and the WAL they need, and report every missing or damaged object.

For each backup (one, ``latest``, or all of them):

- ``backup.info`` is read and must say DONE; the archives barman's rule finds (``data`` and one
  per tablespace, extra parts included) must all be there;
- every archive is read to its end: its checksum is verified (the one recorded with the object,
  and the backup's checksum manifest when it has one, see :mod:`.manifest`), it must decompress
  and be a complete tar archive (:mod:`.tar_check`). Archives barman wrote have no checksum of
  ours: for them the compression's own checks (gzip and bzip2 CRCs) and the tar structure are
  what is checked;
- every WAL segment from the backup's ``begin_wal`` to its ``end_wal`` must be archived, match its
  checksum, decompress to exactly one segment, and carry the page header its name implies:
  position, timeline, segment size, and the backup's system identifier (:mod:`.wal_header`);
- with ``to_latest``, the WAL after the backup too, to the end of the archive, following timeline
  switches the way PostgreSQL's ``recovery_target_timeline = 'latest'`` does (``.history``
  files): a segment missing before the last archived one of the chain is a gap.

Objects are read in parallel (``jobs`` at a time), each as a stream: memory stays at a few chunks
per object whatever the backup's size. Decompression and tar parsing run in worker threads.

Failures to reach the store (:class:`~barman_cloud.errors.Unavailable`, Forbidden) end the run:
they say nothing about the bucket's content. Everything else is a :class:`Problem` in the report.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import cast

from barman_cloud.catalog.archives import list_archives
from barman_cloud.catalog.listing import DONE, Backup, load_catalog, read_backup
from barman_cloud.catalog.resolve import resolve_backup_id
from barman_cloud.errors import Corrupt, InvalidInput, NotFound
from barman_cloud.format.backup_id import is_backup_id
from barman_cloud.format.compression import Codec, Decompressor
from barman_cloud.format.keys import ServerLayout
from barman_cloud.format.wal import (
    DEFAULT_SEGMENT_SIZE,
    WalKind,
    WalName,
    check_segment_size,
    history_name,
    parse_lsn,
    segment_name,
)
from barman_cloud.storage import ObjectInfo, ReadableStore, read_all
from barman_cloud.storage.integrity import Expected, verified
from barman_cloud.verify.manifest import ArchiveChecksum, read_manifest
from barman_cloud.verify.tar_check import BAD_ARCHIVE as BAD_ARCHIVE
from barman_cloud.verify.tar_check import TRUNCATED as TRUNCATED
from barman_cloud.verify.tar_check import UNDECODABLE as UNDECODABLE
from barman_cloud.verify.tar_check import ContentError, TarChecker
from barman_cloud.verify.wal_header import LONG_HEADER_SIZE, header_problems

log = logging.getLogger(__name__)

DEFAULT_JOBS = 4
INPUT_SLICE = 64 * 1024

# Problem kinds.
MISSING = "missing"
"""An object a restore needs is not in the bucket (an archive, backup.info, a history file)."""
WAL_GAP = "wal-gap"
"""WAL segments missing from the chain a restore replays."""
CHECKSUM = "checksum-mismatch"
"""The bytes differ from the checksum recorded when the object was written."""
# UNDECODABLE (tar_check): the object does not decompress (a damaged or truncated stream).
# TRUNCATED (tar_check): a tar archive that ends early, a WAL segment shorter than a segment.
# BAD_ARCHIVE (tar_check): a tar header that is not one (bad checksum, bad size).
BAD_WAL = "bad-wal"
"""A WAL segment whose page header does not match its name (position, timeline, size, magic)."""
FOREIGN_WAL = "foreign-wal"
"""A WAL segment of another cluster (system identifier)."""
UNUSABLE = "unusable-backup"
"""A backup that is not restorable as it stands (status not DONE, unreadable backup.info)."""


@dataclass(frozen=True)
class Problem:
    kind: str
    subject: str
    """The object key, WAL name range or backup ID concerned."""
    message: str
    backup_id: str | None = None


@dataclass
class BackupReport:
    backup_id: str
    status: str | None = None
    timeline: int | None = None
    system_id: str | None = None
    begin_wal: str | None = None
    end_wal: str | None = None
    archives: int = 0
    archive_bytes: int = 0
    """Stored bytes of the archives read."""
    tar_members: int = 0
    checksummed_archives: int = 0
    """Archives checked against a checksum of ours (their metadata or the manifest)."""
    wal_segments: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class ChainReport:
    """The WAL after a backup, to the end of the archive (``to_latest``)."""

    backup_id: str
    timelines: list[int] = field(default_factory=list)
    first_wal: str | None = None
    last_wal: str | None = None
    segments: int = 0
    problems: list[Problem] = field(default_factory=list)


@dataclass
class Report:
    server: str
    backups: list[BackupReport] = field(default_factory=list)
    chains: list[ChainReport] = field(default_factory=list)
    objects_read: int = 0
    bytes_read: int = 0

    @property
    def problems(self) -> list[Problem]:
        found = [p for b in self.backups for p in b.problems] + [p for c in self.chains for p in c.problems]
        unique: dict[tuple[str, str, str], Problem] = {}
        for problem in found:
            unique.setdefault((problem.kind, problem.subject, problem.message), problem)
        return list(unique.values())

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class _WalObject:
    key: str
    name: WalName
    codec: Codec | None
    size: int


@dataclass
class _WalIndex:
    """What ``wals/`` holds, from listings: objects by WAL name, history files by timeline."""

    by_name: dict[str, list[_WalObject]] = field(default_factory=dict)
    histories: dict[int, _WalObject] = field(default_factory=dict)
    listed: set[str] = field(default_factory=set)
    """Prefixes already listed."""

    def add(self, obj: _WalObject) -> None:
        if obj.name.kind is WalKind.HISTORY:
            self.histories[obj.name.timeline] = obj
        variants = self.by_name.setdefault(obj.name.name, [])
        if all(v.key != obj.key for v in variants):
            variants.append(obj)
            variants.sort(key=lambda v: v.key)

    def segment(self, name: str) -> list[_WalObject]:
        """The objects holding segment ``name``: itself in any compression, else its ``.partial``."""
        return self.by_name.get(name) or self.by_name.get(f"{name}.partial") or []


class Verifier:
    """Verifies backups of one server in one store (see the module docstring)."""

    def __init__(self, store: ReadableStore, layout: ServerLayout, *, jobs: int = DEFAULT_JOBS) -> None:
        if jobs < 1:
            raise InvalidInput(f"jobs must be at least 1, not {jobs}")
        self.store = store
        self.layout = layout
        self._slots = asyncio.Semaphore(jobs)
        self._index = _WalIndex()
        self._index_lock = asyncio.Lock()
        self._jobs = jobs
        self._wal_results: dict[tuple[str, int | None], list[tuple[str, str]]] = {}
        self.report = Report(layout.server)

    # -- entry points ---------------------------------------------------------------------------

    async def run(
        self, selection: str | None, *, all_backups: bool = False, to_latest: bool = False
    ) -> Report:
        """Verify the backup ``selection`` designates (an ID, a name, ``latest``...), or every
        backup with ``all_backups``."""
        ids = await self._select(selection, all_backups)
        for backup_id in ids:
            backup_report, backup = await self.verify_backup(backup_id)
            self.report.backups.append(backup_report)
            if to_latest and backup is not None and backup_report.end_wal and backup_report.timeline:
                self.report.chains.append(await self.verify_chain(backup))
        return self.report

    async def _select(self, selection: str | None, all_backups: bool) -> list[str]:
        if not all_backups:
            if selection is None:
                raise InvalidInput("no backup to verify", hint="give a backup ID, a name, latest, or --all")
            if is_backup_id(selection):
                return [selection]
            catalog = await load_catalog(self.store, self.layout)
            return [resolve_backup_id(catalog, selection)]
        catalog = await load_catalog(self.store, self.layout)
        for item in catalog.unreadable:
            self.report.backups.append(
                BackupReport(
                    item.backup_id,
                    problems=[
                        Problem(
                            UNUSABLE, self.layout.backup_info(item.backup_id), item.reason, item.backup_id
                        )
                    ],
                )
            )
        # Backups that did not complete are not restorable and not verified (listed by backup-list).
        return [b.backup_id for b in catalog if b.status == DONE]

    # -- one backup -----------------------------------------------------------------------------

    async def verify_backup(self, backup_id: str) -> tuple[BackupReport, Backup | None]:
        report = BackupReport(backup_id)

        def problem(kind: str, subject: str, message: str) -> None:
            report.problems.append(Problem(kind, subject, message, backup_id))

        info_key = self.layout.backup_info(backup_id)
        try:
            backup = await read_backup(self.store, self.layout, backup_id)
        except NotFound:
            raise NotFound(
                f"backup {backup_id} of server {self.layout.server} does not exist ({info_key})",
                hint="list the backups with `barman-cloud-plugin backup-list`",
            ) from None
        except Corrupt as error:
            problem(CHECKSUM, info_key, error.message)
            return report, None
        except InvalidInput as error:
            problem(UNUSABLE, info_key, f"backup.info cannot be parsed: {error}")
            return report, None
        self.report.objects_read += 1
        info = backup.info
        report.status, report.timeline, report.system_id = info.status, info.timeline, info.systemid
        report.begin_wal, report.end_wal = info.begin_wal, info.end_wal
        if info.status != DONE:
            problem(UNUSABLE, info_key, f"status {info.status}: the backup did not complete")
            return report, None
        if info.snapshots_info:
            problem(UNUSABLE, info_key, "a snapshot backup: its data is in disk snapshots, not in the bucket")
            return report, None
        archive_task = asyncio.ensure_future(self._verify_archives(backup, report, problem))
        wal_task = asyncio.ensure_future(self._verify_backup_wal(backup, report, problem))
        try:
            await asyncio.gather(archive_task, wal_task)
        except BaseException:
            archive_task.cancel()
            wal_task.cancel()
            await asyncio.gather(archive_task, wal_task, return_exceptions=True)
            raise
        return report, backup

    async def _verify_archives(
        self, backup: Backup, report: BackupReport, problem: Callable[[str, str, str], None]
    ) -> None:
        backup_id, info = backup.backup_id, backup.info
        archives = await list_archives(self.store, self.layout, backup_id, info)
        folder = self.layout.backup_dir(backup_id)
        for base in archives.missing:
            problem(
                MISSING, f"{folder}{base}.tar*", f"the archive of {base!r} is missing: restore is impossible"
            )
        for base, keys in archives.duplicates.items():
            problem(BAD_ARCHIVE, keys[0], f"several main archives for {base!r}: {', '.join(keys)}")
        manifest: dict[str, ArchiveChecksum] | None = None
        try:
            manifest = await read_manifest(self.store, self.layout, backup_id)
        except Corrupt as error:
            problem(CHECKSUM, f"{folder}bcp_checksums.json", error.message)
        listed = {obj.key[len(folder) :]: obj for obj in archives.objects}
        for name in sorted(set(manifest or ()) - set(listed)):
            problem(
                MISSING, f"{folder}{name}", "recorded in the backup's checksum manifest but not in the bucket"
            )

        async def one(key: str, codec: Codec | None, size: int, expected: ArchiveChecksum | None) -> None:
            if expected is not None and expected.size != size:
                problem(CHECKSUM, key, f"{size} bytes in the bucket, {expected.size} when it was written")
                return
            outcome = await self._read_archive(key, codec, expected)
            if isinstance(outcome, Problem):
                report.problems.append(Problem(outcome.kind, key, outcome.message, backup_id))
                return
            members, checked_against_ours = outcome
            report.archives += 1
            report.archive_bytes += size
            report.tar_members += members
            report.checksummed_archives += checked_against_ours

        async with asyncio.TaskGroup() as group:
            for name, obj in listed.items():
                group.create_task(one(obj.key, obj.codec, obj.size, (manifest or {}).get(name)))

    async def _read_archive(
        self, key: str, codec: Codec | None, expected: ArchiveChecksum | None
    ) -> tuple[int, bool] | Problem:
        """Read one archive through (tar members, whether a checksum of ours covered it)."""
        checker = TarChecker(codec, key)
        async with self._slots:
            chunks = self.store.get(key)
            own = False
            if expected is not None:
                chunks = verified(
                    chunks, Expected("sha256", expected.sha256, "the backup's checksum manifest"), key
                )
                own = True
            try:
                await _read_through(chunks, checker.feed, checker.finish)
            except NotFound:
                return Problem(MISSING, key, "deleted while being verified")
            except Corrupt as error:
                return Problem(_kind_of(error), key, error.message)
        self.report.objects_read += 1
        summary = checker.summary
        self.report.bytes_read += summary.stored_bytes
        if not own:
            with contextlib.suppress(NotFound):
                own = (await self.store.head(key)).sha256 is not None
        return summary.members, own

    # -- WAL ------------------------------------------------------------------------------------

    async def _verify_backup_wal(
        self, backup: Backup, report: BackupReport, problem: Callable[[str, str, str], None]
    ) -> None:
        info = backup.info
        if not info.begin_wal or not info.end_wal or info.timeline is None:
            problem(UNUSABLE, self.layout.backup_info(backup.backup_id), "backup.info has no begin/end WAL")
            return
        segment_size = check_segment_size(info.xlog_segment_size or DEFAULT_SEGMENT_SIZE)
        begin = WalName.parse(info.begin_wal).segment_number(segment_size)
        end = WalName.parse(info.end_wal).segment_number(segment_size)
        timeline = WalName.parse(info.begin_wal).timeline
        names = [segment_name(timeline, number, segment_size) for number in range(begin, end + 1)]
        await self._list_wal_dirs({name[:16] for name in names})
        problems = await self._check_segments(names, backup, gaps_are=WAL_GAP)
        report.wal_segments = len(names) - sum(1 for p in problems if p.kind == WAL_GAP)
        report.problems.extend(problems)

    async def verify_chain(self, backup: Backup) -> ChainReport:
        """The WAL after ``backup`` to the end of the archive, across timeline switches."""
        info = backup.info
        chain = ChainReport(backup.backup_id)
        assert info.end_wal is not None and info.timeline is not None
        segment_size = check_segment_size(info.xlog_segment_size or DEFAULT_SEGMENT_SIZE)
        await self._list_wal_dirs(None)
        histories = await self._read_histories(chain, backup.backup_id)
        start_tli = WalName.parse(info.end_wal).timeline
        end_lsn = parse_lsn(info.end_xlog) if info.end_xlog else 0
        ranges = _timeline_ranges(start_tli, end_lsn, histories)
        chain.timelines = [tli for tli, _b, _e in ranges]
        first = WalName.parse(info.end_wal).segment_number(segment_size) + 1
        names: list[str] = []
        for position, (tli, begin, end) in enumerate(ranges):
            if position > 0 and tli not in self._index.histories:
                chain.problems.append(
                    Problem(
                        MISSING, f"{self.layout.wals}{history_name(tli)}", "timeline history file missing"
                    )
                )
            low = first if position == 0 else begin // segment_size
            if end is not None:
                names += [segment_name(tli, n, segment_size) for n in range(low, end // segment_size)]
                continue
            # The last timeline: up to the last segment archived on it.
            archived = [
                WalName.parse(name).segment_number(segment_size)
                for name in self._index.by_name
                if len(name) >= 24 and name[:8] == f"{tli:08X}" and _is_segment_or_partial(name)
            ]
            last = max([n for n in archived if n >= low], default=low - 1)
            names += [segment_name(tli, n, segment_size) for n in range(low, last + 1)]
        problems = await self._check_segments(names, backup, gaps_are=WAL_GAP)
        chain.problems.extend(problems)
        present = [name for name in names if self._index.segment(name)]
        chain.segments = len(present)
        chain.first_wal = names[0] if names else None
        chain.last_wal = present[-1] if present else None
        return chain

    async def _read_histories(self, chain: ChainReport, backup_id: str) -> dict[int, list[tuple[int, int]]]:
        """Every timeline's ancestry from its history file: [(parent timeline, switch LSN)...]."""
        histories: dict[int, list[tuple[int, int]]] = {}
        for tli, obj in sorted(self._index.histories.items()):
            try:
                text = await read_all(self.store, obj.key)
                if obj.codec is not None:
                    text = await asyncio.to_thread(obj.codec.decompress, text)
                histories[tli] = _parse_history(text.decode("utf-8", errors="replace"))
            except Corrupt as error:
                chain.problems.append(Problem(_kind_of(error), obj.key, error.message, backup_id))
            except (InvalidInput, ValueError, OSError) as error:
                chain.problems.append(
                    Problem(UNDECODABLE, obj.key, f"unreadable history file: {error}", backup_id)
                )
        return histories

    async def _list_wal_dirs(self, hash_dirs: set[str] | None) -> None:
        """List ``wals/`` (None: all of it) or the given hash directories, once each."""
        prefixes = (
            [self.layout.wals]
            if hash_dirs is None
            else [f"{self.layout.wals}{d}/" for d in sorted(hash_dirs)]
        )
        if hash_dirs is not None:
            prefixes.append(self.layout.wals)  # history files live directly under wals/
        async with self._index_lock:
            for prefix in prefixes:
                if prefix in self._index.listed or self.layout.wals in self._index.listed:
                    continue
                delimiter = "/" if prefix == self.layout.wals and hash_dirs is not None else None
                async for entry in self.store.list(prefix, delimiter=delimiter):
                    if isinstance(entry, ObjectInfo):
                        parsed = self.layout.parse_wal_key(entry.key)
                        if parsed is not None:
                            self._index.add(_WalObject(entry.key, parsed[0], parsed[1], entry.size))
                if delimiter is None:
                    self._index.listed.add(prefix)

    async def _check_segments(self, names: list[str], backup: Backup, *, gaps_are: str) -> list[Problem]:
        """Check every segment of ``names`` (in order); missing ones become gap ranges."""
        info = backup.info
        segment_size = check_segment_size(info.xlog_segment_size or DEFAULT_SEGMENT_SIZE)
        system_id = int(info.systemid) if info.systemid and info.systemid.isdigit() else None
        major = info.version // 10000 if info.version and info.version >= 100000 else None
        problems: list[Problem] = []
        missing: list[str] = []

        def close_gap() -> None:
            if missing:
                subject = missing[0] if len(missing) == 1 else f"{missing[0]}..{missing[-1]}"
                count = f"{len(missing)} segment{'s' if len(missing) > 1 else ''}"
                problems.append(
                    Problem(gaps_are, subject, f"{count} missing from the WAL archive", backup.backup_id)
                )
                missing.clear()

        # A sliding window of checks in flight: a long chain never holds one task per segment.
        window: collections.deque[tuple[_WalObject, asyncio.Future[list[tuple[str, str]]]]] = (
            collections.deque()
        )

        async def settle(limit: int) -> None:
            while len(window) > limit:
                obj, future = window.popleft()
                for kind, text in await future:
                    problems.append(Problem(kind, obj.key, text, backup.backup_id))

        try:
            for name in names:
                objects = self._index.segment(name)
                if not objects:
                    missing.append(name)
                    continue
                close_gap()
                for obj in objects:
                    window.append((obj, self._wal_check(obj, segment_size, system_id, major)))
                await settle(self._jobs * 4)
            close_gap()
            await settle(0)
        finally:
            for _obj, future in window:
                future.cancel()
        problems.sort(key=lambda p: p.subject)
        return problems

    def _wal_check(
        self, obj: _WalObject, segment_size: int, system_id: int | None, major: int | None
    ) -> asyncio.Future[list[tuple[str, str]]]:
        """The check of one WAL object, run once per key whatever the number of backups needing it."""
        cache_key = (obj.key, system_id)
        done = self._wal_results.get(cache_key)
        if done is not None:
            future: asyncio.Future[list[tuple[str, str]]] = asyncio.get_running_loop().create_future()
            future.set_result(done)
            return future
        task = asyncio.ensure_future(self._read_wal(obj, segment_size, system_id, major))

        def remember(finished: asyncio.Future[list[tuple[str, str]]]) -> None:
            if not finished.cancelled() and finished.exception() is None:
                self._wal_results[cache_key] = finished.result()

        task.add_done_callback(remember)
        return task

    async def _read_wal(
        self, obj: _WalObject, segment_size: int, system_id: int | None, major: int | None
    ) -> list[tuple[str, str]]:
        """Problems of one WAL object, as (kind, message)."""
        content = _WalContent(obj.codec, obj.key)
        async with self._slots:
            try:
                await _read_through(self.store.get(obj.key), content.feed, content.finish)
            except NotFound:
                return [(MISSING, "deleted while being verified")]
            except Corrupt as error:
                return [(_kind_of(error), error.message)]
        self.report.objects_read += 1
        self.report.bytes_read += content.stored
        if content.size != segment_size and obj.name.kind is not WalKind.PARTIAL:
            kind = TRUNCATED if content.size < segment_size else BAD_WAL
            return [(kind, f"{content.size} bytes, a WAL segment has {segment_size}")]
        found = header_problems(
            content.head,
            timeline=obj.name.timeline,
            start_lsn=obj.name.segment_number(segment_size) * segment_size,
            segment_size=segment_size,
            system_id=system_id,
            major_version=major,
        )
        return [(FOREIGN_WAL if "another cluster" in text else BAD_WAL, text) for text in found]


class _WalContent:
    """Decompress a WAL object (in a worker thread), keeping its first bytes and its size."""

    def __init__(self, codec: Codec | None, where: str) -> None:
        self.codec = codec
        self.where = where
        self._decompressor: Decompressor | None = codec.decompressor() if codec else None
        self.head = b""
        self.size = 0
        self.stored = 0

    def feed(self, chunk: bytes) -> None:
        self.stored += len(chunk)
        if self._decompressor is None:
            self._take(chunk)
            return
        view = memoryview(chunk)
        for offset in range(0, len(view), INPUT_SLICE):
            self._take(self._run(self._decompress, bytes(view[offset : offset + INPUT_SLICE])))

    def finish(self) -> None:
        if self._decompressor is not None:
            self._take(self._run(self._flush, b""))

    def _decompress(self, piece: bytes) -> bytes:
        assert self._decompressor is not None
        return bytes(self._decompressor.decompress(piece))

    def _flush(self, _: bytes) -> bytes:
        assert self._decompressor is not None
        return bytes(self._decompressor.flush())

    def _run(self, step: Callable[[bytes], bytes], piece: bytes) -> bytes:
        try:
            return step(piece)
        except Exception as error:
            assert self.codec is not None
            raise ContentError(
                UNDECODABLE, f"{self.where} does not decompress as {self.codec.name}: {error}"
            ) from None

    def _take(self, data: bytes) -> None:
        if len(self.head) < LONG_HEADER_SIZE:
            self.head += data[: LONG_HEADER_SIZE - len(self.head)]
        self.size += len(data)


def _kind_of(error: Corrupt) -> str:
    """A content problem's own kind; any other Corrupt is a checksum mismatch."""
    return error.kind if isinstance(error, ContentError) else CHECKSUM


async def _read_through(
    chunks: AsyncIterator[bytes], feed: Callable[[bytes], None], finish: Callable[[], object]
) -> None:
    """Feed every chunk to ``feed`` (in a worker thread), then ``finish``. A content error does
    not stop the read: the rest of the object is still read, so that a checksum mismatch, the
    cause, is what is reported rather than its consequence (a decompression error halfway)."""
    found: ContentError | None = None
    stream = cast(AsyncGenerator[bytes, None], chunks)
    async with contextlib.aclosing(stream) as reading:
        async for chunk in reading:
            if found is None:
                try:
                    await asyncio.to_thread(feed, chunk)
                except ContentError as error:
                    found = error
    if found is None:
        try:
            await asyncio.to_thread(finish)
        except ContentError as error:
            found = error
    if found is not None:
        raise found


def _is_segment_or_partial(name: str) -> bool:
    return len(name) == 24 or name.endswith(".partial")


def _parse_history(text: str) -> list[tuple[int, int]]:
    """``parentTLI <tab> switchpoint <tab> reason`` lines (comments and blank lines skipped)."""
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) < 2:
            raise ValueError(f"malformed line {line!r}")
        entries.append((int(fields[0]), parse_lsn(fields[1])))
    return entries


def _timeline_ranges(
    start_tli: int, after_lsn: int, histories: dict[int, list[tuple[int, int]]]
) -> list[tuple[int, int, int | None]]:
    """The timelines a recovery to ``latest`` replays from ``start_tli``: (timeline, begin LSN,
    switch LSN or None for the last), following the newest timeline whose history descends from
    ``start_tli`` after ``after_lsn``, as PostgreSQL picks it."""
    best: list[tuple[int, int, int | None]] = [(start_tli, 0, None)]
    for target in sorted(histories, reverse=True):
        if target <= start_tli:
            continue
        ancestry = histories[target]
        parents = [tli for tli, _lsn in ancestry]
        if start_tli not in parents:
            continue
        ranges: list[tuple[int, int, int | None]] = []
        begin = 0
        for tli, switch in ancestry:
            ranges.append((tli, begin, switch))
            begin = switch
        ranges.append((target, begin, None))
        index = parents.index(start_tli)
        chain = ranges[index:]
        first_switch = chain[0][2]
        if first_switch is not None and first_switch < after_lsn:
            continue  # the timeline left ours before the backup ended: unreachable from it
        best = chain
        break
    return best


async def verify(
    store: ReadableStore,
    layout: ServerLayout,
    selection: str | None,
    *,
    all_backups: bool = False,
    to_latest: bool = False,
    jobs: int = DEFAULT_JOBS,
) -> Report:
    """Verify backups (see the module docstring). Raises only when the store cannot be used
    (Unavailable, Forbidden), the selection is invalid or names no backup (InvalidInput, NotFound)."""
    verifier = Verifier(store, layout, jobs=jobs)
    return await verifier.run(selection, all_backups=all_backups, to_latest=to_latest)
