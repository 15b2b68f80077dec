"""Scenario (c): upstream's WAL-restore state machine (upstream-plugin.md 4.5), watched from outside.

Real PostgreSQL archives segments through its instance sidecar (``WAL.Archive``); a standby's
sidecar (Pod ``pg-2``, the primary being ``pg-1``: streaming is possible) is then asked for them
exactly as PostgreSQL's ``restore_command`` asks, through the instance manager's CNPG-I calls:

1. the first request prefetches the following segments into the spool;
2. a later request is served from the spool: the segment is taken out of the spool, and it is
   delivered intact although its object was deleted from the bucket meanwhile (no GET);
3. prefetching past the last archived segment sets the end-of-stream flag: the request for that
   segment is answered OUT_OF_RANGE "end of WAL reached" (at the latest on the second request,
   when the first came while the prefetch was still in flight and the segment was fetched);
4. the flag is consumed by that answer: the next request for it is a plain NOT_FOUND;
5. once new segments are archived, the missing one is restored, prefetching resumes, and the flag
   is set again at the new end of the archive.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from barman_cloud.format.wal import DEFAULT_SEGMENT_SIZE, next_segment
from plugin_grpc.metadata import PLUGIN_NAME
from tests.e2e.cnpg import (
    SERVER,
    STORE_NAME,
    load_into_kubernetes,
    manager,
    provider_store,
    resolved_store,
    spool_of,
    spooled,
    switch_and_archive,
    wait_for,
    wal_keys,
)
from tests.e2e.conftest import Sidecar
from tests.harness.postgres import PostgresServer

OUT_OF_RANGE = "code = 11 desc = end of WAL reached"
NOT_FOUND = "code = 5 desc = WAL"


def standby_cluster() -> dict[str, Any]:
    return {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "Cluster",
        "metadata": {"name": "pg", "namespace": "db", "uid": "c-pg"},
        "spec": {
            "plugins": [
                {
                    "name": PLUGIN_NAME,
                    "isWALArchiver": True,
                    "parameters": {"barmanObjectName": STORE_NAME, "serverName": SERVER},
                }
            ]
        },
        "status": {"currentPrimary": "pg-1"},
    }


def following(name: str, count: int = 1) -> str:
    for _ in range(count):
        name = next_segment(name, DEFAULT_SEGMENT_SIZE)
    return name


async def archive_segments(primary: PostgresServer, count: int) -> list[str]:
    names = []
    for _ in range(count):
        primary.query("INSERT INTO t SELECT generate_series(1, 1000)")
        names.append(await switch_and_archive(primary))
    return names


@pytest.mark.parametrize(
    "provider",
    ["azure", pytest.param("s3", marks=pytest.mark.slow), pytest.param("gcs", marks=pytest.mark.slow)],
)
async def test_prefetch_spool_end_of_stream_flag_and_its_reset(
    provider: str,
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
    primary.query("CREATE TABLE t (n int)")
    await switch_and_archive(primary)
    segments = await archive_segments(primary, 5)
    assert segments == [following(segments[0], i) for i in range(5)]
    end = following(segments[-1])  # the primary's current segment: not archived

    standby = await kubernetes_sidecar_factory("pg-2", standby_cluster())
    resolved, store, layout = await resolved_store(manifest)
    spool = spool_of(standby, resolved)
    pg_wal = e2e_workdir / "pg_wal"  # the standby's, as PostgreSQL's %p names it
    pg_wal.mkdir()
    pg_wal.chmod(0o777)

    async def restore(name: str) -> tuple[int, str]:
        return await manager(standby, "wal-restore", name, str(pg_wal / "RECOVERYXLOG"))

    try:
        # 1. The first request prefetches what follows, up to the end of the archive.
        code, stderr = await restore(segments[0])
        assert code == 0, stderr
        await wait_for("the spool fills", lambda: spooled(spool) >= set(segments[1:]))

        # 2. Served from the spool: taken out of it, and no GET (its object is gone).
        served = segments[1]
        content = (spool / served).read_bytes()
        keys = await wal_keys(store, layout, served)
        assert keys, f"{served} is not in the bucket"
        await store.delete_many(keys)
        assert await wal_keys(store, layout, served) == []
        code, stderr = await restore(served)
        assert code == 0, stderr
        assert (pg_wal / "RECOVERYXLOG").read_bytes() == content
        assert served not in spooled(spool)
        for name in segments[2:]:
            code, stderr = await restore(name)
            assert code == 0, stderr
        assert spooled(spool) == set()

        # 3. The end of the stream: OUT_OF_RANGE, so that PostgreSQL streams.
        code, stderr = await restore(end)
        if OUT_OF_RANGE not in stderr:
            assert code == 1 and f"{NOT_FOUND} {end} is not in the archive" in stderr, stderr
            code, stderr = await restore(end)
        assert code == 1 and f"{OUT_OF_RANGE}: {end} is not archived yet" in stderr, stderr

        # 4. Consumed: asked again, the segment is simply not there.
        code, stderr = await restore(end)
        assert code == 1 and f"{NOT_FOUND} {end} is not in the archive" in stderr, stderr

        # 5. New segments archived: restored, prefetched, and the flag set at the new end.
        later = await archive_segments(primary, 2)
        assert later == [end, following(end)]
        new_end = following(end, 2)
        code, stderr = await restore(end)
        assert code == 0, stderr
        await wait_for("the spool refills", lambda: later[1] in spooled(spool))
        code, stderr = await restore(later[1])
        assert code == 0, stderr
        code, stderr = await restore(new_end)
        if OUT_OF_RANGE not in stderr:
            assert code == 1 and f"{NOT_FOUND} {new_end} is not in the archive" in stderr, stderr
            code, stderr = await restore(new_end)
        assert code == 1 and f"{OUT_OF_RANGE}: {new_end} is not archived yet" in stderr, stderr
    finally:
        await store.close()
