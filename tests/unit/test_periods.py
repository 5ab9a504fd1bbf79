"""The one billing clock (shared.periods): periods of every cycle, business days and their instants."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone

import pytest

from shared.events import BillingCycle
from shared.periods import BillingSchedule, Period, business_day, end_of_day, parse_instant, start_of_day


def ends(schedule: BillingSchedule, until: date) -> list[tuple[date, date]]:
    return [(period.start, period.end) for period in schedule.periods(until)]


def test_calendar_months_quarters_and_years_start_on_the_first_of_january_blocks():
    monthly = BillingSchedule(date(2026, 1, 15), None)
    assert ends(monthly, date(2026, 3, 1)) == [
        (date(2026, 1, 15), date(2026, 1, 31)), (date(2026, 2, 1), date(2026, 2, 28)),
        (date(2026, 3, 1), date(2026, 3, 31))]
    quarterly = BillingSchedule(date(2026, 8, 10), None, BillingCycle.CALENDAR, 3)
    assert ends(quarterly, date(2027, 1, 1)) == [
        (date(2026, 8, 10), date(2026, 9, 30)), (date(2026, 10, 1), date(2026, 12, 31)),
        (date(2027, 1, 1), date(2027, 3, 31))]
    assert quarterly.period_of(date(2026, 12, 1)) == Period(date(2026, 10, 1), date(2026, 12, 31), 92)
    yearly = BillingSchedule(date(2026, 3, 1), date(2027, 6, 30), BillingCycle.CALENDAR, 12)
    assert ends(yearly, date(2030, 1, 1)) == [(date(2026, 3, 1), date(2026, 12, 31)),
                                              (date(2027, 1, 1), date(2027, 6, 30))]


def test_anniversary_periods_run_from_the_alignment_day_and_the_first_is_shorter_or_longer():
    anniversary = BillingSchedule(date(2026, 9, 15), None, BillingCycle.ANNIVERSARY, 1)
    assert ends(anniversary, date(2026, 11, 15)) == [
        (date(2026, 9, 15), date(2026, 10, 14)), (date(2026, 10, 15), date(2026, 11, 14)),
        (date(2026, 11, 15), date(2026, 12, 14))]
    aligned = BillingSchedule(date(2026, 9, 3), None, BillingCycle.ANNIVERSARY, 3, alignment_date=date(2026, 10, 1))
    assert aligned.period_of(date(2026, 9, 20)) == Period(date(2026, 9, 3), date(2026, 9, 30), 92)
    assert aligned.period_of(date(2026, 12, 31)) == Period(date(2026, 10, 1), date(2026, 12, 31), 92)
    # The 31st stays the 31st where the month has one.
    end_of_month = BillingSchedule(date(2026, 1, 31), None, BillingCycle.ANNIVERSARY, 1)
    assert ends(end_of_month, date(2026, 3, 31))[1:] == [(date(2026, 2, 28), date(2026, 3, 30)),
                                                        (date(2026, 3, 31), date(2026, 4, 29))]


@pytest.mark.parametrize("instant, zone, day", [
    (datetime(2026, 11, 30, 23, 30, tzinfo=UTC), "Europe/Berlin", date(2026, 12, 1)),
    (datetime(2026, 11, 30, 23, 30, tzinfo=UTC), "UTC", date(2026, 11, 30)),
    (datetime(2026, 12, 1, 0, 30, tzinfo=timezone(timedelta(hours=2))), "Europe/Berlin", date(2026, 11, 30)),
    (datetime(2026, 12, 1, 3, 0, tzinfo=UTC), "America/New_York", date(2026, 11, 30)),
    (datetime(2026, 7, 31, 22, 30, tzinfo=UTC), "Europe/Berlin", date(2026, 8, 1)),  # summer time: UTC+2
])
def test_an_instant_falls_on_the_business_day_of_its_time_zone_whatever_offset_it_was_sent_with(instant, zone, day):
    assert business_day(instant, zone) == day


def test_a_day_begins_and_ends_at_midnight_in_its_time_zone():
    assert start_of_day(date(2026, 12, 1), "Europe/Berlin") == datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
    assert end_of_day(date(2026, 11, 30), "Europe/Berlin") == datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
    assert end_of_day(date(2026, 3, 28), "Europe/Berlin") == datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
    assert end_of_day(date(2026, 3, 29), "Europe/Berlin") == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)  # DST


def test_an_unknown_time_zone_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        business_day(datetime(2026, 1, 1, tzinfo=UTC), "Mars/Olympus")


def test_instants_are_read_with_their_offset_and_dates_at_a_given_time_of_day():
    assert parse_instant("2026-12-01") == datetime(2026, 12, 1, tzinfo=UTC)
    assert parse_instant("2026-12-01", day_at=time(12)) == datetime(2026, 12, 1, 12, tzinfo=UTC)
    assert parse_instant("2026-12-01T01:00:00+01:00") == datetime(2026, 12, 1, tzinfo=UTC)
    assert parse_instant("2026-12-01T01:00:00") == datetime(2026, 12, 1, 1, tzinfo=UTC)
