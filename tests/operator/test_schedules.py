"""ScheduledBackup schedules read as CloudNativePG's robfig/cron v1 ``cron.Parse`` reads them,
and the next run computed from them (UTC)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from barman_cloud.errors import InvalidInput
from barman_cloud_operator.schedule import CronSchedule, EverySchedule, parse_duration, parse_schedule


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        # Seconds first: CloudNativePG's example, every midnight.
        ("0 0 0 * * *", "2026-03-01T12:00:00", "2026-03-02T00:00:00"),
        # Five fields: the day of week is optional, and this is *hourly*, not daily.
        ("0 0 * * *", "2026-03-01T12:00:00", "2026-03-01T13:00:00"),
        ("30 15 2 * * *", "2026-03-01T02:15:30", "2026-03-02T02:15:30"),  # strictly after
        ("*/20 * * * * *", "2026-03-01T12:00:41.5", "2026-03-01T12:01:00"),
        ("5/20 * * * * *", "2026-03-01T12:00:26", "2026-03-01T12:00:45"),  # "N/step" = N-max/step
        ("0 0 9-17/4 * * *", "2026-03-01T14:00:00", "2026-03-01T17:00:00"),
        ("0 0 0 * * MON-FRI", "2026-03-06T01:00:00", "2026-03-09T00:00:00"),  # Friday -> Monday
        ("0 0 0 * * sun", "2026-03-02T00:00:00", "2026-03-08T00:00:00"),
        ("0 0 0 1 JAN,jul ?", "2026-03-01T00:00:00", "2026-07-01T00:00:00"),
        # Day of month and day of week both restricted: either matches (classic cron).
        ("0 0 0 15 * 1", "2026-03-10T00:00:00", "2026-03-15T00:00:00"),
        ("0 0 0 15 * 1", "2026-03-15T00:00:00", "2026-03-16T00:00:00"),
        ("0 0 0 29 2 *", "2026-03-01T00:00:00", "2028-02-29T00:00:00"),
        ("@daily", "2026-12-31T23:59:59", "2027-01-01T00:00:00"),
        ("@midnight", "2026-12-31T00:00:00", "2027-01-01T00:00:00"),
        ("@hourly", "2026-03-01T12:59:59", "2026-03-01T13:00:00"),
        ("@weekly", "2026-03-01T00:00:00", "2026-03-08T00:00:00"),  # Sundays
        ("@monthly", "2026-12-15T00:00:00", "2027-01-01T00:00:00"),
        ("@yearly", "2026-03-01T00:00:00", "2027-01-01T00:00:00"),
        ("@annually", "2026-03-01T00:00:00", "2027-01-01T00:00:00"),
        # @every: a constant delay from the previous run, rounded to whole seconds.
        ("@every 1h30m", "2026-03-01T12:00:00.7", "2026-03-01T13:30:00"),
        ("@every 1.5s", "2026-03-01T12:00:00", "2026-03-01T12:00:01"),
        ("@every 10ms", "2026-03-01T12:00:00", "2026-03-01T12:00:01"),  # at least a second
    ],
)
def test_next_run(schedule: str, after: str, expected: str) -> None:
    assert parse_schedule(schedule).next(at(after)) == at(expected)


def test_a_schedule_that_never_runs_has_no_next_run() -> None:
    schedule = parse_schedule("0 0 0 30 2 *")
    assert isinstance(schedule, CronSchedule)
    assert schedule.next(at("2026-01-01T00:00:00")) is None


def test_times_in_other_zones_are_compared_in_utc() -> None:
    paris = datetime(2026, 3, 1, 1, 30, tzinfo=UTC).astimezone(ZoneInfo("Europe/Paris"))
    assert parse_schedule("0 0 2 * * *").next(paris) == at("2026-03-01T02:00:00")


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("", "empty"),
        ("0 0 0 * *  * *", "expected 5 or 6 fields, found 7"),
        ("0 0 * *", "expected 5 or 6 fields, found 4"),
        ("60 * * * * *", "outside 0-59"),
        ("0 0 24 * * *", "outside 0-23"),
        ("0 0 0 0 * *", "outside 1-31"),
        ("0 0 0 * 13 *", "outside 1-12"),
        ("0 0 0 * * 7", "outside 0-6"),
        ("0 0 0 * * FUN", "not a valid day of week"),
        ("0 0 5-3 * * *", "starts after its end"),
        ("*/0 * * * * *", "must be positive"),
        ("0 0 1-2-3 * * *", "invalid hour range"),
        ("@fortnightly", "unknown schedule descriptor"),
        ("@every", "unknown schedule descriptor"),
        ("@every soon", "invalid duration"),
    ],
)
def test_invalid_schedules_say_what_is_wrong(schedule: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_schedule(schedule)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0), ("90s", 90), ("1h30m", 5400), ("1.5h", 5400), ("-2m", -120), ("500ms", 0.5), ("2h0m0s", 7200)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "5", "1d", "h", "1h 30m", "1..5s"])
def test_invalid_go_durations(text: str) -> None:
    with pytest.raises(InvalidInput, match="invalid duration"):
        parse_duration(text)


def test_every_keeps_its_text_and_delay() -> None:
    schedule = parse_schedule("@every 6h")
    assert isinstance(schedule, EverySchedule)
    assert (schedule.text, schedule.delay) == ("@every 6h", timedelta(hours=6))
