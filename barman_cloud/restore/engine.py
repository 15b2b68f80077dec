"""Restore a base backup from a bucket into a directory: parallel, streaming, safe, retryable.

What barman-cloud-restore does (format 5), plus:

- every tar archive (``data`` and its parts, each tablespace) is downloaded and extracted at the
  same time, up to ``jobs``, each in three stages that overlap: one streaming GET on the event
  loop with a deep read-ahead (ranged GETs in parallel only for huge objects, see
  :mod:`.download`), decompression in one worker thread, tar parsing and writing in another,
  joined by pipes bounded in bytes, so memory is bounded whatever the backup size
  (:mod:`.download`, :mod:`.extract`);
- extraction is safe (:mod:`.extract`): nothing is ever written outside the targets;
- safe to retry (upstream #1100): each target directory gets a marker file before the first byte
  is written and loses it only after the restore completed and was synced to disk. A target that
  holds the marker was left by a failed attempt of ours and is emptied first; a non-empty target
  without it is refused, so a completed restore or someone else's data is never overwritten;
- tablespaces are relocated by name (``tablespace_map``), ``pg_tblspc/<OID>`` links and
  ``pg_wal`` are recreated (E-14), ownership and modes come from the archive when running as root
  (a tablespace directory we create gets the data directory's owner, PostgreSQL needs it);
- with ``recovery`` the recovery configuration is written before the markers go, so a directory
  without marker is always complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import stat
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from barman_cloud.catalog.archives import DATA, ArchiveObject, list_archives
from barman_cloud.catalog.listing import Backup, load_catalog, read_backup
from barman_cloud.errors import Corrupt, FailedPrecondition, InvalidInput, NotFound
from barman_cloud.format.backup_id import is_backup_id
from barman_cloud.format.backup_info import unrestorable_reason
from barman_cloud.format.keys import ServerLayout
from barman_cloud.restore.download import (
    RANGE_SIZE,
    RANGED_MIN_SIZE,
    READ_AHEAD,
    Pipe,
    RestoreAborted,
    object_chunks,
)
from barman_cloud.restore.extract import (
    MAX_PIECE,
    DirectoryMeta,
    Extractor,
    ExtractStats,
    TarStream,
    apply_directory_metadata,
    check_links,
    chown_tree,
    decompress,
    decompressed,
    sync_filesystems,
)
from barman_cloud.restore.recovery_config import RecoveryConfig, write_recovery_config
from barman_cloud.restore.targets import RecoveryTarget, choose_backup
from barman_cloud.storage import ReadableStore
from barman_cloud.storage.integrity import Expected, verified
from barman_cloud.verify.manifest import ArchiveChecksum, read_manifest

log = logging.getLogger(__name__)

MARKER = ".barman-cloud-restore-in-progress"


@dataclass(frozen=True)
class RestoreResult:
    backup_id: str
    backup: Backup
    destination: Path
    tablespaces: dict[int, Path] = field(default_factory=dict)
    """Where each tablespace (by OID) was restored."""
    archives: int = 0
    downloaded_bytes: int = 0
    """Bytes read from the store (compressed)."""
    extracted_bytes: int = 0
    """Bytes of regular files written."""
    files: int = 0
    cleaned_previous_attempt: bool = False


async def _find_backup(store: ReadableStore, layout: ServerLayout, backup_id: str) -> Backup:
    if is_backup_id(backup_id):
        try:
            backup = await read_backup(store, layout, backup_id)
        except NotFound:
            raise NotFound(
                f"backup {backup_id} of server {layout.server} does not exist in {layout.base}",
                hint="list the backups with `barman-cloud-plugin backup-list`",
            ) from None
        if not backup.is_completed:
            reason, hint = unrestorable_reason(backup.info) or (f"its status is {backup.status}", None)
            raise FailedPrecondition(f"backup {backup_id} cannot be restored: {reason}", hint=hint)
        return backup
    return choose_backup(await load_catalog(store, layout), RecoveryTarget(), backup_id)


def _targets(destination: Path, backup: Backup, tablespace_map: Mapping[str, Path]) -> dict[str, Path]:
    """The directory each archive base is extracted into (``data`` -> destination)."""
    targets = {DATA: destination}
    known = {name for name, _, _ in backup.info.tablespaces or ()}
    unknown = sorted(set(tablespace_map) - known)
    if unknown:
        raise InvalidInput(
            f"backup {backup.backup_id} has no tablespace named {', '.join(unknown)}",
            hint=f"its tablespaces: {', '.join(sorted(known)) or 'none'}",
        )
    for name, oid, location in backup.info.tablespaces or ():
        target = Path(os.path.realpath(tablespace_map[name])) if name in tablespace_map else Path(location)
        if not target.is_absolute():
            raise InvalidInput(f"tablespace {name} would be restored to a relative path {target}")
        targets[str(oid)] = target
    paths = list(targets.values())
    if len(set(paths)) != len(paths):
        raise InvalidInput(
            "two restore targets are the same directory",
            hint="relocate tablespaces with NAME:LOCATION so each has its own directory",
        )
    return targets


# -- target directories and the retry marker (blocking helpers, run in a thread) -----------------


def _state(path: Path) -> str:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return "missing"
    if stat.S_ISLNK(st.st_mode):
        st = path.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise FailedPrecondition(f"restore target {path} exists and is not a directory")
    entries = os.listdir(path)
    if not entries:
        return "empty"
    if MARKER in entries:
        return "ours"
    raise FailedPrecondition(
        f"restore target {path} is not empty and was not left by an interrupted restore",
        hint="restore into an empty or missing directory, or empty this one yourself",
    )


def _remove_tree_entry(path: str) -> None:
    if not os.path.isdir(path) or os.path.islink(path):
        os.unlink(path)
        return
    if os.geteuid() != 0:  # read-only directories from the archive would stop rmtree
        for directory, _, _ in os.walk(path):
            if not os.path.islink(directory):
                os.chmod(directory, stat.S_IRWXU)
    shutil.rmtree(path)


def _empty(path: Path) -> None:
    """Remove everything in ``path`` but the marker (links are removed, never followed)."""
    for entry in os.scandir(path):
        if entry.name != MARKER:
            _remove_tree_entry(entry.path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_marker(path: Path, content: dict[str, object]) -> None:
    marker = path / MARKER
    with open(marker, "w", encoding="utf-8") as handle:
        json.dump(content, handle)
        handle.flush()
        os.fsync(handle.fileno())
    _fsync_dir(path)


def _previous_tablespaces(destination: Path) -> list[Path]:
    try:
        content = json.loads((destination / MARKER).read_text(encoding="utf-8"))
        return [Path(p) for p in content.get("tablespaces", [])]
    except (OSError, ValueError, AttributeError):
        return []


def prepare_targets(targets: Mapping[str, Path], backup_id: str, server: str) -> bool:
    """Check every target, empty those a failed attempt of ours left, mark them all.

    Returns whether a previous attempt was cleaned. Nothing is touched if any target is refused.
    """
    destination = targets[DATA]
    states = {path: _state(path) for path in targets.values()}
    cleaned = any(s == "ours" for s in states.values())
    stale = []
    if states[destination] == "ours":
        for path in _previous_tablespaces(destination):
            if path not in states and (path / MARKER).exists():
                stale.append(path)
    for path in [p for p, s in states.items() if s == "ours"] + stale:
        log.warning("emptying what an interrupted restore left", extra={"path": str(path)})
        _empty(path)
    for path in stale:
        (path / MARKER).unlink()
    content: dict[str, object] = {
        "backup_id": backup_id,
        "server": server,
        "started": datetime.now(UTC).isoformat(),
        "destination": str(destination),
        "tablespaces": [str(p) for base, p in targets.items() if base != DATA],
    }
    for path in targets.values():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        _write_marker(path, content)
    return cleaned


# -- extraction ---------------------------------------------------------------------------------


DECOMPRESSED_AHEAD = 8 * MAX_PIECE
"""Decompressed bytes queued between an archive's decompression and its writer."""


class _Extraction:
    """Shared state of one restore's archive extractions: the first failure stops the others."""

    def __init__(
        self,
        store: ReadableStore,
        executor: ThreadPoolExecutor,
        jobs: int,
        ranged_min_size: int | None,
        checksums: Mapping[str, ArchiveChecksum] | None = None,
    ) -> None:
        self.store = store
        self.checksums = checksums or {}
        self.executor = executor
        self.downloads = asyncio.Semaphore(jobs)
        self.window = max(2, jobs)
        self.ranged_min_size = ranged_min_size
        # A ranged object is read in at least 4 ranges (RANGE_SIZE for the default threshold).
        self.range_size = (
            RANGE_SIZE if ranged_min_size is None else min(RANGE_SIZE, max(1, ranged_min_size // 4))
        )
        self.pipes: set[Pipe] = set()
        self.error: BaseException | None = None

    def fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
            for pipe in self.pipes:
                pipe.abort()

    async def extract(self, archive: ArchiveObject, root: Path, *, split: bool) -> tuple[ExtractStats, int]:
        """Download -> decompress -> extract, overlapping: the download always runs ahead; with
        ``split`` the decompression has its own thread, else the writer's thread decompresses."""
        loop = asyncio.get_running_loop()
        raw = Pipe(READ_AHEAD)
        pipes = [raw]
        chunks = object_chunks(
            self.store, archive.key, archive.size, limit=self.downloads,
            ranged_min_size=self.ranged_min_size, part_size=self.range_size, window=self.window,
        )  # fmt: skip
        recorded = self.checksums.get(archive.key.rsplit("/", 1)[-1])
        if recorded is not None:
            # Archives uploaded in parts carry no checksum of their own (their metadata is fixed
            # before the first byte): the backup's manifest has it. A mismatch fails this archive
            # (and the restore, which a retry cleans) before its last bytes are extracted.
            if recorded.size != archive.size:
                raise Corrupt(
                    f"{archive.key} is corrupt: {archive.size} bytes stored, {recorded.size} recorded "
                    "in the backup's manifest",
                    hint="use another backup; `barman-cloud-plugin verify` lists the damaged objects",
                )
            chunks = verified(
                chunks, Expected("sha256", recorded.sha256, "the backup's manifest"), archive.key
            )
        pump = asyncio.ensure_future(raw.pump(chunks))
        helpers: list[asyncio.Future[None]] = []
        source = raw.get
        if archive.codec is not None and not split:
            source = decompressed(raw.get, archive.codec, archive.key)
        elif archive.codec is not None:
            plain = Pipe(DECOMPRESSED_AHEAD)
            pipes.append(plain)
            helpers.append(
                loop.run_in_executor(
                    self.executor, decompress, raw.get, archive.codec, plain.put, plain.close, archive.key
                )
            )
            source = plain.get
        self.pipes.update(pipes)
        extractor = Extractor(root, archive.key, reserved=frozenset({MARKER}))
        work: asyncio.Future[ExtractStats] = loop.run_in_executor(
            self.executor, extractor.run, TarStream(source)
        )

        async def settle() -> None:
            """Every stage of this archive stopped: threads returned, the stream closed."""
            with contextlib.suppress(BaseException):
                await asyncio.gather(work, *helpers, return_exceptions=True)
            with contextlib.suppress(BaseException):
                await pump

        try:
            stats = await asyncio.shield(work)
        except asyncio.CancelledError:
            for pipe in pipes:
                pipe.abort()  # the threads stop at their next read or write
            pump.cancel()
            await settle()
            raise
        except BaseException as error:
            # The writer failed: stop the others after their current step, streams closed cleanly.
            if not isinstance(error, RestoreAborted):
                self.fail(error)
            for pipe in pipes:
                pipe.abort()
            await settle()
            raise
        finally:
            self.pipes.difference_update(pipes)
        await asyncio.gather(*helpers)
        return stats, await pump


async def _extract_all(
    store: ReadableStore,
    archives: list[tuple[ArchiveObject, Path]],
    jobs: int,
    ranged_min_size: int | None,
    checksums: Mapping[str, ArchiveChecksum] | None = None,
) -> list[tuple[ArchiveObject, ExtractStats, int]]:
    extractions = asyncio.Semaphore(jobs)
    results: list[tuple[ArchiveObject, ExtractStats, int]] = []
    # Parallelism across archives first. An archive bigger than its share (``total / jobs``: a
    # single data.tar, or one much larger than the others) would run alone for a while: it gets
    # a decompression thread beside its writer, on a core the other archives leave idle; the
    # others decompress in their writer's thread (fewer hand-overs, less CPU when all cores are
    # busy anyway). Two threads per archive in flight at most: the pool is never short of one.
    share = sum(archive.size for archive, _ in archives) / jobs
    with ThreadPoolExecutor(max_workers=2 * jobs, thread_name_prefix="restore") as executor:
        run = _Extraction(store, executor, jobs, ranged_min_size, checksums)

        async def one(archive: ArchiveObject, root: Path) -> None:
            async with extractions:
                if run.error is not None:
                    return
                log.info("extracting", extra={"key": archive.key, "bytes": archive.size, "into": str(root)})
                stats, downloaded = await run.extract(archive, root, split=archive.size > share)
                results.append((archive, stats, downloaded))

        # The biggest first: they bound the total time.
        ordered = sorted(archives, key=lambda item: item[0].size, reverse=True)
        outcomes = await asyncio.gather(
            *(one(archive, root) for archive, root in ordered), return_exceptions=True
        )
        if run.error is not None:
            raise run.error
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
    return results


# -- finishing touches (blocking) -------------------------------------------------------------------


def _root_owner(directories: list[DirectoryMeta]) -> tuple[int, int] | None:
    for meta in directories:
        if not meta.parts and meta.uid is not None and meta.gid is not None:
            return meta.uid, meta.gid
    return None


def _finish(
    backup: Backup,
    targets: Mapping[str, Path],
    results: list[tuple[ArchiveObject, ExtractStats, int]],
    recovery: RecoveryConfig | None,
) -> None:
    destination = targets[DATA]
    for archive, stats, _ in results:
        check_links(targets[archive.base], stats.symlinks, archive.key)
    directories: dict[str, list[DirectoryMeta]] = {}
    for archive, stats, _ in results:
        directories.setdefault(archive.base, []).extend(stats.directories)
    for base, root in targets.items():
        apply_directory_metadata(root, directories.get(base, []))
    # As root, everything belongs to the data directory's owner: PostgreSQL must be able to write
    # and rename every file (barman's backup_label has uid 0, E-13; configuration files from
    # outside PGDATA may be root's).
    owner = _root_owner(directories.get(DATA, [])) if os.geteuid() == 0 else None
    _links_and_wal(backup, targets, owner)
    if recovery is not None:
        write_recovery_config(destination, recovery, backup.info.version)
    if owner is not None:
        for base, root in targets.items():
            chown_tree(root, owner)
            if base != DATA:
                os.chmod(root, stat.S_IRWXU)
    # Everything on disk before the markers go: a marker-less directory is complete.
    sync_filesystems(list(targets.values()))
    for root in targets.values():
        (root / MARKER).unlink()
        _fsync_dir(root)


def _mkdir_owned(path: Path, owner: tuple[int, int] | None) -> None:
    if path.is_dir() and not path.is_symlink():
        return
    path.mkdir(mode=0o700)
    if owner is not None:
        os.chown(path, *owner)


def _links_and_wal(backup: Backup, targets: Mapping[str, Path], owner: tuple[int, int] | None) -> None:
    destination = targets[DATA]
    tblspc = destination / "pg_tblspc"
    if backup.info.tablespaces:
        _mkdir_owned(tblspc, owner)
    for name, oid, _ in backup.info.tablespaces or ():
        link = tblspc / str(oid)
        if link.is_symlink() or link.exists():
            if link.is_dir() and not link.is_symlink():
                raise InvalidInput(f"{link} is a directory in the backup; cannot link tablespace {name}")
            link.unlink()
        link.symlink_to(targets[str(oid)])
        if owner is not None:
            os.chown(link, *owner, follow_symlinks=False)
    version = backup.info.version
    _mkdir_owned(destination / ("pg_xlog" if version is not None and version < 100000 else "pg_wal"), owner)


# -- the entry point ----------------------------------------------------------------------------------


async def restore_backup(
    store: ReadableStore,
    layout: ServerLayout,
    backup_id: str,
    destination: Path,
    *,
    jobs: int = 4,
    tablespace_map: Mapping[str, Path] | None = None,
    recovery: RecoveryConfig | None = None,
    ranged_min_size: int | None = RANGED_MIN_SIZE,
) -> RestoreResult:
    """Restore ``backup_id`` (an ID, a name or a shortcut) into ``destination``.

    ``tablespace_map`` relocates tablespaces by name; ``recovery`` also writes the recovery
    configuration (:mod:`.recovery_config`). Archives of at least ``ranged_min_size`` bytes are
    downloaded with parallel ranged GETs (None: never; see :mod:`.download`). Raises NotFound (no
    such backup or archive), FailedPrecondition (status not DONE, a target that is not ours),
    InvalidInput (unsafe or damaged archive, bad mapping), Unavailable (the store).
    """
    if jobs < 1:
        raise InvalidInput(f"jobs must be at least 1, not {jobs}")
    started = asyncio.get_running_loop().time()
    backup = await _find_backup(store, layout, backup_id)
    info = backup.info
    if info.snapshots_info:
        raise InvalidInput(
            f"backup {backup.backup_id} is a snapshot backup",
            hint="snapshot backups are restored by cloning the disks; this tool restores tar backups",
        )
    destination = Path.cwd() / destination if not destination.is_absolute() else destination
    targets = _targets(destination, backup, tablespace_map or {})
    archives = await list_archives(store, layout, backup.backup_id, info)
    if archives.missing:
        raise NotFound(
            f"backup {backup.backup_id} is incomplete: no archive for "
            + ", ".join(f"{layout.backup_dir(backup.backup_id)}{base}.tar*" for base in archives.missing)
        )
    if archives.duplicates:
        base, keys = next(iter(archives.duplicates.items()))
        raise InvalidInput(
            f"backup {backup.backup_id} has several main archives for {base}: {', '.join(keys)}",
            hint="remove the one that does not belong to the backup",
        )
    # Our backups record their archives' SHA-256 (barman's have no manifest: nothing to check).
    # Checked against the listing before anything is written: an extra part of data.tar that is
    # gone would otherwise restore "successfully" without its files (each part is a whole tar).
    checksums = await read_manifest(store, layout, backup.backup_id)
    if checksums is not None:
        stored = {obj.key.rsplit("/", 1)[-1]: obj.size for obj in archives.objects}
        for name, recorded in sorted(checksums.items()):
            if stored.get(name) != recorded.size:
                found = "missing" if name not in stored else f"{stored[name]} bytes"
                raise Corrupt(
                    f"backup {backup.backup_id} is damaged: its manifest records {name} of "
                    f"{recorded.size} bytes, the store has {found}",
                    hint="use another backup; `barman-cloud-plugin verify` lists the damaged objects",
                )
    try:
        cleaned = await asyncio.to_thread(prepare_targets, targets, backup.backup_id, layout.server)
    except OSError as error:
        raise FailedPrecondition(
            f"cannot prepare the restore targets: {error}", hint="check the directories' permissions"
        ) from None
    log.info(
        "restoring backup",
        extra={"backup_id": backup.backup_id, "destination": str(destination),
               "archives": len(archives.objects), "bytes": archives.total_size, "jobs": jobs},
    )  # fmt: skip
    work = [(obj, targets[obj.base]) for obj in archives.objects]
    extracting = asyncio.get_running_loop().time()
    results = await _extract_all(store, work, jobs, ranged_min_size, checksums)
    finishing = asyncio.get_running_loop().time()
    try:
        await asyncio.to_thread(_finish, backup, targets, results, recovery)
    except OSError as error:
        raise FailedPrecondition(
            f"cannot finish the restore into {destination}: {error}",
            hint="a retry cleans this attempt and starts again",
        ) from None
    downloaded = sum(d for _, _, d in results)
    written = sum(stats.bytes for _, stats, _ in results)
    log.info(
        "backup restored",
        extra={"backup_id": backup.backup_id, "destination": str(destination), "downloaded": downloaded,
               "written": written, "seconds": round(asyncio.get_running_loop().time() - started, 3),
               "extraction_seconds": round(finishing - extracting, 3),
               "finish_seconds": round(asyncio.get_running_loop().time() - finishing, 3)},
    )  # fmt: skip
    return RestoreResult(
        backup_id=backup.backup_id,
        backup=backup,
        destination=destination,
        tablespaces={oid: targets[str(oid)] for _, oid, _ in info.tablespaces or ()},
        archives=len(results),
        downloaded_bytes=downloaded,
        extracted_bytes=written,
        files=sum(stats.files for _, stats, _ in results),
        cleaned_previous_attempt=cleaned,
    )
