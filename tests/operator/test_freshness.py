"""When is a ScheduledBackup overdue? The newest completed backup of its Cluster's server, the
schedule, the ScheduledBackup's creation and its grace time decide."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from barman_cloud.catalog.listing import Backup, Catalog
from barman_cloud.config.object_store import ConfigurationError
from barman_cloud.format.backup_info import BackupInfo
from barman_cloud.format.keys import ServerLayout
from barman_cloud_operator.freshness import GRACE_ANNOTATION, assess, is_ours, parse_scheduled_backup

PLUGIN = "barman-cloud.cloudnative-pg.io"
CREATED = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)


def document(schedule: str = "0 0 0 * * *", *, grace: str | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "nightly",
            "namespace": "db",
            "creationTimestamp": "2026-03-01T00:00:00Z",
            **({"annotations": {GRACE_ANNOTATION: grace}} if grace else {}),
        },
        "spec": {
            "schedule": schedule,
            "cluster": {"name": "pg1"},
            "method": "plugin",
            "pluginConfiguration": {"name": PLUGIN},
            **spec,
        },
    }


def catalog(*ends: datetime, status: str = "DONE") -> Catalog:
    backups = {}
    for end in ends:
        backup_id = end.strftime("%Y%m%dT%H%M%S")
        info = BackupInfo(status=status, begin_time=end - timedelta(minutes=5), end_time=end)
        backups[backup_id] = Backup(backup_id, info)
    return Catalog(ServerLayout("", "pg1"), backups)


def test_on_time_then_overdue_after_the_grace() -> None:
    scheduled = parse_scheduled_backup(document(grace="30m"))
    last = CREATED + timedelta(days=1, minutes=10)  # the backup of day 1, ended at 00:10
    fresh = assess(scheduled, "pg1", catalog(last), CREATED + timedelta(days=2))
    assert fresh.expected == CREATED + timedelta(days=2)
    assert fresh.deadline == CREATED + timedelta(days=2, minutes=30)
    assert not fresh.overdue
    late = assess(scheduled, "pg1", catalog(last), CREATED + timedelta(days=2, minutes=31))
    assert late.overdue and late.last_backup is not None and late.last_backup.end_time == last
    assert late.to_json()["lastBackupTime"] == "2026-03-02T00:10:00Z"


def test_default_grace_is_one_hour_and_nothing_is_expected_before_creation() -> None:
    scheduled = parse_scheduled_backup(document())
    fresh = assess(scheduled, "pg1", None, CREATED + timedelta(hours=12))
    assert (fresh.expected, fresh.deadline, fresh.overdue) == (
        CREATED + timedelta(days=1), CREATED + timedelta(days=1, hours=1), False
    )  # fmt: skip
    assert assess(scheduled, "pg1", catalog(), CREATED + timedelta(days=1, hours=2)).overdue


def test_failed_backups_do_not_count_and_suspended_schedules_are_never_overdue() -> None:
    failed = catalog(CREATED + timedelta(days=3), status="FAILED")
    scheduled = parse_scheduled_backup(document())
    assert assess(scheduled, "pg1", failed, CREATED + timedelta(days=3, hours=2)).overdue
    suspended = parse_scheduled_backup(document(suspend=True))
    fresh = assess(suspended, "pg1", failed, CREATED + timedelta(days=3, hours=2))
    assert not fresh.overdue and fresh.to_json()["suspended"] is True


def test_only_plugin_scheduled_backups_of_this_plugin_are_ours() -> None:
    assert is_ours(document())
    assert not is_ours(document(method="barmanObjectStore"))
    assert not is_ours(document(pluginConfiguration={"name": "other.example.com"}))


def test_problems_are_reported_with_their_paths() -> None:
    bad = document("every day", grace="soon")
    bad["spec"]["cluster"] = {}
    with pytest.raises(ConfigurationError) as error:
        parse_scheduled_backup(bad)
    paths = [path for path, _ in error.value.problems]
    assert paths == ["spec.cluster.name", "spec.schedule", f"metadata.annotations[{GRACE_ANNOTATION}]"]
