"""ScheduledBackups: validated with Events, and ``BackupsOnSchedule`` turns False when their
backups stop arriving in the bucket, True again when one lands. The operator never creates a
Backup object (CloudNativePG does; here nobody does, the test puts backups in the bucket).

The schedule is ``@every 10s`` with a 2 s grace (``barmancloud.cnpg.io/scheduleGracePeriod``): the
operator checks every second, so it sees the fresh backup well before its deadline. The
emulator does not run CloudNativePG's webhook (which would also reject a bad schedule) nor its
ScheduledBackup controller.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from tests.harness.object_stores import MotoS3
from tests.harness.operator_process import eventually
from tests.operator.conftest import (
    BACKUPS,
    CLUSTERS,
    NAMESPACE,
    OBJECT_STORES,
    PLUGIN,
    SCHEDULED_BACKUPS,
    SECRETS,
    Api,
    Operators,
    aws_secret,
    cluster,
    moto_store,
    put_backup,
    s3_store,
)

GRACE_ANNOTATION = "barmancloud.cnpg.io/scheduleGracePeriod"


def scheduled_backup(name: str, cluster_name: str, schedule: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "postgresql.cnpg.io/v1",
        "kind": "ScheduledBackup",
        "metadata": {"name": name, "namespace": NAMESPACE, "annotations": {GRACE_ANNOTATION: "2s"}},
        "spec": {
            "schedule": schedule,
            "cluster": {"name": cluster_name},
            "backupOwnerReference": "self",
            "method": "plugin",
            "pluginConfiguration": {"name": PLUGIN},
            **spec,
        },
    }


async def test_backups_on_schedule_flips_when_backups_stop(
    api: Api, operators: Operators, moto_s3: MotoS3
) -> None:
    prefix = f"scheduled-{uuid.uuid4().hex[:8]}"
    store = moto_store(moto_s3, prefix)
    try:
        await api.create(SECRETS, aws_secret(moto_s3))
        await api.create(OBJECT_STORES, s3_store("scheduled", moto_s3, prefix))
        await api.create(CLUSTERS, cluster("pg-sched", "scheduled", server="pg-sched-server"))
        await api.create(CLUSTERS, {**cluster("no-plugin", "scheduled"), "spec": {"instances": 1}})
        first = await put_backup(store, "pg-sched-server", datetime.now().astimezone(), segment=2)
        await api.create(SCHEDULED_BACKUPS, scheduled_backup("every-10s", "pg-sched", "@every 10s"))
        await api.create(SCHEDULED_BACKUPS, scheduled_backup("lost", "does-not-exist", "0 0 0 * * *"))
        await api.create(SCHEDULED_BACKUPS, scheduled_backup("unplugged", "no-plugin", "@daily"))
        await api.create(SCHEDULED_BACKUPS, scheduled_backup("five-fields", "pg-sched", "0 0 * * * * *"))
        in_tree = scheduled_backup("in-tree", "pg-sched", "@every 1s", method="barmanObjectStore")
        del in_tree["spec"]["pluginConfiguration"]
        await api.create(SCHEDULED_BACKUPS, in_tree)

        operator = await operators.start()
        procs = (operator,)

        # Validation, reported on the ScheduledBackups themselves.
        validated = await eventually(
            lambda: api.event("ScheduledBackup", "every-10s", "Validated"),
            what="Validated event",
            processes=procs,
        )
        assert "ObjectStore scheduled (server pg-sched-server)" in validated["message"]
        missing = await eventually(
            lambda: api.event("ScheduledBackup", "lost", "ClusterNotFound"),
            what="ClusterNotFound",
            processes=procs,
        )
        assert missing["type"] == "Warning" and f"Cluster {NAMESPACE}/does-not-exist" in missing["message"]
        assert await eventually(
            lambda: api.event("ScheduledBackup", "unplugged", "PluginNotEnabled"),
            what="PluginNotEnabled",
            processes=procs,
        )
        invalid = await eventually(
            lambda: api.event("ScheduledBackup", "five-fields", "InvalidScheduledBackup"),
            what="bad schedule",
            processes=procs,
        )
        assert "spec.schedule" in invalid["message"] and "expected 5 or 6 fields" in invalid["message"]
        assert api.events("ScheduledBackup", "in-tree") == []  # not a plugin backup: not ours

        # The backup just put in the bucket is on time.
        entry = await eventually(
            lambda: (api.status("scheduled").get("scheduledBackups") or {}).get("every-10s"),
            what="freshness of every-10s",
            processes=procs,
        )
        assert (entry["lastBackupID"], entry["overdue"], entry["cluster"], entry["serverName"]) == (
            first, False, "pg-sched", "pg-sched-server"
        )  # fmt: skip
        assert entry["schedule"] == "@every 10s" and entry["nextExpectedTime"] and entry["deadline"]
        on_schedule = api.condition("scheduled", "BackupsOnSchedule")
        assert on_schedule is not None and (on_schedule["status"], on_schedule["reason"]) == (
            "True",
            "OnSchedule",
        )
        assert set(api.status("scheduled")["scheduledBackups"]) == {"every-10s"}

        # No new backup arrives: past the deadline, the condition flips, with Warnings.
        overdue = await eventually(
            lambda: (c := api.condition("scheduled", "BackupsOnSchedule")) and c["status"] == "False" and c,
            what="BackupsOnSchedule False",
            processes=procs,
        )
        assert overdue["reason"] == "BackupOverdue" and "every-10s" in overdue["message"]
        assert api.status("scheduled")["scheduledBackups"]["every-10s"]["overdue"] is True
        assert (api.event("ScheduledBackup", "every-10s", "BackupOverdue") or {}).get("type") == "Warning"
        assert (api.event("ObjectStore", "scheduled", "BackupOverdue") or {}).get("type") == "Warning"

        # A backup lands again: back on schedule.
        second = await put_backup(store, "pg-sched-server", datetime.now().astimezone(), segment=3)
        await eventually(
            lambda: (api.condition("scheduled", "BackupsOnSchedule") or {}).get("status") == "True",
            what="BackupsOnSchedule True again",
            processes=procs,
        )
        assert api.status("scheduled")["scheduledBackups"]["every-10s"]["lastBackupID"] == second
        assert api.event("ObjectStore", "scheduled", "OnSchedule") is not None

        assert api.all(BACKUPS) == []  # CloudNativePG creates Backups, never this operator
    finally:
        await store.close()


async def test_a_fork_of_cloudnative_pg_under_its_own_api_group(
    api: Api, operators: Operators, moto_s3: MotoS3
) -> None:
    """``CUSTOM_CNPG_GROUP`` (what the chart sets from ``rbac.cnpgGroup``): the operator watches the
    fork's ScheduledBackups, reads its Clusters and addresses Events to them; CloudNativePG's own
    group is not watched then."""
    fork = "postgresql.example.com"
    prefix = f"fork-{uuid.uuid4().hex[:8]}"
    await api.create(SECRETS, aws_secret(moto_s3))
    await api.create(OBJECT_STORES, s3_store("forked", moto_s3, prefix))
    await api.create(f"{fork}/v1/clusters", {**cluster("pg-fork", "forked"), "apiVersion": f"{fork}/v1"})
    await api.create(
        f"{fork}/v1/scheduledbackups",
        {**scheduled_backup("fork-daily", "pg-fork", "@daily"), "apiVersion": f"{fork}/v1"},
    )
    await api.create(SCHEDULED_BACKUPS, scheduled_backup("upstream-daily", "pg-fork", "@daily"))

    operator = await operators.start(env={"CUSTOM_CNPG_GROUP": fork})
    validated = await eventually(
        lambda: api.event("ScheduledBackup", "fork-daily", "Validated"),
        what="Validated event on the fork's ScheduledBackup",
        processes=(operator,),
    )
    assert validated["involvedObject"]["apiVersion"] == f"{fork}/v1"
    assert "ObjectStore forked" in validated["message"]
    # The same kind under CloudNativePG's group names a Cluster that only exists in the fork's group:
    # watched, it would get a ClusterNotFound Warning. Nothing is said about it.
    assert api.events("ScheduledBackup", "upstream-daily") == []
