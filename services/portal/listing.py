"""Pages, periods and sort orders: what every section of the portal lists its rows by.

The request side is validated where it enters (FastAPI query parameters with patterns), so the
functions here take well-formed values; `fetch_page` applies them to a SELECT of a source.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any, Generic, Mapping, Sequence, TypeVar

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

T = TypeVar("T")

PERIOD_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"
MAX_PAGE_SIZE = 500


@dataclass(frozen=True, slots=True)
class Period:
    """A calendar month, [start, end): how billing users look at their data."""

    start: date
    end: date

    @classmethod
    def parse(cls, text: str) -> Period:
        """'2026-11' -> 2026-11-01 up to (excluding) 2026-12-01."""
        year, month = (int(part) for part in text.split("-"))
        start = date(year, month, 1)
        end = date(year + month // 12, month % 12 + 1, 1)
        return cls(start, end)

    def instants(self) -> tuple[datetime, datetime]:
        """The month as UTC instants, for timestamp columns."""
        return (datetime.combine(self.start, time(), tzinfo=UTC), datetime.combine(self.end, time(), tzinfo=UTC))

    def where(self, column: ColumnElement[Any], *, timestamp: bool = False) -> ColumnElement[bool]:
        start, end = self.instants() if timestamp else (self.start, self.end)
        return (column >= start) & (column < end)


def sort_pattern(keys: Sequence[str]) -> str:
    """The query pattern accepting each key, ascending or with a leading '-' for descending."""
    return rf"^-?({'|'.join(keys)})$"


@dataclass(frozen=True, slots=True)
class Sort:
    key: str
    descending: bool

    @classmethod
    def parse(cls, text: str) -> Sort:
        return cls(text.removeprefix("-"), text.startswith("-"))

    def __str__(self) -> str:
        return f"{'-' if self.descending else ''}{self.key}"


@dataclass(frozen=True, slots=True)
class PageRequest:
    limit: int
    offset: int = 0


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


async def fetch_page(
    connection: AsyncConnection,
    query: Select[Any],
    *,
    sort: Sort,
    sortable: Mapping[str, ColumnElement[Any]],
    tiebreak: Sequence[ColumnElement[Any]],
    page: PageRequest,
) -> Page[Row[Any]]:
    """One page of `query` in `sort` order (then `tiebreak`, so pages never overlap), with the total."""
    total = await connection.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    column = sortable[sort.key]
    ordered = query.order_by(column.desc().nulls_last() if sort.descending else column.asc().nulls_last(), *tiebreak)
    rows = (await connection.execute(ordered.limit(page.limit).offset(page.offset))).all()
    return Page(list(rows), total or 0, page.limit, page.offset)
