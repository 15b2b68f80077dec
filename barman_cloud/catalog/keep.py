"""Keep annotations: ``base/<ID>/annotations/keep`` holding ``full`` or ``standalone``.

Lookup for a whole catalog is barman's: one listing of everything under ``base/`` (no delimiter,
E-21) where any key whose parent segment is ``annotations`` and whose name is ``keep`` counts, then
a read of each annotation found (first line). With a trailing slash in the destination path barman
writes annotations under ``<P>//<S>/base/...`` (E-20): that prefix is listed too, and we write and
release both keys so that barman with the same URL sees what we do.

A target other than ``standalone`` is treated as ``full`` by retention (barman: "any other recovery
target is treated as KEEP_FULL for safety").
"""

from __future__ import annotations

import asyncio
import logging

from barman_cloud.catalog.listing import DONE, read_backup_info
from barman_cloud.errors import FailedPrecondition, InvalidInput, NotFound
from barman_cloud.format.keys import ServerLayout
from barman_cloud.storage import ObjectInfo, ReadableStore, Store, read_all

log = logging.getLogger(__name__)

FULL = "full"
STANDALONE = "standalone"
TARGETS = (FULL, STANDALONE)
ANNOTATION = "keep"


def _quirk_base(layout: ServerLayout) -> str | None:
    """``<P>//<S>/base/`` when barman would build annotation keys with a double slash (E-20)."""
    if layout.raw_prefix.endswith("/"):
        return f"{layout.raw_prefix}/{layout.server}/base/"
    return None


def _annotated_backup(key: str) -> str | None:
    """The backup ID of an annotation key (barman's rule: parent segment ``annotations``)."""
    parts = key.split("/")
    if len(parts) > 3 and parts[-2] == "annotations" and parts[-1] == ANNOTATION:
        return parts[-3]
    return None


def _first_line(data: bytes) -> str:
    return data.decode("utf-8", errors="replace").splitlines()[0] if data else ""


async def list_keep_annotations(store: ReadableStore, layout: ServerLayout) -> dict[str, str]:
    """Keep targets by backup ID (one listing per base prefix, then one read per annotation)."""
    prefixes = [layout.base]
    if quirk := _quirk_base(layout):
        prefixes.append(quirk)
    found: dict[str, list[str]] = {}
    for prefix in prefixes:
        async for entry in store.list(prefix):
            if isinstance(entry, ObjectInfo) and (backup_id := _annotated_backup(entry.key)):
                found.setdefault(backup_id, []).append(entry.key)

    async def target(keys: list[str]) -> str | None:
        for key in keys:  # ours first: the listing of layout.base came first
            try:
                return _first_line(await read_all(store, key))
            except NotFound:  # released meanwhile
                continue
        return None

    targets = await asyncio.gather(*(target(keys) for keys in found.values()))
    return {backup_id: t for backup_id, t in zip(found, targets, strict=True) if t is not None}


async def read_keep(store: ReadableStore, layout: ServerLayout, backup_id: str) -> str | None:
    """The keep target of one backup read directly (no listing), None when not kept."""
    for key in layout.keep_annotation_keys(backup_id):
        try:
            return _first_line(await read_all(store, key))
        except NotFound:
            continue
    return None


async def keep_backup(store: Store, layout: ServerLayout, backup_id: str, target: str) -> None:
    """Add a keep annotation; only a DONE backup can be kept (barman-cloud-backup-keep's rule)."""
    if target not in TARGETS:
        raise InvalidInput(f"invalid keep target {target!r}", hint=f"one of {', '.join(TARGETS)}")
    info = await read_backup_info(store, layout, backup_id)
    if info.status != DONE:
        raise FailedPrecondition(
            f"cannot keep backup {backup_id}: its status is {info.status}",
            hint="only backups with status DONE can be kept",
        )
    for key in layout.keep_annotation_keys(backup_id):
        await store.put(key, target.encode())
    log.info("backup kept", extra={"backup_id": backup_id, "target": target})


async def release_keep(store: Store, layout: ServerLayout, backup_id: str) -> None:
    """Remove the keep annotation (every place barman may have written it)."""
    await store.delete_many(layout.keep_annotation_keys(backup_id))
    log.info("keep released", extra={"backup_id": backup_id})
