"""REDUNDANCY and RECOVERY WINDOW evaluated as barman does, on synthetic catalogs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from barman_cloud.catalog.listing import Backup
from barman_cloud.errors import InvalidInput
from barman_cloud.retention.policies import RetentionStatus, evaluate, parse_policy, point_of_recoverability
from tests.barman_cloud.catalog.synthetic import info

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
VALID, OBSOLETE, MAYBE = RetentionStatus.VALID, RetentionStatus.OBSOLETE, RetentionStatus.POTENTIALLY_OBSOLETE
FULL, STANDALONE, NONE = RetentionStatus.KEEP_FULL, RetentionStatus.KEEP_STANDALONE, RetentionStatus.NONE


def backup(day: int, status: str = "DONE", **changes: object) -> Backup:
    backup_id = f"202602{day:02d}T000000"
    end = datetime(2026, 2, day, 1, 0, tzinfo=UTC)
    return Backup(backup_id, info(backup_id, status=status, end=end, **changes))  # type: ignore[arg-type]


def statuses(report: dict[str, RetentionStatus]) -> list[RetentionStatus]:
    return [report[k] for k in sorted(report)]


CATALOG = [
    backup(1),
    backup(2),  # kept full
    backup(3, "FAILED"),
    backup(4),
    backup(5),  # kept standalone
    backup(6, "STARTED"),
    backup(7),
]
KEEPS = {"20260202T000000": "full", "20260205T000000": "standalone"}


def test_redundancy_counts_kept_backups_and_ignores_other_statuses() -> None:
    report = evaluate(CATALOG, KEEPS, parse_policy("REDUNDANCY 2"))
    assert statuses(report) == [OBSOLETE, FULL, NONE, OBSOLETE, STANDALONE, NONE, VALID]
    # The minimum redundancy wins when it is higher.
    report = evaluate(CATALOG, KEEPS, parse_policy("redundancy 1"), minimum_redundancy=4)
    assert statuses(report) == [OBSOLETE, FULL, NONE, VALID, STANDALONE, NONE, VALID]
    # An unknown keep target counts as full (barman: "for safety").
    report = evaluate(CATALOG, {"20260201T000000": "something"}, parse_policy("REDUNDANCY 1"))
    assert report["20260201T000000"] is FULL


def test_recovery_window_keeps_the_backup_needed_to_reach_its_start() -> None:
    policy = parse_policy("RECOVERY WINDOW OF 26 DAYS")  # point of recoverability: Feb 3rd, 12:00
    assert point_of_recoverability(policy, NOW) == datetime(2026, 2, 3, 12, 0, tzinfo=UTC)
    report = evaluate(CATALOG, KEEPS, policy, now=NOW)
    # Feb 7, 5 (kept), 4 are inside; Feb 4 is not before the point, Feb 2 ends before it: still
    # VALID (recovering to the point needs it) and kept; Feb 1 is OBSOLETE.
    assert statuses(report) == [OBSOLETE, FULL, NONE, VALID, STANDALONE, NONE, VALID]
    report = evaluate(CATALOG, {}, policy, now=NOW)
    assert statuses(report) == [OBSOLETE, VALID, NONE, VALID, VALID, NONE, VALID]


def test_recovery_window_minimum_redundancy_marks_potentially_obsolete() -> None:
    policy = parse_policy("RECOVERY WINDOW OF 2 DAYS")  # only Feb 7 is in; it ended before: found
    report = evaluate(CATALOG, {}, policy, now=NOW, minimum_redundancy=3)
    assert statuses(report) == [OBSOLETE, OBSOLETE, NONE, MAYBE, MAYBE, NONE, VALID]
    report = evaluate(CATALOG, KEEPS, policy, now=NOW, minimum_redundancy=3)
    assert statuses(report) == [OBSOLETE, FULL, NONE, MAYBE, STANDALONE, NONE, VALID]


def test_units_months_are_31_days() -> None:
    assert point_of_recoverability(parse_policy("RECOVERY WINDOW OF 1 MONTH"), NOW) == NOW - timedelta(
        days=31
    )
    assert point_of_recoverability(parse_policy("recovery window of 2 weeks"), NOW) == NOW - timedelta(
        days=14
    )
    assert point_of_recoverability(parse_policy("3d"), NOW) == NOW - timedelta(days=3)
    assert point_of_recoverability(parse_policy("2m"), NOW) == NOW - timedelta(days=62)


def test_guards_where_barman_crashes_or_skips() -> None:
    catalog = [backup(1), backup(2, end_time=None), backup(3, parent_backup_id="20260201T000000")]
    report = evaluate(catalog, {}, parse_policy("RECOVERY WINDOW OF 1 DAY"), now=NOW)
    # A DONE backup without end time is treated as inside the window: its predecessor stays.
    assert report == {"20260202T000000": VALID, "20260201T000000": VALID}
    assert "20260203T000000" not in evaluate(catalog, {}, parse_policy("REDUNDANCY 1"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("REDUNDANCY 3", "REDUNDANCY 3"),
        ("  redundancy   07 ", "REDUNDANCY 7"),
        ("RECOVERY WINDOW OF 30 DAYS", "RECOVERY WINDOW OF 30 DAYS"),
        ("Recovery Window Of 1 day", "RECOVERY WINDOW OF 1 DAYS"),
        ("RECOVERY WINDOW OF 4 WEEKS", "RECOVERY WINDOW OF 4 WEEKS"),
        ("RECOVERY WINDOW OF 2 MONTHS", "RECOVERY WINDOW OF 2 MONTHS"),
        ("30d", "RECOVERY WINDOW OF 30 DAYS"),
        ("4w", "RECOVERY WINDOW OF 4 WEEKS"),
    ],
)
def test_policy_syntax(text: str, expected: str) -> None:
    assert str(parse_policy(text)) == expected


@pytest.mark.parametrize("text", ["REDUNDANCY 0", "RECOVERY WINDOW OF 0 DAYS", "REDUNDANCY", "KEEP 3", "30"])
def test_invalid_policies(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_policy(text)
