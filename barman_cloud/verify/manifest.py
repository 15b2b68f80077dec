"""The checksum manifest of one backup: ``base/<ID>/bcp_checksums.json``.

Archives are uploaded in parts (S3 multipart, GCS resumable sessions), whose metadata is fixed
before their last byte is known, so they cannot carry their own checksum. The backup engine
records the SHA-256 and size of every archive object in this small JSON object, written after
the last archive and before the final ``backup.info``. Readers that know it (``verify``, a
restore) check each archive against it.

Compatibility with barman-cloud 3.19 (checked by ``tests/compat``): its name starts neither with
``data`` nor with a tablespace OID, so barman-cloud-restore, -backup-list and -backup-show never
look at it (``get_backup_files`` only picks ``data``/``<OID>`` archives). barman-cloud-backup-delete
removes the archives and ``backup.info`` only, so after *its* deletion this object stays behind,
alone in ``base/<ID>/``: a folder without ``backup.info`` is no backup for barman or for us, and
our own deletion removes the manifest with the archives.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from barman_cloud.errors import Corrupt, NotFound
from barman_cloud.format.keys import ServerLayout
from barman_cloud.storage import ReadableStore, Store, read_all

MANIFEST_NAME = "bcp_checksums.json"
FORMAT = "barman-cloud-plugin/checksums"
VERSION = 1


@dataclass(frozen=True)
class ArchiveChecksum:
    name: str
    """The object's name in the backup's folder (``data.tar.gz``, ``16385_0001.tar``...)."""
    size: int
    sha256: str


def manifest_key(layout: ServerLayout, backup_id: str) -> str:
    return f"{layout.backup_dir(backup_id)}{MANIFEST_NAME}"


def render(backup_id: str, entries: Iterable[ArchiveChecksum]) -> bytes:
    objects = {e.name: {"size": e.size, "sha256": e.sha256} for e in sorted(entries, key=lambda e: e.name)}
    document = {
        "format": FORMAT,
        "version": VERSION,
        "backup_id": backup_id,
        "algorithm": "sha256",
        "objects": objects,
    }
    return (json.dumps(document, indent=1, sort_keys=False) + "\n").encode()


def parse(data: bytes, *, where: str) -> dict[str, ArchiveChecksum]:
    """The manifest's entries by object name; Corrupt when it is not one."""
    try:
        document = json.loads(data)
        if document.get("format") != FORMAT or document.get("algorithm") != "sha256":
            raise ValueError("not a checksum manifest")
        objects = document["objects"]
        if not isinstance(objects, Mapping):
            raise ValueError("objects is not a mapping")
        entries = {
            str(name): ArchiveChecksum(str(name), int(value["size"]), str(value["sha256"]).lower())
            for name, value in objects.items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise Corrupt(
            f"{where} is not a readable checksum manifest ({error})",
            hint="it is rewritten only by a new backup: verify the archives' content instead",
        ) from None
    return entries


async def write_manifest(
    store: Store,
    layout: ServerLayout,
    backup_id: str,
    entries: Iterable[ArchiveChecksum],
    tags: Mapping[str, str] | None = None,
) -> str:
    key = manifest_key(layout, backup_id)
    await store.put(key, render(backup_id, entries), tags=dict(tags) if tags else None)
    return key


async def read_manifest(
    store: ReadableStore, layout: ServerLayout, backup_id: str
) -> dict[str, ArchiveChecksum] | None:
    """The backup's manifest, None when it has none (barman's backups, or ours before it)."""
    key = manifest_key(layout, backup_id)
    try:
        data = await read_all(store, key)
    except NotFound:
        return None
    return parse(data, where=key)
