"""Restore a base backup from a bucket into a directory: parallel, streaming, safe, retryable.

What barman-cloud-restore does (format 5), plus:

- every tar archive (``data`` and its parts, each tablespace) is downloaded and extracted at the
  same time, up to ``jobs``: downloads on the event loop (ranged GETs in parallel for large
  objects), decompression and tar writing in a thread per archive, memory bounded
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
from barman_cloud.errors import FailedPrecondition, InvalidInput, NotFound
from barman_cloud.format.backup_id import is_backup_id
from barman_cloud.format.keys import ServerLayout
from barman_cloud.restore.download import DEFAULT_PART_SIZE, Feed, RestoreAborted, object_chunks
from barman_cloud.restore.extract import (
    ChunkStream,
    DirectoryMeta,
    Extractor,
    ExtractStats,
    apply_directory_metadata,
    check_links,
    chown_tree,
)
from barman_cloud.restore.recovery_config import RecoveryConfig, write_recovery_config
from barman_cloud.restore.targets import RecoveryTarget, choose_backup
from barman_cloud.storage import ReadableStore

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
            raise FailedPrecondition(
                f"backup {backup_id} cannot be restored: its status is {backup.status}",
                hint="choose a backup with status DONE (barman-cloud-plugin backup-list)",
            )
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


class _Extraction:
    """Shared state of one restore's archive extractions: the first failure stops the others."""

    def __init__(self, store: ReadableStore, executor: ThreadPoolExecutor, jobs: int) -> None:
        self.store = store
        self.executor = executor
        self.downloads = asyncio.Semaphore(jobs)
        self.window = max(2, jobs)
        self.feeds: set[Feed] = set()
        self.error: BaseException | None = None

    def fail(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
            for feed in self.feeds:
                feed.abort()

    async def extract(self, archive: ArchiveObject, root: Path) -> tuple[ExtractStats, int]:
        loop = asyncio.get_running_loop()
        feed = Feed(loop)
        self.feeds.add(feed)
        chunks = object_chunks(
            self.store, archive.key, archive.size, limit=self.downloads, part_size=DEFAULT_PART_SIZE,
            window=self.window,
        )  # fmt: skip
        pump = asyncio.ensure_future(feed.pump(chunks))
        extractor = Extractor(root, archive.key, reserved=frozenset({MARKER}))
        work = loop.run_in_executor(
            self.executor, extractor.run, ChunkStream(feed, archive.codec, archive.key)
        )
        try:
            stats = await asyncio.shield(work)
        except asyncio.CancelledError:
            feed.abort()  # the thread stops at its next read
            feed.stop()
            pump.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait([work])
            with contextlib.suppress(BaseException):
                await pump
            raise
        except BaseException as error:
            # The thread failed: stop the download after its current read, streams closed cleanly.
            if not isinstance(error, RestoreAborted):
                self.fail(error)
            feed.stop()
            with contextlib.suppress(BaseException):
                await pump
            raise
        finally:
            self.feeds.discard(feed)
        return stats, await pump


async def _extract_all(
    store: ReadableStore, archives: list[tuple[ArchiveObject, Path]], jobs: int
) -> list[tuple[ArchiveObject, ExtractStats, int]]:
    extractions = asyncio.Semaphore(jobs)
    results: list[tuple[ArchiveObject, ExtractStats, int]] = []
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="restore") as executor:
        run = _Extraction(store, executor, jobs)

        async def one(archive: ArchiveObject, root: Path) -> None:
            async with extractions:
                if run.error is not None:
                    return
                log.info("extracting", extra={"key": archive.key, "bytes": archive.size, "into": str(root)})
                stats, downloaded = await run.extract(archive, root)
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
    os.sync()  # everything on disk before the markers go: a marker-less directory is complete
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
) -> RestoreResult:
    """Restore ``backup_id`` (an ID, a name or a shortcut) into ``destination``.

    ``tablespace_map`` relocates tablespaces by name; ``recovery`` also writes the recovery
    configuration (:mod:`.recovery_config`). Raises NotFound (no such backup or archive),
    FailedPrecondition (status not DONE, a target that is not ours), InvalidInput (unsafe or
    damaged archive, bad mapping), Unavailable (the store).
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
    results = await _extract_all(store, work, jobs)
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
               "written": written, "seconds": round(asyncio.get_running_loop().time() - started, 3)},
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
