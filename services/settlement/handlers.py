"""Settlement's use cases, each inside one transaction: a consumer's, the scheduler's or an operator's."""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Awaitable, Callable, Iterable, Mapping, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from services.settlement import domain, store
from services.settlement.domain import Account, ContractTerms, EntryType, LedgerEntry, RunStatus, SettlementRun
from services.settlement.store import RunRecord
from shared import topics
from shared.backlog import AppliedThrough
from shared.errors import DependencyNotReady, Rejected
from shared.events import (
    BillingRunRequested,
    ContractChanged,
    CreditItem,
    CreditReason,
    CustomerProfile,
    DocumentCreated,
    DocumentType,
    PaymentKind,
    PaymentReceived,
    PaymentStatus,
    PeriodClosed,
    RatedItem,
    ReceivablesPosted,
    SettlementItem,
    derive_id,
)
from shared.inbox import BatchOutcome, each_in_savepoint
from shared.outbox import Outgoing
from shared.money import Money

log = logging.getLogger("billing.settlement")

ENTRY_TYPE_OF_PAYMENT = {
    PaymentKind.PAYMENT: EntryType.PAYMENT,
    PaymentKind.CHARGEBACK: EntryType.CHARGEBACK,
    PaymentKind.REFUND: EntryType.REFUND,
    PaymentKind.CHARGEBACK_REVERSAL: EntryType.CHARGEBACK_REVERSAL,
}


async def record_rated_items(session: AsyncSession, events: Sequence[RatedItem]) -> BatchOutcome:
    """Keep rated items until a run settles them; each contract's account is opened on first use."""
    accounts = await store.lock_accounts_opening(session, ((e.contract_id, e.customer_id, e.currency) for e in events))
    kept_in = {contract_id: account.balance.currency for contract_id, account in accounts.items()}
    refused = {
        event.event_id: Rejected(f"item {event.billable_item_id} is in {event.currency}, "
                                 f"but contract {event.contract_id} is kept in {kept_in[event.contract_id]}")
        for event in events if kept_in[event.contract_id] != event.currency
    }
    await store.add_billable_items(session, [event for event in events if event.event_id not in refused])
    return BatchOutcome(rejected=refused)


async def record_contracts(session: AsyncSession, events: Sequence[ContractChanged]) -> BatchOutcome:
    """Keep each contract's newest snapshot: a batch without a cancellation in one statement, as
    applying them one by one would leave the same snapshots; one with a cancellation one by one
    in offset order (each in a savepoint), as a cancellation may credit fees (record_contract)."""
    if any(_terms(event).terminated_on is not None for event in events):
        return await _record_each_contract(session, events)
    newest: dict[str, ContractTerms] = {}
    for terms in map(_terms, events):
        if terms.contract_id not in newest or terms.revision > newest[terms.contract_id].revision:
            newest[terms.contract_id] = terms
    kept = await store.save_contracts(session, list(newest.values()))
    if kept < len(events):
        log.info("%d contract snapshot(s) not newer than the ones held; ignored", len(events) - kept)
    return BatchOutcome()


def _terms(event: ContractChanged) -> ContractTerms:
    return ContractTerms(event.contract_id, event.customer.customer_id, event.currency, event.starts_on,
                         event.ends_on, event.status, event.revision, event.customer)


async def record_contract(session: AsyncSession, event: ContractChanged) -> list[Outgoing]:
    """Keep the newest snapshot; a cancellation credits the prepaid recurring fees beyond its last day."""
    terms = _terms(event)
    if not await store.save_contracts(session, [terms]):
        log.info("contract %s revision %s is not newer than the one held; ignored", terms.contract_id, terms.revision)
        return []
    if terms.terminated_on is None:
        return []
    account = await store.lock_account(session, terms.contract_id)
    if account is None:
        return []  # nothing was ever billed; the runs that bill its fees credit them
    due = domain.termination_credits(terms, await store.termination_candidates(session, terms.contract_id,
                                                                                terms.terminated_on))
    if not due:
        return []
    record = RunRecord(derive_id(event.event_id, "termination-run"), terms.contract_id, event.occurred_at,
                       RunStatus.OPEN, f"cancellation on {terms.terminated_on.isoformat()}")
    return await _post_credits(session, account, record, due, booked_at=event.occurred_at)


_record_each_contract = each_in_savepoint(record_contract)


def billing_runs(rated_items: AppliedThrough, wait_s: float) -> Callable[..., Awaitable[BatchOutcome]]:
    """The use case of billing-runs.requested, billing what rating had rated by the time a run was
    requested: a run settles once settlement applied every item published to items.rated before
    it (`rated_items`), waiting at most `wait_s`, then parked. A run requested right after usage
    was rated thus bills that usage, whenever settlement's fetch of the items comes back."""

    async def run_billing(session: AsyncSession, events: Sequence[BillingRunRequested]) -> BatchOutcome:
        now = datetime.now(UTC)
        due = {event.event_id: event for event in events if event.cutoff <= now}
        behind = await rated_items.wait(max(event.occurred_at for event in due.values()), wait_s) if due else 0
        if not behind:
            return await _settle_requests(session, events, now)
        waiting = DependencyNotReady(f"{behind} item(s) rating published before the run was requested are not "
                                     "applied in settlement yet; the run bills them")
        outcome = await _settle_requests(session, [event for event in events if event.event_id not in due], now)
        return BatchOutcome(outcome.outgoing, outcome.rejected, {**outcome.parked, **dict.fromkeys(due, waiting)})

    return run_billing


async def _settle_requests(session: AsyncSession, events: Sequence[BillingRunRequested],
                           now: datetime) -> BatchOutcome:
    """"Create vouchers": settle now, or, for a cutoff still ahead, record the run for the scheduler.

    "Ahead" is by this worker's clock (`now`), the one its scheduler goes by; a request that was
    made before its cutoff but is applied after it settles at once. The batch's runs are written
    together, one per contract: a second request for a contract in the batch is parked, and so
    re-driven the moment this batch is applied, over what the first one left.
    """
    if not events:
        return BatchOutcome()
    contract_ids = {event.contract_id for event in events}
    accounts = await store.lock_accounts(session, contract_ids)
    contracts = await store.find_contracts(session, contract_ids)
    # A request for a later cutoff opens the account of a contract it knows, to be settled later.
    opening = {contracts[event.contract_id] for event in events
               if event.cutoff > now and event.contract_id not in accounts and event.contract_id in contracts}
    if opening:
        accounts |= await store.lock_accounts_opening(
            session, ((contract.contract_id, contract.customer_id, contract.currency) for contract in opening))
    unsettled = {cutoff: await store.unsettled_items(session, contract_ids & accounts.keys(), cutoff)
                 for cutoff in {event.cutoff for event in events if event.cutoff <= now}}
    postings = Postings(accounts, billed_before=await _billed_before(
        session, (item for by_contract in unsettled.values() for items in by_contract.values() for item in items)))
    pending: list[tuple[Account, RunRecord]] = []
    settling: set[str] = set()
    parked: dict[uuid.UUID, DependencyNotReady] = {}
    for event in events:
        account = postings.accounts.get(event.contract_id)
        if account is None:
            log.info("billing run for %s: nothing was ever rated for it", event.contract_id)
            continue
        waits = event.cutoff > now
        record = RunRecord(derive_id(event.event_id, "settlement-run"), event.contract_id, event.cutoff,
                           RunStatus.PENDING if waits else RunStatus.OPEN, event.requested_by)
        if waits:
            pending.append((account, record))
            continue
        if event.contract_id in settling:
            parked[event.event_id] = DependencyNotReady(f"an earlier run of {event.contract_id} is settled in "
                                                        "the same batch; this one follows it")
            continue
        settling.add(event.contract_id)
        try:
            postings.settle(record, unsettled[event.cutoff][event.contract_id],
                            contracts.get(event.contract_id), booked_at=event.occurred_at)
        except Rejected as refusal:
            postings.rejected[event.event_id] = refusal
    await store.record_runs(session, pending)
    await postings.save(session)
    return BatchOutcome(postings.outgoing, postings.rejected, parked)


async def bill_closed_period(session: AsyncSession, event: PeriodClosed) -> list[Outgoing]:
    """The run of a period rating has closed: what was billed into it (and before it) and is still
    unsettled, once settlement holds every item rating billed into it. Until then it is parked,
    and re-driven as the contract's items arrive. Its id follows from contract and period, so a
    redelivered announcement bills nothing twice."""
    held = await store.items_billed_in(session, event.contract_id, event.period_start, event.period_end)
    if held < event.item_count:
        raise DependencyNotReady(f"period {event.period_start}..{event.period_end} of {event.contract_id} has "
                                 f"{event.item_count} rated item(s); {held} have arrived in settlement")
    if event.item_count == 0:
        log.info("period %s..%s of %s: nothing was billed into it", event.period_start, event.period_end,
                 event.contract_id)
        return []
    accounts = await store.lock_accounts_opening(session, [(event.contract_id, event.customer_id, event.currency)])
    record = RunRecord(domain.scheduled_run_id(event.contract_id, event.period_end), event.contract_id,
                       event.ends_at, RunStatus.OPEN, "schedule", event.period_start, event.period_end)
    if await store.find_run(session, record.settlement_run_id) is not None:
        log.info("period %s..%s of %s was billed before", event.period_start, event.period_end, event.contract_id)
        return []
    await store.record_runs(session, [(accounts[event.contract_id], record)])
    return await settle_open_run(session, record, booked_at=datetime.now(UTC))


async def settle_open_run(session: AsyncSession, record: RunRecord, booked_at: datetime) -> list[Outgoing]:
    """Settle a recorded run (held locked): a period's run what was billed in periods ending by its
    period's end, a run to a cutoff what was used before it."""
    account = await store.lock_account(session, record.contract_id)
    assert account is not None, f"run {record.settlement_run_id} was recorded for a contract without an account"
    items = (await store.unsettled_items(session, [record.contract_id], record.cutoff,
                                         record.period_end))[record.contract_id]
    contract = (await store.find_contracts(session, [record.contract_id])).get(record.contract_id)
    postings = Postings({record.contract_id: account}, billed_before=await _billed_before(session, items))
    postings.settle(record, items, contract, booked_at)
    await postings.save(session)
    return postings.outgoing


async def _billed_before(session: AsyncSession, unsettled: Iterable[domain.Item]) -> dict[tuple, uuid.UUID]:
    """The runs whose invoices a run's adjustments would correct: only items that took something off
    their period can become adjustments (SettlementRun)."""
    return await store.runs_that_billed(session, [item for item in unsettled if item.net.amount <= 0])


async def post_payment(session: AsyncSession, event: PaymentReceived) -> list[Outgoing]:
    """Money that moved (a succeeded transaction); pending and failed ones are payments' business only."""
    if event.status is not PaymentStatus.SUCCEEDED:
        log.info("%s %s is %s: nothing moved, nothing to post", event.kind, event.payment_id, event.status)
        return []
    entry_type = ENTRY_TYPE_OF_PAYMENT[event.kind]
    if await store.payment_already_posted(session, event.payment_id, entry_type):
        log.warning("%s %s was already posted under another event id; ignoring %s",
                    entry_type, event.payment_id, event.event_id)
        return []
    account = await store.account_for(session, event.contract_id, event.customer_id, event.currency)
    fee = Money.of(event.fee, event.currency) if event.fee is not None else None
    account, entries = domain.post_transaction(
        account, entry_type, Money.of(event.amount, event.currency), fee, event_id=event.event_id,
        payment_id=event.payment_id, document_number=event.invoice_number, booked_at=event.occurred_at,
    )
    await store.save_postings(session, [account], entries)
    return []


async def post_document_tax(session: AsyncSession, events: Sequence[DocumentCreated]) -> BatchOutcome:
    """The VAT invoicing put on documents, so the ledger balance is gross like the open items.

    Documents are invoicing's facts: booked as they come, like payments are (which open the account
    if need be), so the ledger and the open items never disagree about a document.
    """
    postings = Postings(await store.lock_accounts_opening(
        session, ((event.contract_id, event.customer_id, event.currency) for event in events)))
    for event in events:
        try:
            postings.book(event.contract_id, partial(
                domain.post_document_tax, document_id=event.document_id, number=event.number,
                is_invoice=event.document_type is DocumentType.INVOICE, tax=Money.of(event.tax_total, event.currency),
                booked_at=event.occurred_at))
        except Rejected as refusal:
            postings.rejected[event.event_id] = refusal
    await postings.save(session)
    return postings.outcome()


# --- operator commands ---------------------------------------------------------------------------


async def grant_credit(session: AsyncSession, item_id: uuid.UUID, amount: Decimal, reason: str,
                       credit_id: uuid.UUID, booked_at: datetime) -> list[Outgoing]:
    """A credit on a billed item, posted in a credit run of its own; granting the same credit id again does nothing."""
    contract_id = await _contract_of(session, [item_id])
    account = await store.lock_account(session, contract_id)
    assert account is not None
    if await store.existing_credits(session, [credit_id]):
        log.info("credit %s was granted before; nothing to do", credit_id)
        return []
    [item] = await store.items(session, [item_id])
    credit = domain.grant_credit(item, Money.of(amount, account.balance.currency), reason, credit_id)
    return await _post_credits(session, account, _credit_record(contract_id, [credit], booked_at), [credit], booked_at)


async def cancel_order(session: AsyncSession, item_ids: Sequence[uuid.UUID], booked_at: datetime) -> list[Outgoing]:
    """Credit the billed items of a cancelled order in full; items cancelled before are left as they are."""
    outgoing = []
    for contract_id, ids in sorted((await _contracts_of(session, item_ids)).items()):
        account = await store.lock_account(session, contract_id)
        assert account is not None
        done = await store.existing_credits(session, [domain.order_cancellation_id(item_id) for item_id in ids])
        credits = [domain.cancel_order(item) for item in await store.items(session, ids)
                   if domain.order_cancellation_id(item.billable_item_id) not in done]
        if credits:
            outgoing += await _post_credits(session, account, _credit_record(contract_id, credits, booked_at),
                                            credits, booked_at)
    return outgoing


async def reverse_entry(session: AsyncSession, entry_id: uuid.UUID, reason: str,
                        booked_at: datetime) -> LedgerEntry | None:
    """Correct a ledger entry booked in error with a reversing entry; None if it was reversed before."""
    entry = await store.find_entry(session, entry_id)
    if entry is None:
        raise Rejected(f"there is no ledger entry {entry_id}")
    account = await store.lock_account(session, entry.contract_id)
    assert account is not None
    if await store.is_reversed(session, entry_id):
        return None
    account, reversal = domain.reverse(account, entry, entry_id=domain.reversal_id(entry_id), reason=reason,
                                       booked_at=booked_at)
    await store.save_postings(session, [account], [reversal])
    return reversal


async def _contracts_of(session: AsyncSession, item_ids: Sequence[uuid.UUID]) -> dict[str, list[uuid.UUID]]:
    by_contract: dict[str, list[uuid.UUID]] = defaultdict(list)
    for item_id in dict.fromkeys(item_ids):
        contract_id = await store.item_contract(session, item_id)
        if contract_id is None:
            raise Rejected(f"settlement has no billable item {item_id}")
        by_contract[contract_id].append(item_id)
    return by_contract


async def _contract_of(session: AsyncSession, item_ids: Sequence[uuid.UUID]) -> str:
    [contract_id] = await _contracts_of(session, item_ids)
    return contract_id


def _credit_record(contract_id: str, credits: Sequence[domain.Credit], booked_at: datetime) -> RunRecord:
    return RunRecord(domain.credit_run_id(credits), contract_id, booked_at, RunStatus.OPEN, "operator")


# --- posting runs -------------------------------------------------------------------------------


@dataclass
class Postings:
    """What a use case posts, decided in the domain first and written at the end (`save`), so that
    anything the domain refuses leaves no trace: the accounts as the postings move them, the
    entries, the settled runs and the receivables.posted events."""

    accounts: dict[str, Account]
    entries: list[LedgerEntry] = field(default_factory=list)
    settled: list[store.Settled] = field(default_factory=list)
    # The contracts `settle` was asked for, each once.
    settling: set[str] = field(default_factory=set)
    forgotten: list[uuid.UUID] = field(default_factory=list)
    outgoing: list[Outgoing] = field(default_factory=list)
    rejected: dict[uuid.UUID, Rejected] = field(default_factory=dict)
    # Per (contract, item code, period): the run that billed it before (runs_that_billed).
    billed_before: Mapping[tuple, uuid.UUID] = field(default_factory=dict)

    def book(self, contract_id: str, booking: Callable[[Account], tuple[Account, list[LedgerEntry]]]) -> None:
        """Book on the contract's account; if the domain refuses, neither the account nor the entries change."""
        account, entries = booking(self.accounts[contract_id])
        self.accounts[contract_id] = account
        self.entries += entries

    def settle(self, record: RunRecord, unsettled: Sequence[domain.Item], contract: ContractTerms | None,
               booked_at: datetime) -> None:
        """Settle `unsettled` (the run's items, as unsettled_items sums them) with the credits due on them.

        At most one run per contract: its items are settled by what selects them (store.save_runs)."""
        assert record.contract_id not in self.settling, record.contract_id
        self.settling.add(record.contract_id)
        run = domain.settle(record.settlement_run_id, self.accounts[record.contract_id], record.cutoff, unsettled,
                            contract)
        if run is None:
            self.forgotten.append(record.settlement_run_id)
            log.info("run %s for %s: nothing to settle before %s", record.settlement_run_id, record.contract_id,
                     record.cutoff)
            return
        self.post(run, record, contract, booked_at)

    def post(self, run: SettlementRun, record: RunRecord, contract: ContractTerms | None, booked_at: datetime) -> None:
        self.book(run.contract_id, partial(domain.post_run, run=run, booked_at=booked_at))
        self.settled.append(store.Settled(run, record, booked_at))
        customer = contract.customer if contract else None
        self.outgoing.append(Outgoing(topics.RECEIVABLES_POSTED,
                                      receivables_posted(run, self.accounts[run.contract_id], customer, booked_at,
                                                         self.billed_before)))

    async def save(self, session: AsyncSession) -> None:
        await store.forget_runs(session, self.forgotten)
        await store.save_runs(session, self.settled)
        await store.save_postings(session, self.accounts.values(), self.entries)

    def outcome(self) -> BatchOutcome:
        return BatchOutcome(self.outgoing, self.rejected)


async def _post_credits(session: AsyncSession, account: Account, record: RunRecord, credits: Sequence[domain.Credit],
                        booked_at: datetime) -> list[Outgoing]:
    run = domain.settle(record.settlement_run_id, account, record.cutoff, [], credits=credits)
    assert run is not None
    contract = (await store.find_contracts(session, [account.contract_id])).get(account.contract_id)
    postings = Postings({account.contract_id: account})
    postings.post(run, record, contract, booked_at)
    await postings.save(session)
    return postings.outgoing


def receivables_posted(run: SettlementRun, account: Account, customer: CustomerProfile | None,
                       booked_at: datetime, billed_before: Mapping[tuple, uuid.UUID] | None = None) -> ReceivablesPosted:
    """The run as invoicing needs it: its lines with their tax categories and the customer as of the run.

    Its invoiced lines are `items`; its adjustments (SettlementRun) are credits of their own, each
    one line crediting what the line's items came to less than nothing, and naming the run that
    billed its period before (`billed_before`), whose invoice it corrects."""
    billed_before = billed_before or {}
    return ReceivablesPosted(
        event_id=derive_id(run.settlement_run_id, "receivables.posted"),
        occurred_at=booked_at,
        contract_id=run.contract_id,
        settlement_run_id=run.settlement_run_id,
        customer_id=run.customer_id,
        customer=customer,
        currency=run.total.currency,
        cutoff=run.cutoff,
        items=[
            SettlementItem(
                line_id=line.line_id,
                item_count=line.item_count,
                item_code=line.item_code,
                description=line.description,
                quantity=line.quantity,
                unit_price=line.unit_price,
                net=line.net.amount,
                period_start=line.period_start,
                period_end=line.period_end,
                discount=line.discount.amount,
                tax_category=line.tax_category,
            )
            for line in run.invoiced_lines
        ],
        total=run.receivable.amount,
        credits=[
            # Quantity and unit price are those of the credited item; net is what is credited.
            *(CreditItem(
                credit_id=credit.credit_id,
                reason=credit.reason,
                billable_item_id=credit.item.billable_item_id,
                credited_settlement_run_id=credit.credited_settlement_run_id,
                item_code=credit.item.item_code,
                description=credit.description,
                quantity=credit.item.quantity,
                unit_price=credit.item.unit_price,
                net=credit.net.amount,
                period_start=credit.period_start,
                period_end=credit.period_end,
                tax_category=credit.item.tax_category,
            ) for credit in run.credits),
            *(CreditItem(
                credit_id=line.line_id,
                reason=CreditReason.ADJUSTMENT,
                credited_settlement_run_id=billed_before.get(
                    (run.contract_id, line.item_code, line.period_start, line.period_end)),
                item_code=line.item_code,
                description=f"Adjustment: {line.description}"[:500],
                quantity=Decimal(1),
                unit_price=-line.net.amount,
                net=-line.net.amount,
                period_start=line.period_start,
                period_end=line.period_end,
                tax_category=line.tax_category,
            ) for line in run.adjusted_lines),
        ],
        credit_total=(run.credit_total + run.adjustment).amount,
        ledger_balance=account.balance.amount,
    )



async def request_billing_runs(session: AsyncSession, request_id: uuid.UUID, contract_ids: Sequence[str],
                               cutoff: datetime, now: datetime, requested_by: str) -> list[Outgoing]:
    """Vouchers asked for by a person or token, onto billing-runs.requested through the outbox (the
    worker settles them as any other request)."""
    return [Outgoing(topics.BILLING_RUNS_REQUESTED, run) for run in domain.billing_run_requests(
        request_id, contract_ids, cutoff, now, requested_by)]
