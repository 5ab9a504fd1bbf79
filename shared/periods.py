"""The billing clock: a contract's billing periods and the business day an instant falls on.

Every service goes by this one piece of code. Rating places each event, fee and purchase in a
period computed here, in the contract's business time zone, and the events carry the periods on,
so settlement and invoicing never compute one of their own; the instant a period ends (its run's
cutoff) and the day a document is issued come from here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.relativedelta import relativedelta

from shared.events import BillingCycle


@lru_cache(maxsize=512)
def time_zone(name: str) -> ZoneInfo:
    """The IANA time zone `name` ("Europe/Berlin"); ValueError for a name the tz database lacks."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as unknown:
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as 'Europe/Berlin'") from unknown


def business_day(instant: datetime, zone: str) -> date:
    """The day `instant` falls on in `zone`: an event at 23:30 UTC on the 31st is used on the 1st in Berlin."""
    return instant.astimezone(time_zone(zone)).date()


def parse_instant(text: str, day_at: time = time()) -> datetime:
    """An ISO date-time (UTC unless it says otherwise), or an ISO date: that day at `day_at` UTC."""
    parsed = datetime.combine(date.fromisoformat(text), day_at) if len(text) == 10 else datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def start_of_day(day: date, zone: str) -> datetime:
    """The instant `day` begins in `zone` (its midnight)."""
    return datetime.combine(day, time(), tzinfo=time_zone(zone))


def end_of_day(day: date, zone: str) -> datetime:
    """The instant `day` ends in `zone`: the midnight after it, when a period ending on `day` is over."""
    return start_of_day(day + timedelta(days=1), zone)


@dataclass(frozen=True, slots=True)
class Period:
    start: date
    end: date
    # Days of the regular period this one is (part of): proration divides by it.
    regular_days: int

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def contains(self, day: date) -> bool:
        return self.start <= day <= self.end


# Every usage event asks for its period, and the calendar arithmetic costs more than the rest of
# placing it; the answer depends on these three dates and numbers alone.
@lru_cache(maxsize=65_536)
def _regular_period(anchor: date, months_per_period: int, day: date) -> tuple[date, date]:
    months = (day.year - anchor.year) * 12 + day.month - anchor.month
    index = months // months_per_period
    # Counted from the anchor each time (not chained), so a 31st stays the 31st where it can.
    while anchor + relativedelta(months=index * months_per_period) > day:
        index -= 1
    while anchor + relativedelta(months=(index + 1) * months_per_period) <= day:
        index += 1
    start = anchor + relativedelta(months=index * months_per_period)
    return start, anchor + relativedelta(months=(index + 1) * months_per_period) - timedelta(days=1)


@dataclass(frozen=True, slots=True)
class BillingSchedule:
    """How a contract's life from `starts_on` to `ends_on` is cut into billing periods.

    Calendar cycles run in blocks of `period_months` from the 1st of January (months, quarters,
    half years, years); anniversary cycles from `alignment_date` (default: `starts_on`), and the
    period before an alignment date later than the start runs from the start to the day before
    it, so the first period is shorter or longer than a regular one. The first and last periods
    are cut to the contract's life.
    """

    starts_on: date
    ends_on: date | None
    cycle: BillingCycle = BillingCycle.CALENDAR
    period_months: int = 1
    alignment_date: date | None = None

    def _anchor(self) -> date:
        if self.cycle is BillingCycle.CALENDAR:
            return date(self.starts_on.year, 1, 1)
        return self.alignment_date or self.starts_on

    def _regular(self, day: date) -> tuple[date, date]:
        return _regular_period(self._anchor(), self.period_months, day)

    def period_of(self, day: date) -> Period:
        """The billing period `day` falls in, cut to the contract's life."""
        return _period_of(self, day)

    def periods(self, until: date) -> Iterator[Period]:
        """The periods from the contract's start that begin on or before `until`."""
        day = self.starts_on
        while day <= until and (self.ends_on is None or day <= self.ends_on):
            period = self.period_of(day)
            yield period
            day = period.end + timedelta(days=1)


# Every usage event is placed in its period: a schedule's period of a day never changes, and a
# batch's events mostly fall on a few days of a few schedules.
@lru_cache(maxsize=65_536)
def _period_of(schedule: BillingSchedule, day: date) -> Period:
    if schedule.alignment_date is not None and schedule.cycle is BillingCycle.ANNIVERSARY \
            and day < schedule.alignment_date:
        before_start, before_end = schedule._regular(schedule.alignment_date - timedelta(days=1))
        return Period(schedule.starts_on, schedule.alignment_date - timedelta(days=1),
                      (before_end - before_start).days + 1)
    start, end = schedule._regular(day)
    return Period(max(start, schedule.starts_on), end if schedule.ends_on is None else min(end, schedule.ends_on),
                  (end - start).days + 1)
