"""Scenario (b): a standby fed from the archive through CNPG-I until the end of the WAL, then the
handoff to streaming.

The primary archives through its instance sidecar (``WAL.Archive``); the standby is cloned with
``pg_basebackup -X none`` (so every WAL it replays comes from the archive), started with
``standby.signal`` and a ``restore_command`` that reaches its own Pod's sidecar (``WAL.Restore``),
which reads the ObjectStore through the Kubernetes API (kmock) and decides from the Cluster JSON
whether PostgreSQL can stream:

- a standby of the cluster (``status.currentPrimary`` is another Pod): once prefetching found the
  next segment missing, ``WAL.Restore`` answers OUT_OF_RANGE "end of WAL reached" (CloudNativePG
  then streams): given ``primary_conninfo``, it streams what was never archived;
- the same for the designated primary of a replica cluster whose source has
  ``connectionParameters``;
- the designated primary of a replica cluster whose source has no ``connectionParameters``:
  nothing to stream from, so the end of the archive stays NOT_FOUND however often it is asked,
  and segments archived later are replayed from the archive.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from barman_cloud.format.wal import DEFAULT_SEGMENT_SIZE, next_segment
from plugin_grpc.metadata import PLUGIN_NAME
from tests.e2e.cnpg import (
    SERVER,
    STORE_NAME,
    append_configuration,
    clone_standby,
    load_into_kubernetes,
    phases,
    provider_store,
    switch_and_archive,
    wait_for,
)
from tests.e2e.conftest import Sidecar
from tests.harness.postgres import PostgresServer

PARAMETERS = {"barmanObjectName": STORE_NAME, "serverName": SERVER}


def standby_of_the_cluster() -> dict[str, Any]:
    """Pod ``pg-2`` is a standby: the primary is ``pg-1``."""
    return {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": {"name": "pg", "namespace": "db", "uid": "c-pg"},
        "spec": {"plugins": [{"name": PLUGIN_NAME, "isWALArchiver": True, "parameters": PARAMETERS}]},
        "status": {"currentPrimary": "pg-1"},
    }


def designated_primary(connection: dict[str, str] | None) -> dict[str, Any]:
    """Pod ``replica-1`` is the designated primary of a replica cluster of ``pg``, reaching its
    source through ``connection`` (``connectionParameters``), or only through the archive."""
    origin: dict[str, Any] = {"name": "origin", "plugin": {"name": PLUGIN_NAME, "parameters": PARAMETERS}}
    if connection:
        origin["connectionParameters"] = connection
    return {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": {"name": "replica", "namespace": "db", "uid": "c-replica"},
        "spec": {"replica": {"enabled": True, "source": "origin"}, "externalClusters": [origin]},
        "status": {"currentPrimary": "replica-1"},
    }


def sidecar_log_records(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


STANDBY, DESIGNATED, ARCHIVE_ONLY = "standby", "designated-primary", "designated-primary-archive-only"


@pytest.mark.parametrize(
    ("provider", "pod"),
    [
        ("s3", STANDBY),
        ("gcs", ARCHIVE_ONLY),
        pytest.param("azure", STANDBY, marks=pytest.mark.slow),
        pytest.param("gcs", STANDBY, marks=pytest.mark.slow),
        pytest.param("s3", ARCHIVE_ONLY, marks=pytest.mark.slow),
        pytest.param("azure", ARCHIVE_ONLY, marks=pytest.mark.slow),
        pytest.param("s3", DESIGNATED, marks=pytest.mark.slow),
        pytest.param("azure", DESIGNATED, marks=pytest.mark.slow),
        pytest.param("gcs", DESIGNATED, marks=pytest.mark.slow),
    ],
)
async def test_standby_replays_the_archive_then_the_end_of_wal_hands_it_over(
    provider: str,
    pod: str,
    request: pytest.FixtureRequest,
    kmock: Any,
    kubernetes_sidecar_factory: Callable[..., Awaitable[Sidecar]],
    sidecar_factory: Callable[..., Sidecar],
    e2e_workdir: Path,
    postgres_factory: Callable[..., PostgresServer],
) -> None:
    manifest = await provider_store(request, provider, e2e_workdir)
    await load_into_kubernetes(kmock, manifest)
    primary = postgres_factory(15)
    archiver = sidecar_factory(manifest, name="pg-1")
    primary.set(archive_command=archiver.archive_command())
    primary.query("CREATE TABLE events (id int PRIMARY KEY, phase text)")
    primary.query("INSERT INTO events SELECT g, 'before the clone' FROM generate_series(1, 1000) g")

    streaming = pod != ARCHIVE_ONLY
    if pod == STANDBY:
        sidecar = await kubernetes_sidecar_factory("pg-2", standby_of_the_cluster())
    else:
        connection = {"host": "127.0.0.1", "port": str(primary.port), "user": "postgres"}
        cluster = designated_primary(connection if pod == DESIGNATED else None)
        sidecar = await kubernetes_sidecar_factory("replica-1", cluster)
    standby = postgres_factory(15)
    settings = [
        f"restore_command = '{sidecar.restore_command()}'",
        "archive_command = ''",
        "wal_retrieve_retry_interval = '500ms'",
    ]
    await asyncio.to_thread(clone_standby, primary, standby, "none", settings)

    for batch in range(3):
        start = 1001 + batch * 1000
        primary.query(
            f"INSERT INTO events SELECT g, 'archived' FROM generate_series({start}, {start + 999}) g"
        )
        last = await switch_and_archive(primary)
    end = next_segment(last, DEFAULT_SEGMENT_SIZE)  # the primary's current segment: not archived

    await asyncio.to_thread(standby.start)
    expected = {"before the clone": 1000, "archived": 3000}
    await wait_for("the standby replays every archived row", lambda: phases(standby) == expected, standby)

    def server_log() -> str:
        return standby.log_path.read_text(errors="replace")

    if streaming:
        # Prefetching found `end` missing: the next request for it is told to stream.
        out_of_range = f"code = 11 desc = end of WAL reached: {end} is not archived yet"
        await wait_for(
            "OUT_OF_RANGE at the end of the archive", lambda: out_of_range in server_log(), standby
        )
        # CloudNativePG's standby has primary_conninfo: it streams from where the archive ended.
        append_configuration(standby, [f"primary_conninfo = '{primary.conninfo}'"])
        standby.query("SELECT pg_reload_conf()")
        await wait_for(
            "streaming",
            lambda: standby.query("SELECT status FROM pg_stat_wal_receiver") == [("streaming",)],
            standby,
        )
        primary.query("INSERT INTO events SELECT g, 'streamed' FROM generate_series(4001, 5000) g")
        expected = {**expected, "streamed": 1000}
        await wait_for("the standby streams", lambda: phases(standby) == expected, standby)
    else:
        not_found = f"code = 5 desc = WAL {end} is not in the archive"
        await wait_for("NOT_FOUND, asked again", lambda: server_log().count(not_found) >= 3, standby)
        # Prefetching did reach the end of the archive; with nothing to stream from, it is not
        # reported as the end of the WAL stream.
        assert any(
            r.get("msg") == "prefetch reached the end of the archive" and r.get("wal") == end
            for r in sidecar_log_records(sidecar.process.log_path)
        )
        assert "code = 11" not in server_log()
        primary.query("INSERT INTO events SELECT g, 'archived later' FROM generate_series(4001, 5000) g")
        await switch_and_archive(primary)
        expected = {**expected, "archived later": 1000}
        await wait_for("the standby replays later segments", lambda: phases(standby) == expected, standby)
        assert "code = 11" not in server_log()
