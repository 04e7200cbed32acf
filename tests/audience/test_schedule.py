"""Schedule maths: due times keep the local send time across DST, respect the course's weekdays and
cadence. Pure functions, so no database here."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from course.clock import ManualClock
from course.audience.schedule import (
    ALL_WEEKDAYS,
    UnknownTimeZone,
    lesson_due_times,
    local_moment,
    next_send_slot,
    parse_timezone,
)

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
UTC_ZONE = ZoneInfo("UTC")
WEEKDAYS_ONLY = frozenset(range(5))
NINE = time(9, 0)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def local_times(due: list[datetime], zone: ZoneInfo) -> list[datetime]:
    return [moment.astimezone(zone) for moment in due]


@pytest.mark.parametrize(
    ("zone", "start", "before_utc_hour", "after_utc_hour", "change_day"),
    [
        # Spring forward in the US on Sunday 8 March 2026: 09:00 EST is 14:00 UTC, 09:00 EDT 13:00.
        (NEW_YORK, None, 14, 13, date(2026, 3, 8)),
        # Fall back on Sunday 1 November 2026.
        (NEW_YORK, utc(2026, 10, 29, 12), 13, 14, date(2026, 11, 1)),
        # Berlin: CET->CEST on Sunday 29 March, CEST->CET on Sunday 25 October 2026.
        (BERLIN, utc(2026, 3, 26, 12), 8, 7, date(2026, 3, 29)),
        (BERLIN, utc(2026, 10, 22, 12), 7, 8, date(2026, 10, 25)),
    ],
)
def test_dst_change_keeps_nine_local(
    clock: ManualClock, zone: ZoneInfo, start: datetime | None, before_utc_hour: int, after_utc_hour: int, change_day: date
) -> None:
    if start is not None:
        clock.set(start)
    due = lesson_due_times(clock.now(), 7, zone=zone, send_time=NINE, days_between=1)
    assert due[0] == clock.now()
    local = local_times(due, zone)
    assert [(moment.hour, moment.minute) for moment in local[1:]] == [(9, 0)] * 6
    assert [(b.date() - a.date()).days for a, b in zip(local, local[1:])] == [1] * 6
    hours = {moment.astimezone(timezone.utc).date(): moment.astimezone(timezone.utc).hour for moment in due[1:]}
    assert {h for day, h in hours.items() if day < change_day} == {before_utc_hour}
    assert {h for day, h in hours.items() if day >= change_day} == {after_utc_hour}


def test_weekdays_only_course_waits_for_monday_and_never_doubles_up(clock: ManualClock) -> None:
    clock.set(utc(2026, 3, 6, 15))  # Friday
    due = lesson_due_times(clock.now(), 6, zone=NEW_YORK, send_time=NINE, days_between=1, weekdays=WEEKDAYS_ONLY)
    local = local_times(due, NEW_YORK)
    assert [moment.date() for moment in local] == [
        date(2026, 3, 6),  # Friday, at enrollment
        date(2026, 3, 9),  # Monday, not Saturday
        date(2026, 3, 10),
        date(2026, 3, 11),
        date(2026, 3, 12),
        date(2026, 3, 13),
    ]
    assert all((m.hour, m.minute) == (9, 0) for m in local[1:])


def test_enrolling_on_a_saturday_sends_the_next_lesson_on_monday_only(clock: ManualClock) -> None:
    clock.set(utc(2026, 3, 7, 15))  # Saturday
    due = lesson_due_times(clock.now(), 3, zone=BERLIN, send_time=NINE, days_between=1, weekdays=WEEKDAYS_ONLY)
    days = [moment.date() for moment in local_times(due, BERLIN)]
    assert days == [date(2026, 3, 7), date(2026, 3, 9), date(2026, 3, 10)]


def test_every_second_day_skips_the_weekend(clock: ManualClock) -> None:
    # Thursday 5 March: +2 is Saturday, so Monday; then Wednesday, Friday, then Sunday -> Monday.
    due = lesson_due_times(clock.now(), 5, zone=UTC_ZONE, send_time=NINE, days_between=2, weekdays=WEEKDAYS_ONLY)
    assert [moment.date() for moment in due] == [
        date(2026, 3, 5), date(2026, 3, 9), date(2026, 3, 11), date(2026, 3, 13), date(2026, 3, 16)
    ]
    everyday = lesson_due_times(clock.now(), 4, zone=UTC_ZONE, send_time=NINE, days_between=2)
    assert [(b - a) for a, b in zip(everyday[1:], everyday[2:])] == [timedelta(days=2)] * 2


def test_nonexistent_local_time_moves_forward_and_ambiguous_takes_the_first() -> None:
    # 02:30 does not exist in New York on 8 March 2026 (02:00 -> 03:00): 03:30 EDT, 07:30 UTC.
    moved = local_moment(date(2026, 3, 8), time(2, 30), NEW_YORK)
    assert moved == utc(2026, 3, 8, 7, 30)
    assert moved.astimezone(NEW_YORK).time() == time(3, 30)
    # 01:30 happens twice on 1 November 2026: the first one is EDT, 05:30 UTC.
    assert local_moment(date(2026, 11, 1), time(1, 30), NEW_YORK) == utc(2026, 11, 1, 5, 30)
    # Berlin's gap is 02:00-03:00 on 29 March 2026.
    assert local_moment(date(2026, 3, 29), time(2, 15), BERLIN).astimezone(BERLIN).time() == time(3, 15)


def test_next_send_slot_for_a_resumed_course(clock: ManualClock) -> None:
    clock.set(utc(2026, 3, 6, 13))  # Friday 08:00 in New York: today's 09:00 is still ahead
    assert next_send_slot(clock.now(), zone=NEW_YORK, send_time=NINE, weekdays=WEEKDAYS_ONLY) == utc(2026, 3, 6, 14)
    clock.advance(timedelta(hours=2))  # 10:00: Friday's slot has gone, the next is Monday (EDT by then)
    assert next_send_slot(clock.now(), zone=NEW_YORK, send_time=NINE, weekdays=WEEKDAYS_ONLY) == utc(2026, 3, 9, 13)


ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Asia/Kathmandu", "America/Santiago"]


def _nonexistent(day: date, at: time, zone: ZoneInfo) -> bool:
    naive = datetime.combine(day, at)
    return naive.replace(tzinfo=zone).astimezone(timezone.utc).astimezone(zone).replace(tzinfo=None) != naive


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    first_due=st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(timezone.utc)),
    zone_name=st.sampled_from(ZONES),
    send_time=st.sampled_from([time(0, 0), time(1, 30), time(2, 30), time(9, 0), time(23, 45)]),
    days_between=st.integers(1, 4),
    weekdays=st.frozensets(st.integers(0, 6), min_size=1),
    count=st.integers(1, 15),
)
def test_due_times_property(
    first_due: datetime, zone_name: str, send_time: time, days_between: int, weekdays: frozenset[int], count: int
) -> None:
    zone = ZoneInfo(zone_name)
    due = lesson_due_times(first_due, count, zone=zone, send_time=send_time, days_between=days_between, weekdays=weekdays)
    assert len(due) == count
    assert due[0] == first_due
    assert all(a < b for a, b in zip(due, due[1:])), due
    local = local_times(due, zone)
    for previous, moment in zip(local, local[1:]):
        assert moment.weekday() in weekdays
        wall = moment.replace(tzinfo=None)
        wanted = datetime.combine(moment.date(), send_time)
        if _nonexistent(moment.date(), send_time, zone):
            assert wanted < wall <= wanted + timedelta(hours=1), (moment, send_time)
        else:
            assert wall == wanted, (moment, send_time)
        gap = (moment.date() - previous.date()).days
        assert gap >= days_between
        # Any extra wait is only over days the course does not send on.
        skipped = [previous.date() + timedelta(days=n) for n in range(days_between, gap)]
        assert all(day.weekday() not in weekdays for day in skipped)


@pytest.mark.parametrize("name", ["Mars/Base", "", "   ", "+02:00", "../etc/passwd", "/etc/localtime", "UTC+2", "europe/berlin"])
def test_parse_timezone_refuses_what_is_not_an_iana_name(name: str) -> None:
    with pytest.raises(UnknownTimeZone, match="unknown time zone"):
        parse_timezone(name)


def test_parse_timezone_accepts_iana_names() -> None:
    assert parse_timezone("Europe/Berlin") == BERLIN
    assert parse_timezone(" America/New_York ").key == "America/New_York"


def test_lesson_due_times_edge_arguments(clock: ManualClock) -> None:
    assert lesson_due_times(clock.now(), 0, zone=BERLIN, send_time=NINE, days_between=1) == []
    with pytest.raises(ValueError, match="days_between"):
        lesson_due_times(clock.now(), 2, zone=BERLIN, send_time=NINE, days_between=0)
    with pytest.raises(ValueError, match="weekday"):
        lesson_due_times(clock.now(), 2, zone=BERLIN, send_time=NINE, days_between=1, weekdays=frozenset())
    assert ALL_WEEKDAYS == frozenset(range(7))
