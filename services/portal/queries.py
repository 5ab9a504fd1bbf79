"""Each section's query: filters, sort order and page, validated once for the API and the page alike."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.portal import models
from services.portal.listing import MAX_PAGE_SIZE, PERIOD_PATTERN, PageRequest, Period, Sort, sort_pattern
from services.portal.sources import invoicing, payments, rating, settlement
from shared.events import ContractStatus, DocumentType

ContractFilter = Annotated[str | None, Field(max_length=64, description="Only this contract's rows.")]


def _sort(keys: dict, default: str):
    return Field(default, pattern=sort_pattern(list(keys)),
                 description=f"One of {', '.join(keys)}; a leading '-' sorts descending.")


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(25, ge=1, le=MAX_PAGE_SIZE, description="Rows per page.")
    offset: int = Field(0, ge=0, description="Rows to skip.")
    sort: str

    @property
    def order(self) -> Sort:
        return Sort.parse(self.sort)

    @property
    def page(self) -> PageRequest:
        return PageRequest(self.limit, self.offset)


class PeriodQuery(ListQuery):
    period: str | None = Field(None, pattern=PERIOD_PATTERN, description="A month, YYYY-MM.", examples=["2026-11"])
    contract_id: ContractFilter = None

    @property
    def month(self) -> Period | None:
        return Period.parse(self.period) if self.period else None


class CustomerQuery(ListQuery):
    sort: str = _sort(rating.CUSTOMER_SORTS, "name")
    search: str | None = Field(None, max_length=100, description="Part of the id or name.")


class BillableItemQuery(PeriodQuery):
    """The period is the month the item was used (occurred)."""

    sort: str = _sort(settlement.ITEM_SORTS, "-occurred_at")
    status: models.ItemStatus | None = None
    type: models.ChargeType | None = None


class DocumentQuery(PeriodQuery):
    """The period is the month of the issue date."""

    sort: str = _sort(invoicing.DOCUMENT_SORTS, "-issue_date")
    status: models.DocumentStatus | None = None
    type: DocumentType | None = None


class ContractQuery(ListQuery):
    sort: str = _sort(rating.CONTRACT_SORTS, "contract_id")
    status: ContractStatus | None = None


class RunQuery(PeriodQuery):
    """The period is the month of the run's cutoff."""

    sort: str = _sort(settlement.RUN_SORTS, "-cutoff")
    status: models.RunStatus | None = None


class OpenItemQuery(PeriodQuery):
    """The period is the month the item is due."""

    sort: str = _sort(payments.OPEN_ITEM_SORTS, "due_date")
    status: models.OpenItemStatus | None = None
    type: models.OpenItemType | None = None


class PaymentAccountQuery(ListQuery):
    sort: str = _sort(payments.ACCOUNT_SORTS, "created_at")
    type: models.PaymentMethod | None = None


class LedgerQuery(PeriodQuery):
    """The period is the month the entry was booked."""

    sort: str = _sort(settlement.LEDGER_SORTS, "booked_at")
    type: models.EntryType | None = None


SCHEDULE_SORTS = {"period_start": None}  # periods in order, each period's items by item code


class ScheduleQuery(ListQuery):
    sort: str = _sort(SCHEDULE_SORTS, "period_start")
    item_code: str | None = Field(None, max_length=64, description="Only this item's rows.")
    timing: models.Timing | None = Field(None, description="Only past, current or future periods.")
    estimate_item: str | None = Field(None, max_length=64, description="The item an estimated consumption is for.")
    estimate_quantity: Annotated[Decimal, Field(gt=0, max_digits=28, decimal_places=10)] | None = Field(
        None, description="Estimated consumption per period, applied to the item's current and future unbilled "
                          "rows (marked estimated; never billed).")
    estimate_period: date | None = Field(
        None, description="The start of the one period whose estimate was edited: it is estimated at "
                          "estimate_period_quantity, the unbilled periods before it are treated as actual (no "
                          "estimate), the later ones keep estimate_quantity.")
    estimate_period_quantity: Annotated[Decimal, Field(ge=0, max_digits=28, decimal_places=10)] | None = Field(
        None, description="The edited period's estimated consumption.")

    @model_validator(mode="after")
    def _an_estimate_names_its_item(self) -> ScheduleQuery:
        if (self.estimate_period is None) != (self.estimate_period_quantity is None):
            raise ValueError("an edited period's estimate needs both estimate_period and estimate_period_quantity")
        if (self.estimate_item is None) != (self.estimate_quantity is None and self.estimate_period is None):
            raise ValueError("an estimate needs estimate_item and estimate_quantity (or an edited period's estimate)")
        return self


class LineUsageQuery(BaseModel):
    """A page of the usage events behind a schedule row: keyset-paged (follow `next`), as a row can
    stand for millions of events."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(25, ge=1, le=MAX_PAGE_SIZE, description="Events per page.")
    after: str | None = Field(None, max_length=100, description="The `next` of the page before; none: the first page.")

    @property
    def cursor(self) -> tuple[datetime, uuid.UUID] | None:
        return None if self.after is None else parse_cursor(self.after)

    @model_validator(mode="after")
    def _a_cursor_the_api_gave_out(self) -> LineUsageQuery:
        if self.after is not None:
            parse_cursor(self.after)
        return self


def usage_cursor(occurred_at: datetime, event_id: uuid.UUID) -> str:
    """The cursor after an event: its instant and id, the order events are listed in."""
    return f"{occurred_at.isoformat()}|{event_id}"


def parse_cursor(text: str) -> tuple[datetime, uuid.UUID]:
    occurred_at, _, event_id = text.partition("|")
    try:
        return datetime.fromisoformat(occurred_at), uuid.UUID(event_id)
    except ValueError:
        raise ValueError(f"after={text!r} is not a cursor this API gave out") from None


class OrderQuery(PeriodQuery):
    """The period is the month of the purchase day."""

    sort: str = _sort(settlement.ORDER_SORTS, "-ordered_at")


class CreditQuery(ListQuery):
    sort: str = _sort(payments.CREDIT_SORTS, "received_at")
    contract_id: ContractFilter = None
