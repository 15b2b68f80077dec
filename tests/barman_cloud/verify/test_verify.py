"""``verify`` on real backups and real WAL of PostgreSQL 15, on every store: a clean bucket is
clean; a flipped bit in a WAL segment or a backup archive, a WAL segment deleted from the middle
of the chain, and another cluster's WAL are each reported, and a normal read (``wal-restore``,
``Store.get``) refuses the damaged objects too."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from barman_cloud.errors import Corrupt
from barman_cloud.format.wal import WalName, next_segment
from barman_cloud.storage import read_all
from barman_cloud.verify import engine
from barman_cloud.verify.engine import verify
from barman_cloud.verify.manifest import manifest_key, read_manifest
from tests.barman_cloud.verify.conftest import Bucket, archived_cluster, cli
from tests.harness.postgres import PostgresServer


def flipped(data: bytes, position: int) -> bytes:
    return data[:position] + bytes([data[position] ^ 0x10]) + data[position + 1 :]


async def test_damage_is_reported_by_verify_and_refused_by_normal_reads(
    bucket: Bucket, postgres_factory: Callable[..., PostgresServer], workdir: Path
) -> None:
    store, layout = bucket.store, bucket.layout
    server, result = await archived_cluster(bucket, postgres_factory)
    server.stop()

    clean = await verify(store, layout, "latest", to_latest=True)
    assert clean.ok, clean.problems
    (checked,) = clean.backups
    assert checked.backup_id == result.backup_id and checked.system_id == result.info.systemid
    assert checked.archives == len(result.archives) == checked.checksummed_archives
    assert checked.wal_segments >= 1 and checked.tar_members > 100
    (chain,) = clean.chains
    assert chain.timelines == [1] and chain.segments >= 4
    manifest = await read_manifest(store, layout, result.backup_id)
    assert manifest is not None and sorted(manifest) == sorted(k.rsplit("/", 1)[1] for k in result.archives)

    # A flipped bit in the backup's first WAL segment, its checksum left as it was.
    assert result.info.begin_wal is not None and result.info.end_wal is not None
    begin = result.info.begin_wal
    wal_key = layout.wal(WalName.parse(begin), None)
    wal = await read_all(store, wal_key)
    await bucket.backend.overwrite_keeping_metadata(store, wal_key, flipped(wal, len(wal) // 3))
    destination = workdir / "restore" / begin
    destination.parent.mkdir()
    restored = cli("wal-restore", *bucket.source, begin, str(destination))
    assert restored.returncode == 255  # > 125: PostgreSQL aborts recovery rather than ending it here
    assert f"{wal_key}" in restored.stderr and "is corrupt" in restored.stderr, restored.stderr
    assert list(destination.parent.iterdir()) == []  # nothing at DEST, no temporary file either

    # A flipped bit in the data archive.
    (data_key,) = [key for key in result.archives if key.rsplit("/", 1)[1].startswith("data.")]
    archive = await read_all(store, data_key)
    await bucket.backend.overwrite_keeping_metadata(store, data_key, flipped(archive, len(archive) // 2))
    assert (await store.head(data_key)).sha256 is not None  # a small backup: one request upload
    with pytest.raises(Corrupt, match="is corrupt"):
        await read_all(store, data_key)

    # A WAL segment missing from the middle of the chain after the backup.
    middle = next_segment(next_segment(result.info.end_wal, 16 * 1024 * 1024), 16 * 1024 * 1024)
    middle_key = layout.wal(WalName.parse(middle), None)
    assert (await store.head(middle_key)).size == 16 * 1024 * 1024
    await store.delete_many([middle_key])

    report = await verify(store, layout, result.backup_id, to_latest=True)
    found = {(p.kind, p.subject) for p in report.problems}
    assert (engine.CHECKSUM, wal_key) in found
    assert (engine.CHECKSUM, data_key) in found
    assert (engine.WAL_GAP, middle) in found
    assert not report.ok and len(report.problems) == 3, report.problems
    # Without --to-latest the gap after the backup is not looked for.
    assert {(p.kind, p.subject) for p in (await verify(store, layout, "latest")).problems} == {
        (engine.CHECKSUM, wal_key),
        (engine.CHECKSUM, data_key),
    }


@pytest.mark.parametrize("bucket", ["s3"], indirect=True)
async def test_another_clusters_wal_is_reported(
    bucket: Bucket, postgres_factory: Callable[..., PostgresServer]
) -> None:
    """Another cluster's segment under our name (a second cluster archiving to the same server
    name): its checksum is right, its system identifier is not."""
    store, layout = bucket.store, bucket.layout
    ours, result = await archived_cluster(bucket, postgres_factory, segments_after=2)
    ours.stop()
    assert result.info.end_wal is not None
    other = postgres_factory(15)
    other.query("CREATE TABLE u AS SELECT generate_series(1, 1000) AS n")
    other.query("CHECKPOINT")
    other_segment = sorted(p.name for p in other.pg_wal.iterdir() if len(p.name) == 24)[0]
    foreign = (other.pg_wal / other_segment).read_bytes()
    target = next_segment(result.info.end_wal, 16 * 1024 * 1024)
    key = layout.wal(WalName.parse(target), None)
    # Same position as ours: rewrite its page address so that only the system identifier differs.
    start = WalName.parse(target).segment_number(16 * 1024 * 1024) * 16 * 1024 * 1024
    foreign = foreign[:8] + start.to_bytes(8, "little") + foreign[16:]
    await store.put(key, foreign)

    report = await verify(store, layout, "latest", to_latest=True)
    (problem,) = report.problems
    assert (problem.kind, problem.subject) == (engine.FOREIGN_WAL, key)
    assert result.info.systemid is not None and result.info.systemid in problem.message
    # The backup itself is fine; only the WAL after it is not.
    assert (await verify(store, layout, "latest")).ok


@pytest.mark.parametrize("bucket", ["filesystem"], indirect=True)
async def test_truncated_archive_and_unknown_backup(
    bucket: Bucket, postgres_factory: Callable[..., PostgresServer]
) -> None:
    """An archive without a checksum of ours (as barman writes them) cut short is found by reading
    the tar through; the manifest, when it is gone, no longer vouches for anything."""
    store, layout = bucket.store, bucket.layout
    server, result = await archived_cluster(bucket, postgres_factory, segments_after=1)
    server.stop()
    (data_key,) = [key for key in result.archives if "/data." in key]
    archive = await read_all(store, data_key)
    await store.delete_many([manifest_key(layout, result.backup_id)])
    # Rewrite it shorter through the store: a valid checksum of the truncated bytes.
    await store.put(data_key, archive[: len(archive) - 4096])
    report = await verify(store, layout, result.backup_id)
    (problem,) = report.problems
    assert problem.subject == data_key and problem.kind in (engine.UNDECODABLE, engine.TRUNCATED)
    assert report.backups[0].archives == 0  # the only archive is the damaged one
