"""Backups put in the bucket: the operator publishes every server's recovery window, applies the
retention policy per server (a Warning when it fails on one), and deletes the Backup objects of
completed plugin backups no longer in the catalog, only for the Cluster that made them.

The emulator does not check owner references, RBAC or the Backup CRD's schema; the bucket is
moto's S3 server over HTTP.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from barman_cloud.format.keys import ServerLayout
from barman_cloud.storage import ObjectInfo, Store
from tests.harness.object_stores import MotoS3
from tests.harness.operator_process import eventually
from tests.operator.conftest import (
    BACKUPS,
    CLUSTERS,
    OBJECT_STORES,
    SECRETS,
    Api,
    Operators,
    aws_secret,
    backup_object,
    cluster,
    moto_store,
    put_backup,
    s3_store,
)


def _time(value: Any) -> datetime:
    assert isinstance(value, str), value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def _backup_infos(store: Store, server: str) -> set[str]:
    layout = ServerLayout(store.location.prefix, server)
    return {
        entry.key[len(layout.base) :].split("/")[0]
        async for entry in store.list(layout.base)
        if isinstance(entry, ObjectInfo) and entry.key.endswith("/backup.info")
    }


async def test_recovery_window_retention_and_backup_objects(
    api: Api, operators: Operators, moto_s3: MotoS3
) -> None:
    prefix = f"retention-{uuid.uuid4().hex[:8]}"
    store = moto_store(moto_s3, prefix)
    now = datetime.now().astimezone().replace(microsecond=0)
    try:
        oldest = await put_backup(store, "pg1", now - timedelta(hours=3), segment=2)
        middle = await put_backup(store, "pg1", now - timedelta(hours=2), segment=3)
        newest = await put_backup(store, "pg1", now - timedelta(hours=1), segment=4)
        only = await put_backup(store, "pg2", now - timedelta(minutes=30), segment=2)
        # A server whose catalog cannot be read: retention refuses to delete anything there.
        broken = ServerLayout(store.location.prefix, "pg3").backup_info("20260101T000000")
        await store.put(broken, b"this is not a backup.info")

        await api.create(SECRETS, aws_secret(moto_s3))
        await api.create(OBJECT_STORES, s3_store("retained", moto_s3, prefix, retentionPolicy="REDUNDANCY 2"))
        pg1 = await api.create(CLUSTERS, cluster("pg1", "retained"))
        uid = pg1["metadata"]["uid"]
        await api.create(BACKUPS, backup_object("pg1-oldest", "pg1", uid, oldest))
        await api.create(BACKUPS, backup_object("pg1-middle", "pg1", uid, middle))
        # Same backup ID, but made for another Cluster of that name (another UID): not ours to delete.
        await api.create(BACKUPS, backup_object("pg1-before-recreation", "pg1", "another-uid", oldest))
        running = backup_object("pg1-running", "pg1", uid, oldest)
        running["status"]["phase"] = "running"
        await api.create(BACKUPS, running)

        operator = await operators.start()
        procs = (operator,)

        # REDUNDANCY 2 on pg1: the oldest backup goes (backup.info last), the others stay.
        await eventually(
            lambda: api.get(BACKUPS, "pg1-oldest") is None, what="pg1-oldest deleted", processes=procs
        )
        assert await _backup_infos(store, "pg1") == {middle, newest}
        assert await _backup_infos(store, "pg2") == {only}
        for kept in ("pg1-middle", "pg1-before-recreation", "pg1-running"):
            assert api.get(BACKUPS, kept) is not None, kept

        windows = await eventually(
            lambda: (
                (w := api.status("retained").get("serverRecoveryWindow") or {})
                .get("pg1", {})
                .get("firstRecoverabilityPoint")
                and _time(w["pg1"]["firstRecoverabilityPoint"]) > now - timedelta(hours=2, minutes=30)
                and w
            ),
            what="pg1's recovery window after retention",
            processes=procs,
        )
        # Upstream's field names, end times of the oldest and newest completed backups.
        second = timedelta(seconds=1)  # each backup ends one second after it begins
        assert _time(windows["pg1"]["firstRecoverabilityPoint"]) == now - timedelta(hours=2) + second
        assert _time(windows["pg1"]["lastSuccessfulBackupTime"]) == now - timedelta(hours=1) + second
        assert _time(windows["pg2"]["lastSuccessfulBackupTime"]) == now - timedelta(minutes=30) + second
        assert "pg3" not in windows  # nothing readable there

        # The failure on pg3 is a condition and a Warning; the deletions are Normal Events.
        retention = api.condition("retained", "RetentionApplied")
        assert retention is not None
        assert (retention["status"], retention["reason"]) == ("False", "RetentionFailed")
        assert "pg3" in retention["message"] and "REDUNDANCY 2" in retention["message"]
        warning = api.event("ObjectStore", "retained", "RetentionPolicyFailed")
        assert warning is not None and warning["type"] == "Warning" and "server pg3" in warning["message"]
        deleted = api.event("ObjectStore", "retained", "BackupsDeleted")
        assert deleted is not None and oldest in deleted["message"]
        assert (
            (api.event("ObjectStore", "retained", "BackupObjectDeleted") or {})
            .get("message", "")
            .startswith("deleted Backup pg1-oldest")
        )

        # Once pg3 is repaired (here: emptied), retention succeeds everywhere.
        await store.delete_many([broken])
        await eventually(
            lambda: (api.condition("retained", "RetentionApplied") or {}).get("status") == "True",
            what="RetentionApplied True",
            processes=procs,
        )
        assert "pg1, pg2" in (api.condition("retained", "RetentionApplied") or {})["message"]
    finally:
        await store.close()
