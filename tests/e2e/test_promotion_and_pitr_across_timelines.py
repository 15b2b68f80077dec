"""Scenario (d): a promotion to a new timeline, then a point-in-time recovery across it.

The primary (Pod ``pg-1``) archives through its sidecar and is backed up through ``Backup.Backup``
on timeline 1. A standby (Pod ``pg-2``, cloned by pg_basebackup, streaming, with its own sidecar
as restore_command and archive_command) is promoted when the primary goes away (a failover): it
archives ``00000002.history`` through ``WAL.Archive``, which ``WAL.Restore`` then serves as it
was written, and writes on timeline 2; (``latest``) a replica cluster's designated primary fed from the
archive only follows it onto timeline 2 (``00000002.history`` and the timeline-2 segments through
``WAL.Restore``, after the end of timeline 1 in the archive). A recovery Job restores the
timeline-1 backup through ``RestoreJobHooks.Restore`` and replays across the switch to a target
time on timeline 2, with ``recovery_target_timeline`` ``latest`` or explicitly ``2``
(``targetTLI``: the backup is then named, since upstream and we pick backups of the requested
timeline only): the rows of both timelines up to the target are there, none after, and the
recovered cluster ends on timeline 3.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cnpg import (
    clone_standby,
    empty_datadir,
    phases,
    provider_store,
    recovery_cluster,
    restore_job,
    switch_and_archive,
    take_backup,
    wait_for,
)
from tests.e2e.conftest import Sidecar
from tests.harness.postgres import PostgresServer


def timeline_of(server: PostgresServer) -> int:
    return int(str(server.query("SELECT pg_walfile_name(pg_current_wal_lsn())")[0][0])[:8], 16)


@pytest.mark.parametrize(
    ("provider", "timeline"),
    [
        ("gcs", "latest"),
        pytest.param("s3", "explicit", marks=pytest.mark.slow),
        pytest.param("s3", "latest", marks=pytest.mark.slow),
        pytest.param("azure", "latest", marks=pytest.mark.slow),
        pytest.param("azure", "explicit", marks=pytest.mark.slow),
        pytest.param("gcs", "explicit", marks=pytest.mark.slow),
    ],
)
async def test_promoted_standby_archives_its_timeline_and_pitr_crosses_it(
    provider: str,
    timeline: str,
    request: pytest.FixtureRequest,
    sidecar_factory: Callable[..., Sidecar],
    e2e_workdir: Path,
    postgres_factory: Callable[..., PostgresServer],
) -> None:
    manifest = await provider_store(request, provider, e2e_workdir)
    primary = postgres_factory(15)
    first = sidecar_factory(manifest, name="pg-1", postgres_conninfo=primary.conninfo)
    primary.set(archive_command=first.archive_command())
    primary.query("CREATE TABLE events (id int PRIMARY KEY, phase text)")
    primary.query("INSERT INTO events SELECT g, 'timeline 1' FROM generate_series(1, 1000) g")
    backup = await take_backup(first)
    assert backup.end_wal.startswith("00000001")

    standby = postgres_factory(15)
    second = sidecar_factory(manifest, name="pg-2", postgres_conninfo=standby.conninfo)
    settings = [
        f"restore_command = '{second.restore_command()}'",
        f"archive_command = '{second.archive_command()}'",
        f"primary_conninfo = '{primary.conninfo}'",
    ]
    await asyncio.to_thread(clone_standby, primary, standby, "stream", settings)
    await asyncio.to_thread(standby.start)
    follower: PostgresServer | None = None
    if timeline == "latest":
        # A replica cluster's designated primary, fed from the archive only (no connection to
        # the source), follows the source across its failover.
        follower = postgres_factory(15)
        third = sidecar_factory(manifest, name="replica-1")
        settings = [
            f"restore_command = '{third.restore_command()}'",
            "archive_command = ''",
            "wal_retrieve_retry_interval = '500ms'",
        ]
        await asyncio.to_thread(clone_standby, primary, follower, "none", settings)
        await asyncio.to_thread(follower.start)
    primary.query("INSERT INTO events SELECT g, 'timeline 1' FROM generate_series(1001, 2000) g")
    await switch_and_archive(primary)
    await wait_for("the standby catches up", lambda: phases(standby) == {"timeline 1": 2000}, standby)
    if follower is not None:
        await wait_for("the follower catches up", lambda: phases(follower) == {"timeline 1": 2000}, follower)

    # Failover: the primary goes away, the standby is promoted to timeline 2.
    await asyncio.to_thread(primary.stop)
    assert standby.query("SELECT pg_promote()") == [(True,)]
    assert timeline_of(standby) == 2
    history = (standby.pg_wal / "00000002.history").read_bytes()
    fetched = e2e_workdir / "fetched.history"

    def history_restored() -> bool:
        result = second.manager("wal-restore", "00000002.history", str(fetched))
        return result.returncode == 0

    await wait_for("00000002.history archived through WAL.Archive", history_restored, standby)
    assert fetched.read_bytes() == history

    standby.query("INSERT INTO events SELECT g, 'timeline 2' FROM generate_series(2001, 3000) g")
    target = str(standby.query("SELECT now()::text")[0][0])
    time.sleep(1.1)
    standby.query("INSERT INTO events SELECT g, 'after the target' FROM generate_series(3001, 4000) g")
    last = await switch_and_archive(standby)
    assert last.startswith("00000002")
    if follower is not None:
        everything = {"timeline 1": 2000, "timeline 2": 1000, "after the target": 1000}
        await wait_for("the follower follows timeline 2", lambda: phases(follower) == everything, follower)

    # The recovery Job, from the timeline-1 backup to the target on timeline 2.
    restored = postgres_factory(15)
    empty_datadir(restored)
    job = sidecar_factory(manifest, role="restore", pgdata=str(restored.datadir))
    recovery_target: dict[str, Any] = {"targetTime": target}
    if timeline == "explicit":
        recovery_target |= {"backupID": backup.backup_id, "targetTLI": "2"}
    settings = [
        f"recovery_target_time = '{target}'",
        f"recovery_target_timeline = '{'2' if timeline == 'explicit' else 'latest'}'",
    ]
    await restore_job(job, recovery_cluster(recovery_target), restored, settings)
    assert phases(restored) == {"timeline 1": 2000, "timeline 2": 1000}
    assert timeline_of(restored) == 3
