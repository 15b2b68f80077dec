"""ScheduledBackup schedules as CloudNativePG reads them, and when each next run is due.

CloudNativePG parses ``ScheduledBackup.spec.schedule`` with robfig/cron v1's ``cron.Parse``:

- five or six space-separated fields, **seconds first**: ``second minute hour day-of-month month
  [day-of-week]`` (day of week defaults to ``*``). ``0 0 0 * * *`` is every midnight; beware that
  a Kubernetes CronJob schedule such as ``0 0 * * *`` means *every hour* here;
- each field: ``*``, ``?`` (same as ``*``), a value, ``a-b``, ``*/n``, ``a/n`` (``a`` to the
  maximum, every ``n``), ``a-b/n``, or a comma-separated list of those; months ``1-12`` or
  ``JAN``-``DEC``, days of week ``0-6`` or ``SUN``-``SAT`` (names in any case);
- day of month and day of week: when either is ``*``/``?`` both must match, otherwise either
  may (classic cron);
- descriptors: ``@yearly`` (``@annually``), ``@monthly``, ``@weekly``, ``@daily``
  (``@midnight``), ``@hourly``, and ``@every <Go duration>`` (``@every 1h30m``: rounded down to
  whole seconds, at least one second, counted from the previous run).

Times are UTC (the zone of CloudNativePG's operator container). A schedule that never fires (the
30th of February) has no next run within five years, like robfig's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from barman_cloud.errors import InvalidInput

SEARCH_YEARS = 5
"""How far robfig/cron looks for the next matching time before giving up."""

_MONTHS = {name: index for index, name in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), start=1
)}  # fmt: skip
_DAYS = {name: index for index, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}

_DESCRIPTORS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
}


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: Mapping[str, int] | None = None


_FIELDS = (
    _Field("second", 0, 59),
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTHS),
    _Field("day of week", 0, 6, _DAYS),
)


@dataclass(frozen=True)
class CronSchedule:
    """A field-based schedule; :meth:`next` is the first matching second after a time."""

    text: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]
    """0 is Sunday."""
    any_day_of_month: bool
    any_day_of_week: bool

    def _day_matches(self, moment: datetime) -> bool:
        dom = moment.day in self.days_of_month
        dow = (moment.weekday() + 1) % 7 in self.days_of_week
        if self.any_day_of_month or self.any_day_of_week:
            return dom and dow
        return dom or dow

    def next(self, after: datetime) -> datetime | None:
        moment = after.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
        limit = moment.year + SEARCH_YEARS
        while moment.year <= limit:
            if moment.month not in self.months:
                year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
                moment = moment.replace(year=year, month=month, day=1, hour=0, minute=0, second=0)
            elif not self._day_matches(moment):
                moment = moment.replace(hour=0, minute=0, second=0) + timedelta(days=1)
            elif moment.hour not in self.hours:
                moment = moment.replace(minute=0, second=0) + timedelta(hours=1)
            elif moment.minute not in self.minutes:
                moment = moment.replace(second=0) + timedelta(minutes=1)
            elif moment.second not in self.seconds:
                moment += timedelta(seconds=1)
            else:
                return moment
        return None


@dataclass(frozen=True)
class EverySchedule:
    """``@every <duration>``: a constant delay after the previous run."""

    text: str
    delay: timedelta

    def next(self, after: datetime) -> datetime:
        return after.astimezone(UTC).replace(microsecond=0) + self.delay


Schedule = CronSchedule | EverySchedule


def _value(text: str, field: _Field, spec: str) -> int:
    if field.names and text.upper() in field.names:
        return field.names[text.upper()]
    if not text.isdigit():
        raise InvalidInput(f"schedule {spec!r}: {text!r} is not a valid {field.name}")
    return int(text)


def _range(part: str, field: _Field, spec: str) -> tuple[set[int], bool]:
    """One element of a comma-separated field: its values, and whether it is ``*``/``?``."""
    range_text, slash, step_text = part.partition("/")
    bounds = range_text.split("-")
    star = bounds[0] in ("*", "?")
    if star:
        if len(bounds) != 1:
            raise InvalidInput(f"schedule {spec!r}: invalid {field.name} {part!r}")
        start, end = field.low, field.high
    else:
        if len(bounds) > 2:
            raise InvalidInput(f"schedule {spec!r}: invalid {field.name} range {part!r}")
        start = _value(bounds[0], field, spec)
        end = _value(bounds[1], field, spec) if len(bounds) == 2 else start
    step = 1
    if slash:
        if not step_text.isdigit():
            raise InvalidInput(f"schedule {spec!r}: invalid step in {field.name} {part!r}")
        step = int(step_text)
        if len(bounds) == 1:
            end = field.high  # "N/step" means "N-max/step"
    if start < field.low or end > field.high:
        raise InvalidInput(f"schedule {spec!r}: {field.name} {part!r} is outside {field.low}-{field.high}")
    if start > end:
        raise InvalidInput(f"schedule {spec!r}: {field.name} range {part!r} starts after its end")
    if step == 0:
        raise InvalidInput(f"schedule {spec!r}: the step in {field.name} {part!r} must be positive")
    return set(range(start, end + 1, step)), star


def _field(text: str, field: _Field, spec: str) -> tuple[frozenset[int], bool]:
    values: set[int] = set()
    star = False
    for part in text.split(","):
        found, is_star = _range(part, field, spec)
        values |= found
        star = star or is_star
    return frozenset(values), star


def _cron(spec: str, text: str) -> CronSchedule:
    fields = text.split()
    if len(fields) == 5:
        fields.append("*")  # the day of week is optional
    if len(fields) != 6:
        raise InvalidInput(
            f"schedule {spec!r}: expected 5 or 6 fields, found {len(text.split())}",
            hint="CloudNativePG's schedules start with seconds: 'SEC MIN HOUR DOM MONTH [DOW]', "
            "e.g. '0 0 0 * * *' for every midnight, or a descriptor such as @daily or @every 6h",
        )
    parsed = [_field(value, field, spec) for value, field in zip(fields, _FIELDS, strict=True)]
    return CronSchedule(
        text=spec,
        seconds=parsed[0][0],
        minutes=parsed[1][0],
        hours=parsed[2][0],
        days_of_month=parsed[3][0],
        months=parsed[4][0],
        days_of_week=parsed[5][0],
        any_day_of_month=parsed[3][1],
        any_day_of_week=parsed[5][1],
    )


_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNITS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
}  # fmt: skip


def parse_duration(text: str) -> timedelta:
    """A Go duration (``time.ParseDuration``): ``90s``, ``1h30m``, ``1.5h``, ``-2m``, ``0``."""
    raw = text.strip()
    body = raw[1:] if raw[:1] in ("+", "-") else raw
    if body == "0":
        return timedelta(0)
    position = 0
    seconds = 0.0
    for match in _DURATION_PART.finditer(body):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if not body or position != len(body):
        raise InvalidInput(
            f"invalid duration {text!r}", hint="use a Go duration such as 90s, 30m, 1h30m or 24h"
        )
    return timedelta(seconds=-seconds if raw.startswith("-") else seconds)


def parse_schedule(text: str) -> Schedule:
    """Parse a ScheduledBackup schedule as CloudNativePG does; InvalidInput explains a mistake."""
    if not text.strip():
        raise InvalidInput("the schedule is empty", hint="e.g. '0 0 0 * * *' (every midnight) or @daily")
    if text.startswith("@every "):
        delay = parse_duration(text[len("@every ") :])
        whole = max(1, int(delay.total_seconds()))  # robfig: at least 1 s, whole seconds
        return EverySchedule(text, timedelta(seconds=whole))
    if text.startswith("@"):
        if text not in _DESCRIPTORS:
            raise InvalidInput(
                f"unknown schedule descriptor {text!r}",
                hint="use @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly "
                "or @every <duration>",
            )
        return _cron(text, _DESCRIPTORS[text])
    return _cron(text, text)
