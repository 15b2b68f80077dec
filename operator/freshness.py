"""Do a ScheduledBackup's backups really land in the bucket?

CloudNativePG turns a ``ScheduledBackup`` (``method: plugin``, our plugin name) into ``Backup``
objects at each run of its schedule; we never create any. We only look at the bucket: the newest
completed backup of the Cluster's server (any completed backup counts, an on-demand one taken at
that time too) and the schedule.

- *expected*: the first run of the schedule after the later of the last completed backup's end
  and the ScheduledBackup's creation;
- *deadline*: expected plus a grace time (the time a backup may take to complete): one hour, or
  the Go duration in the ScheduledBackup's annotation ``barmancloud.cnpg.io/scheduleGracePeriod``
  (``30m``, ``4h``...);
- *overdue*: past the deadline with no newer completed backup, unless ``spec.suspend`` is set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from barman_cloud.catalog.listing import Backup, Catalog
from barman_cloud.config.object_store import ConfigurationError
from barman_cloud.errors import InvalidInput
from barman_cloud_operator.conditions import timestamp
from barman_cloud_operator.schedule import Schedule, parse_duration, parse_schedule
from plugin_grpc.metadata import PLUGIN_NAME

GRACE_ANNOTATION = "barmancloud.cnpg.io/scheduleGracePeriod"
DEFAULT_GRACE = timedelta(hours=1)


def is_ours(document: Mapping[str, Any]) -> bool:
    """``method: plugin`` with our plugin name: the only ScheduledBackups we look at."""
    spec = document.get("spec") or {}
    plugin = spec.get("pluginConfiguration") or {}
    return bool(spec.get("method") == "plugin" and plugin.get("name") == PLUGIN_NAME)


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ScheduledBackup:
    """What we need from a ScheduledBackup."""

    name: str
    namespace: str
    uid: str | None
    generation: int | None
    created: datetime | None
    cluster: str
    schedule: Schedule
    suspended: bool
    grace: timedelta


def parse_scheduled_backup(document: Mapping[str, Any]) -> ScheduledBackup:
    """Raise :class:`ConfigurationError` listing every problem with its field path."""
    metadata = document.get("metadata") or {}
    spec = document.get("spec") or {}
    name = str(metadata.get("name") or "?")
    namespace = str(metadata.get("namespace") or "?")
    problems: list[tuple[str, str]] = []
    cluster = (spec.get("cluster") or {}).get("name")
    if not isinstance(cluster, str) or not cluster:
        problems.append(("spec.cluster.name", "required: the Cluster to back up"))
    schedule: Schedule | None = None
    try:
        schedule = parse_schedule(str(spec.get("schedule") or ""))
    except InvalidInput as error:
        problems.append(("spec.schedule", str(error)))
    grace = DEFAULT_GRACE
    annotation = (metadata.get("annotations") or {}).get(GRACE_ANNOTATION)
    if annotation is not None:
        try:
            grace = parse_duration(str(annotation))
        except InvalidInput as error:
            problems.append((f"metadata.annotations[{GRACE_ANNOTATION}]", str(error)))
        else:
            if grace < timedelta(0):
                problems.append((f"metadata.annotations[{GRACE_ANNOTATION}]", "must not be negative"))
    if problems or schedule is None or not isinstance(cluster, str):
        raise ConfigurationError(f"ScheduledBackup {namespace}/{name}", problems)
    generation = metadata.get("generation")
    return ScheduledBackup(
        name=name,
        namespace=namespace,
        uid=metadata.get("uid") if isinstance(metadata.get("uid"), str) else None,
        generation=generation if isinstance(generation, int) else None,
        created=_time(metadata.get("creationTimestamp")),
        cluster=cluster,
        schedule=schedule,
        suspended=spec.get("suspend") is True,
        grace=grace,
    )


def last_completed(catalog: Catalog | None) -> Backup | None:
    """The completed backup that ended last."""
    completed = [b for b in catalog or () if b.is_completed and b.end_time is not None]
    return max(completed, key=lambda b: (b.end_time, b.backup_id), default=None)


@dataclass(frozen=True)
class Freshness:
    scheduled_backup: ScheduledBackup
    server: str
    last_backup: Backup | None
    expected: datetime | None
    """When the next backup is due to start."""
    deadline: datetime | None
    next_run: datetime | None
    """The schedule's next run after now."""
    overdue: bool

    def to_json(self) -> dict[str, Any]:
        """The ScheduledBackup's entry in ``ObjectStore.status.scheduledBackups``."""
        entry: dict[str, Any] = {
            "cluster": self.scheduled_backup.cluster,
            "serverName": self.server,
            "schedule": self.scheduled_backup.schedule.text,
            "suspended": self.scheduled_backup.suspended,
            "overdue": self.overdue,
            "lastBackupID": self.last_backup.backup_id if self.last_backup else None,
            "lastBackupTime": timestamp(self.last_backup.end_time)
            if self.last_backup and self.last_backup.end_time
            else None,
            "nextExpectedTime": timestamp(self.expected) if self.expected else None,
            "deadline": timestamp(self.deadline) if self.deadline else None,
            "nextScheduleTime": timestamp(self.next_run) if self.next_run else None,
        }
        return entry

    def describe(self) -> str:
        last = (
            f"last backup {self.last_backup.backup_id} ended {timestamp(self.last_backup.end_time)}"
            if self.last_backup and self.last_backup.end_time
            else "no completed backup in the bucket"
        )
        due = f"one was due by {timestamp(self.deadline)}" if self.deadline else "no run is due"
        return (
            f"ScheduledBackup {self.scheduled_backup.name} (Cluster {self.scheduled_backup.cluster}, "
            f"server {self.server}): {last}; {due}"
        )


def assess(sb: ScheduledBackup, server: str, catalog: Catalog | None, now: datetime) -> Freshness:
    last = last_completed(catalog)
    bases = [moment for moment in (sb.created, last.end_time if last else None) if moment is not None]
    base = max(bases) if bases else now
    expected = sb.schedule.next(base)
    deadline = expected + sb.grace if expected is not None else None
    return Freshness(
        scheduled_backup=sb,
        server=server,
        last_backup=last,
        expected=expected,
        deadline=deadline,
        next_run=sb.schedule.next(now),
        overdue=bool(not sb.suspended and deadline is not None and now > deadline),
    )
