"""Scenario (e): a bucket written by barman-cloud 3.19 itself, as CloudNativePG's in-tree
``barmanObjectStore`` writes it (``barman-cloud-wal-archive`` as archive_command, a base backup by
``barman-cloud-backup``), restored through our restore sidecar as in a recovery Job's Pod (the
ObjectStore and its Secret read through the Kubernetes API, kmock): ``RestoreJobHooks.Restore``,
then PostgreSQL replaying through ``WAL.Restore`` to the recovery target, with the right rows."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cnpg import (
    barman_backup,
    barman_wal_archive_command,
    empty_datadir,
    load_into_kubernetes,
    phases,
    provider_bucket,
    recovery_cluster,
    restore_job,
    switch_and_archive,
)
from tests.e2e.conftest import Sidecar, store_manifest
from tests.harness.postgres import PostgresServer


@pytest.mark.parametrize(
    "provider",
    ["s3", pytest.param("azure", marks=pytest.mark.slow), pytest.param("gcs", marks=pytest.mark.slow)],
)
async def test_restore_a_barman_cloud_backup_through_the_restore_sidecar(
    provider: str,
    request: pytest.FixtureRequest,
    kmock: Any,
    kubernetes_sidecar_factory: Callable[..., Awaitable[Sidecar]],
    e2e_workdir: Path,
    postgres_factory: Callable[..., PostgresServer],
) -> None:
    destination, args, env, manifest = await provider_bucket(request, provider)
    source = postgres_factory(15)
    source.set(archive_command=barman_wal_archive_command([*args, "--gzip"], env, destination))
    source.query("CREATE TABLE events (id int PRIMARY KEY, phase text)")
    source.query("INSERT INTO events SELECT g, 'before the backup' FROM generate_series(1, 1000) g")
    barman_backup([*args, "--snappy"], env, destination, source, e2e_workdir)
    source.query("INSERT INTO events SELECT g, 'after the backup' FROM generate_series(1001, 2000) g")
    target = str(source.query("SELECT now()::text")[0][0])
    time.sleep(1.1)
    source.query("INSERT INTO events SELECT g, 'after the target' FROM generate_series(2001, 3000) g")
    await switch_and_archive(source)

    restored = postgres_factory(15)
    empty_datadir(restored)
    # The recovery Job's sidecar, as in a Pod: the ObjectStore and its Secret read through the
    # Kubernetes API, the store chosen from the Cluster (bootstrap.recovery.source).
    await load_into_kubernetes(kmock, store_manifest(e2e_workdir, manifest))
    cluster = recovery_cluster({"targetTime": target})
    job = await kubernetes_sidecar_factory(
        "restored-1-full-recovery", cluster, role="restore", pgdata=restored.datadir
    )
    await restore_job(job, cluster, restored, [f"recovery_target_time = '{target}'"])
    assert phases(restored) == {"before the backup": 1000, "after the backup": 1000}
