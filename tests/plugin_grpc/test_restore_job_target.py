"""The recovery target of ``spec.bootstrap.recovery`` as the restore sidecar reads it."""

from __future__ import annotations

from datetime import UTC, datetime

from plugin_grpc.services.restore_job import recovery_target


def test_a_target_time_without_zone_is_utc_whatever_the_pod_zone() -> None:
    # Upstream #699: the Pod's TZ must not move the target (the tools keep barman's local rule).
    target, backup = recovery_target({"recoveryTarget": {"targetTime": "2026-01-02 03:04:05"}})
    assert target.time == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC) and backup is None
    zoned, _ = recovery_target({"recoveryTarget": {"targetTime": "2026-01-02T03:04:05+02:00"}})
    assert zoned.time is not None and zoned.time.astimezone(UTC).hour == 1


def test_explicit_backup_and_other_targets() -> None:
    target, backup = recovery_target(
        {"recoveryTarget": {"backupID": "20260102T030405", "targetLSN": "0/3000060", "targetTLI": 2}}
    )
    assert backup == "20260102T030405"
    assert target.lsn == "0/3000060" and target.timeline == "2" and target.time is None
