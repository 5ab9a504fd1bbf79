"""The customer page in a real browser (headless Chromium from the distribution's package) against the
running pipeline and portal: open a customer, filter billable items, add usage, create vouchers, see
the new document appear and open its PDF; a contract's details with its billing schedule and ledger,
an invoice's details, a credit note for orders, a payment undone and assigned by hand, and payment
accounts added and made the default."""

from __future__ import annotations

import io
import re
import time
from typing import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import BrowserContext, Page, async_playwright, expect
from pypdf import PdfReader

from ops.operators import ensure_operator
from shared.access.domain import Role
from tests.e2e.conftest import as_role
from tests.e2e.conftest import (DEADLINE_S, given_contract, given_priced_contract, new_contract_id, publish_usage,
                                request_billing_run, two_invoices_and_a_payment, usage)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

CHROMIUM = "/usr/bin/chromium"  # Debian's package; ops/install-browser.sh installs it
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


OPERATOR, PASSWORD = "erika", "correct horse battery staple"


async def sign_in(page: Page, portal_url: str, username: str = OPERATOR, password: str = PASSWORD) -> None:
    await page.goto(f"{portal_url}/customers")
    await expect(page).to_have_url(re.compile(r"/sign-in\?next=/customers$"))  # no session yet
    await page.get_by_label("Name").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser(tmp_path_factory: pytest.TempPathFactory, portal_url: str) -> AsyncIterator[BrowserContext]:
    """Chromium with a billing administrator signed in to the portal."""
    await ensure_operator(OPERATOR, "Erika Mustermann", Role.admin, PASSWORD)
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium-profile"), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_FLAGS, viewport={"width": 1400, "height": 1000})
        # The portal's content security policy allows its own scripts and styles only: whatever the
        # pages do in these tests, Chromium must have refused nothing of theirs.
        refused: list[str] = []
        context.on("page", lambda page: page.on("console", lambda message: refused.append(message.text)
                                                if "Content Security Policy" in message.text else None))
        page = await context.new_page()
        await sign_in(page, portal_url)
        await expect(page.get_by_test_id("signed-in")).to_contain_text("erika (admin)")
        await page.close()
        yield context
        await context.close()
        assert refused == []


async def reload_until(page: Page, cell_text: str, cells: str, what: str) -> None:
    """Reload the page until one of `cells` reads `cell_text` (the pipeline works asynchronously)."""
    deadline = time.monotonic() + DEADLINE_S
    while not await page.locator(cells).get_by_text(cell_text, exact=True).count():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await page.wait_for_timeout(500)
        await page.reload()


def rows(page: Page, section: str):
    return page.locator(f"#{section} table[data-columns='{section}'] tbody tr")


async def test_a_billing_user_filters_items_creates_vouchers_and_opens_the_pdf(
        browser, portal_url, broker, databases):
    contract = new_contract_id("browser")
    customer = f"CUST-{contract}"
    await given_contract(databases, contract, {"api-calls": "0.0125", "storage-gb": "0.10"}, customer_id=customer)
    await publish_usage(broker, usage(contract, "api-calls", "12000", day=3),  # 150.00
                        usage(contract, "storage-gb", "250.5", day=20))  # 25.05

    page = await browser.new_page()
    # Open the customer from the customer list.
    await page.goto(f"{portal_url}/customers?search={customer}")
    await page.get_by_role("link", name=customer).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Customer of {contract}")
    await reload_until(page, "storage-gb", "#items td[data-col='item_code']", "both usages to be billable items")
    await expect(rows(page, "items")).to_have_count(2)

    # Filter billable items: only storage, and then a month without usage.
    items_filter = page.get_by_role("form", name="Filter billable items")
    await items_filter.get_by_label("Status").select_option("unbilled")
    await items_filter.get_by_role("button", name="Filter").click()
    await expect(rows(page, "items")).to_have_count(2)
    await page.locator("#items th[data-col='net'] a").click()  # sort by net, ascending
    await expect(rows(page, "items").first.locator("td[data-col='net']")).to_have_text("25.05 EUR")
    await items_filter.get_by_label("Month used").fill("2026-10")
    await items_filter.get_by_role("button", name="Filter").click()
    await expect(rows(page, "items")).to_have_text(["No billable items."])
    await page.get_by_role("form", name="Filter billable items").get_by_role("link", name="Clear").click()
    await expect(rows(page, "items")).to_have_count(2)

    # Configurable columns: hiding one is remembered across page loads.
    await page.locator("#items details.columns summary").click()
    await page.locator("#items details.columns").get_by_label("Description").uncheck()
    await expect(page.locator("#items th[data-col='description']")).to_be_hidden()
    await page.reload()
    await expect(page.locator("#items th[data-col='description']")).to_be_hidden()

    # Create vouchers for the contract, and see its invoice appear.
    await page.get_by_role("checkbox", name=f"Select {contract}").check()
    await page.get_by_role("button", name="Create vouchers").click()
    await expect(page.get_by_role("status")).to_contain_text(f"vouchers requested for {contract}")
    await reload_until(page, "invoice", "#documents td[data-col='type']", "the invoice of the billing run")
    document = rows(page, "documents").first
    number = await document.locator("td[data-col='number']").inner_text()
    assert re.fullmatch(r"R\d{4}-\d{4}", number)
    # 175.05 net + 19 % VAT (33.2595 -> 33.26) = 208.31
    await expect(document.locator("td[data-col='gross_total']")).to_have_text("208.31 EUR")
    await expect(rows(page, "items").locator("td[data-col='document']")).to_have_text([number, number])

    # The summary: the balance once the invoice's VAT is booked (175.05 + 33.26), when the customer was
    # created and last changed, and the customer's actions leading to their forms.
    await reload_until(page, "208.31 EUR", "[data-testid='balance-EUR']", "the invoice's VAT on the ledger")
    for fact in ("created_at", "updated_at"):
        await expect(page.locator(f"[data-fact='{fact}']")).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d UTC$"))
    actions = page.get_by_role("navigation", name="Customer actions")
    for link, target in [("Add order", "#purchase-title"), ("Create documents", "#contract-actions"),
                         ("Add payment account", "#account-title")]:
        await expect(actions.get_by_role("link", name=link)).to_have_attribute("href", target)
    await actions.get_by_role("link", name="Add payment account").click()
    await expect(page.get_by_role("form", name="Add payment account")).to_be_in_viewport()

    # Open its PDF: the stored document, with its number and total.
    pdf_link = document.get_by_role("link", name=f"Open PDF of {number}")
    response = await page.request.get(portal_url + await pdf_link.get_attribute("href"))
    assert response.ok and response.headers["content-type"] == "application/pdf"
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(await response.body())).pages)
    assert number in text and "208.31" in text
    await page.close()


async def test_usage_added_on_the_page_becomes_a_billable_item(browser, portal_url, databases):
    contract = new_contract_id("browser-usage")
    customer = f"CUST-{contract}"
    await given_contract(databases, contract, {"sms": "0.075"}, customer_id=customer)

    page = await browser.new_page()
    await page.goto(f"{portal_url}/customers/{customer}")
    usage_form = page.get_by_role("form", name="Add usage")
    await usage_form.get_by_label("Contract and item").select_option(f"{contract}/sms")
    await usage_form.get_by_label("Quantity").fill("1234")
    await usage_form.get_by_label("Day").fill("2026-11-11")
    await usage_form.get_by_role("button", name="Add usage").click()
    await expect(page.get_by_role("status")).to_contain_text(f"usage of 1234 sms recorded for {contract}")
    await reload_until(page, "sms", "#items td[data-col='item_code']", "the usage to be rated")
    await expect(rows(page, "items").first.locator("td[data-col='net']")).to_have_text("92.55 EUR")  # 1234 x 0.075
    await page.close()


async def test_a_purchase_and_a_cancellation_go_through_ratings_api(browser, portal_url, databases):
    contract = new_contract_id("browser-purchase")
    customer = f"CUST-{contract}"
    await given_contract(databases, contract, {"api-calls": "0.0125"}, customer_id=customer)

    page = await browser.new_page()
    await page.goto(f"{portal_url}/customers/{customer}")
    purchase = page.get_by_role("form", name="Add purchase item")
    await purchase.get_by_label("Contract").select_option(contract)
    await purchase.get_by_label("Item code").fill("setup")
    await purchase.get_by_label("Description").fill("Setup fee")
    await purchase.get_by_label("Quantity").fill("2")
    await purchase.get_by_label("Unit price").fill("49.90")
    await purchase.get_by_label("Purchased on").fill("2026-11-20")
    await purchase.get_by_role("button", name="Add purchase").click()
    await expect(page.get_by_role("status")).to_contain_text("purchase of 2 setup")
    await reload_until(page, "setup", "#items td[data-col='item_code']", "the purchase to be a billable item")
    await expect(rows(page, "items").first.locator("td[data-col='net']")).to_have_text("99.80 EUR")  # 2 x 49.90

    await page.get_by_role("checkbox", name=f"Select {contract}").check()
    await page.get_by_label("last day").fill("2026-12-31")
    await page.get_by_role("button", name="Cancel contracts").click()
    await expect(page.get_by_role("status")).to_contain_text(f"{contract} cancelled as of 2026-12-31")
    contract_row = rows(page, "contracts").filter(has_text=contract)
    await expect(contract_row.locator("td[data-col='status']")).to_have_text("cancelled")
    await expect(contract_row.locator("td[data-col='ends_on']")).to_have_text("2026-12-31")
    await page.close()


async def test_a_contracts_details_its_billing_schedule_ledger_and_invoice(browser, portal_url, broker, databases):
    contract = new_contract_id("browser-contract")
    customer = f"CUST-{contract}"
    await given_priced_contract(databases, contract, customer)
    await publish_usage(broker, usage(contract, "storage", "1234", day=10),  # 123.40
                        usage(contract, "api-calls", "2600", day=12))  # 100 free, 1000 x 0.02 + 1500 x 0.01 = 35.00

    page = await browser.new_page()
    await page.goto(f"{portal_url}/customers/{customer}")
    await reload_until(page, "api-calls", "#items td[data-col='item_code']", "both usages to be billable items")
    await request_billing_run(broker, contract)
    await reload_until(page, "invoice", "#documents td[data-col='type']", "the invoice of the billing run")
    number = await rows(page, "documents").first.locator("td[data-col='number']").inner_text()

    await page.get_by_role("link", name=f"Details of {contract}").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Contract {contract}")
    header = page.get_by_test_id("contract-header")
    await expect(header.locator("[data-fact='starts_on']")).to_have_text("2026-01-01")
    await expect(header.locator("[data-fact='expires_on']")).to_have_text("open end")
    await expect(header.locator("[data-fact='cycle']")).to_have_text("monthly, calendar")
    calls = page.locator("#contract-items tr[data-item='api-calls']")
    await expect(calls.locator("td[data-col='plan']")).to_have_text("graduated, 100 free")
    await expect(calls.locator("[data-band]")).to_have_text(["0 – 1000: 0.02 EUR", "1000 – ∞: 0.01 EUR"])

    # The schedule's November rows, past and billed by the invoice.
    schedule = page.get_by_role("form", name="Filter billing schedule")
    await schedule.get_by_label("Periods").select_option("past")
    await schedule.get_by_role("button", name="Filter").click()
    await page.locator("#schedule th[data-col='period_start'] a").click()  # latest first
    november = page.locator("#schedule tbody tr[data-period='2026-11-01']")
    storage, api_calls = november.filter(has_text="storage"), november.filter(has_text="api-calls")
    await expect(storage.locator("td[data-col='net']")).to_have_text("123.40 EUR")
    await expect(api_calls.locator("td[data-col='free']")).to_have_text("100")
    await expect(api_calls.locator("td[data-col='billable']")).to_have_text("2500")
    await expect(api_calls.locator("td[data-col='net']")).to_have_text("35.00 EUR")
    for row in (storage, api_calls):
        await expect(row.locator("td[data-col='billed']")).to_have_text("yes")
        await expect(row.locator("td[data-col='invoice'] a")).to_have_text(number)

    # The API calls row's billing detail: the bands after the 100 free units, and the usage event behind it.
    await api_calls.get_by_role("link", name="View billing detail").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "Billing detail: API calls (api-calls), 2026-11-01 – 2026-11-30")
    line = page.get_by_test_id("line-header")
    await expect(line.locator("[data-fact='billable']")).to_have_text("2500")
    await expect(line.locator("[data-fact='net']")).to_have_text("35.00 EUR")
    await expect(line.locator("[data-fact='invoice'] a")).to_have_text(number)
    bands = page.locator("#price-detail tbody tr")
    await expect(bands.locator("td[data-col='to_quantity']")).to_have_text(["1000", "∞"])
    await expect(bands.locator("td[data-col='quantity']")).to_have_text(["1000", "1500"])
    await expect(bands.locator("td[data-col='net']")).to_have_text(["20.00 EUR", "15.00 EUR"])  # x 0.02, x 0.01
    events = page.locator("#usage tbody tr")
    await expect(events.locator("td[data-col='quantity']")).to_have_text(["2600"])
    await expect(events.locator("td[data-col='occurred_at']")).to_have_text(["2026-11-12T09:30:00+00:00"])
    await expect(page.get_by_role("link", name=f"Contract {contract}")).to_be_visible()
    await page.go_back()
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Contract {contract}")

    # The contract's ledger: receivables, then the invoice's VAT (158.40 x 19 % = 30.096 -> 30.10).
    ledger = page.locator("#ledger table[data-columns='ledger'] tbody tr")
    await expect(ledger.locator("td[data-col='balance']")).to_have_text(["158.40 EUR", "188.50 EUR"])
    await expect(page.get_by_test_id("contract-balance")).to_have_text("188.50 EUR")

    # The invoice from its schedule row: lines, VAT and totals, and its open item.
    await storage.locator("td[data-col='invoice'] a").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Invoice {number}")
    await expect(page.get_by_test_id("document-header").locator("[data-fact='service_period']")).to_have_text(
        "2026-11-01 – 2026-11-30")
    await expect(page.locator("#lines tbody td[data-col='net']")).to_have_text(["35.00 EUR", "123.40 EUR"])
    await expect(page.get_by_test_id("tax-total")).to_have_text("30.10 EUR")
    await expect(page.get_by_test_id("gross-total")).to_have_text("188.50 EUR")
    await expect(page.get_by_test_id("open-amount")).to_have_text("188.50 EUR")
    await page.close()


async def test_a_credit_note_for_selected_orders(browser, portal_url, broker, databases):
    contract = new_contract_id("browser-orders")
    customer = f"CUST-{contract}"
    await given_contract(databases, contract, {"api-calls": "0.0125"}, customer_id=customer)
    async with httpx.AsyncClient(base_url=portal_url, headers=as_role()) as client:
        for code, quantity, price, day in [("setup", "2", "49.90", "2026-11-20"), ("cable", "3", "5", "2026-11-20"),
                                           ("router", "1", "120", "2026-11-24")]:
            answer = await client.post(f"/api/customers/{customer}/contracts/{contract}/purchases", json={
                "item_code": code, "description": code.title(), "quantity": quantity, "unit_price": price,
                "purchased_on": day})
            assert answer.status_code == 201, answer.text
    page = await browser.new_page()
    await page.goto(f"{portal_url}/customers/{customer}")
    await reload_until(page, "router", "#items td[data-col='item_code']", "the purchases to be billable items")
    await request_billing_run(broker, contract)
    await reload_until(page, "invoice", "#documents td[data-col='type']", "the invoice of the billing run")
    orders = rows(page, "orders")
    await expect(orders.locator("td[data-col='net']")).to_have_text(["120.00 EUR", "114.80 EUR"])  # latest first
    await expect(orders.locator("td[data-col='status']")).to_have_text(["billed", "billed"])

    # Cancel the order of the 20th (2 x 49.90 + 3 x 5.00): a credit note of 114.80 + 19 % VAT (21.81) = 136.61.
    await page.get_by_role("checkbox", name=f"Select order {contract}@2026-11-20").check()
    await page.get_by_role("button", name="Create a credit note").click()
    await expect(page.get_by_role("status")).to_contain_text("credit note requested")
    await expect(page.get_by_role("status")).to_contain_text("114.80 EUR")
    await reload_until(page, "credit note", "#documents td[data-col='type']", "the credit note")
    await page.reload()  # the orders section is read before the documents: again, now the credit note exists
    credit_note = rows(page, "documents").filter(has_text="credit note")
    await expect(credit_note.locator("td[data-col='gross_total']")).to_have_text("136.61 EUR")
    cancelled = orders.filter(has_text="2026-11-20")
    await expect(cancelled.locator("td[data-col='status']")).to_have_text("cancelled")
    await expect(cancelled.locator("td[data-col='documents'] a")).to_have_count(2)
    await expect(orders.filter(has_text="2026-11-24").locator("td[data-col='status']")).to_have_text("billed")
    await page.close()


async def test_a_payment_undone_and_assigned_by_hand_on_the_page(browser, portal_url, broker, databases):
    async with httpx.AsyncClient(base_url=portal_url, timeout=10, headers=as_role()) as client:
        base, contract = await two_invoices_and_a_payment(broker, databases, client, "browser-opos")
        first, second = (await client.get(f"{base}/open-items", params={"sort": "-amount"})).json()["items"]
    customer = base.rsplit("/", 1)[1]
    page = await browser.new_page()
    await page.goto(f"{portal_url}/customers/{customer}")

    def open_amount(item: dict):
        return rows(page, "opos").filter(has_text=item["reference"]).locator("td[data-col='open_amount']")

    await expect(open_amount(first)).to_have_text("39.00 EUR")  # 119.00 - 80.00
    await expect(open_amount(second)).to_have_text("59.50 EUR")

    # Undo the payment's 80.00 on the first invoice: it is open in full, the 80.00 is credit.
    await rows(page, "opos").get_by_role("button", name=f"Undo {contract}-P1 on {first['reference']}").click()
    await expect(page.get_by_role("status")).to_have_text(
        f"80.00 EUR of payment {contract}-P1 taken back from {first['reference']}")
    await expect(open_amount(first)).to_have_text("119.00 EUR")
    credit = page.locator("table[data-columns='credits'] tbody tr")
    await expect(credit.locator("td[data-col='unassigned_amount']")).to_have_text("80.00 EUR")

    # Assign it by hand: 59.50 to the second invoice (all it asks), then the rest, 20.50, to the first.
    assign = page.get_by_role("form", name=f"Assign {contract}-P1")
    await assign.get_by_label("Open item").select_option(second["document_id"])
    await assign.get_by_role("button", name="Assign").click()
    await expect(page.get_by_role("status")).to_have_text(
        f"59.50 EUR of payment {contract}-P1 assigned to {second['reference']}")
    await expect(open_amount(second)).to_have_text("0.00 EUR")
    await expect(credit.locator("td[data-col='unassigned_amount']")).to_have_text("20.50 EUR")
    assign = page.get_by_role("form", name=f"Assign {contract}-P1")
    await expect(assign.get_by_label("Open item").locator("option")).to_have_count(1)  # only the first is open
    await assign.get_by_role("button", name="Assign").click()
    await expect(open_amount(first)).to_have_text("98.50 EUR")
    await expect(credit).to_have_text(["No unassigned payments."])
    # Open items minus credit equal the ledger: 119.00 + 59.50 - 80.00.
    await expect(page.get_by_test_id("balance-EUR")).to_have_text("98.50 EUR")
    await page.close()


async def test_payment_accounts_added_on_the_page_and_one_made_the_default(browser, portal_url, databases):
    contract = new_contract_id("browser-accounts")
    customer = f"CUST-{contract}"
    await given_contract(databases, contract, {"sms": "0.10"}, customer_id=customer)
    # Mandate references and card tokens are unique across customers: this test's own.
    mandate, token = f"M-{contract[-10:]}", f"pm_{contract[-10:]}_1234"
    page = await browser.new_page()
    await page.goto(f"{portal_url}/customers/{customer}")
    form = page.get_by_role("form", name="Add payment account")
    await form.get_by_label("Method").select_option("sepa_direct_debit")
    await form.get_by_label("Holder").fill("Ada Example")
    await form.get_by_label("IBAN").fill("DE89 3704 0044 0532 0130 00")
    await form.get_by_label("Mandate reference").fill(mandate)
    await form.get_by_label("Mandate signed on").fill("2026-11-02")
    await form.get_by_role("button", name="Add account").click()
    await expect(page.get_by_role("status")).to_have_text(
        f"SEPA direct debit DE89 …3000, mandate {mandate} (active) added as the default")

    form = page.get_by_role("form", name="Add payment account")
    await form.get_by_label("Method").select_option("card")
    await form.get_by_label("Provider", exact=True).fill("stripe")
    await form.get_by_label("Provider token").fill(token)
    await form.get_by_role("button", name="Add account").click()
    await expect(page.get_by_role("status")).to_have_text("card via stripe, token …1234 added")
    accounts = rows(page, "accounts")
    await expect(accounts.locator("td[data-col='iban']")).to_have_text(["DE89 **** 3000", "—"])
    await expect(accounts.locator("td[data-col='default']")).to_have_text(["yes", re.compile(r"^no")])

    await accounts.nth(1).get_by_role("button", name="Make default").click()
    await expect(page.get_by_role("status")).to_contain_text("is now the default")
    await expect(accounts.locator("td[data-col='default']")).to_have_text([re.compile(r"^no"), "yes"])

    # A card number is never stored: refused with the reason, nothing added.
    form = page.get_by_role("form", name="Add payment account")
    await form.get_by_label("Method").select_option("card")
    await form.get_by_label("Provider", exact=True).fill("stripe")
    await form.get_by_label("Provider token").fill("4242 4242 4242 4242")
    await form.get_by_role("button", name="Add account").click()
    await expect(page.get_by_role("alert")).to_contain_text("looks like a card number")
    await expect(accounts).to_have_count(2)
    await page.close()


async def test_an_estimate_entered_on_the_contract_page_recalculates_the_schedule(browser, portal_url, databases):
    contract = new_contract_id("browser-estimate")
    customer = f"CUST-{contract}"
    await given_priced_contract(databases, contract, customer)
    page = await browser.new_page()
    await page.goto(f"{portal_url}/customers/{customer}/contracts/{contract}")
    schedule = page.get_by_role("form", name="Filter billing schedule")
    await schedule.get_by_label("Periods").select_option("current")
    await schedule.get_by_role("button", name="Filter").click()
    current = page.locator("#schedule tbody tr")
    await expect(current.locator("td[data-col='estimated_net']")).to_have_text(["—", "—"])

    estimate = page.get_by_role("form", name="Estimate consumption")
    await estimate.get_by_label("Estimate for").select_option("api-calls")
    await estimate.get_by_label("Quantity per period").fill("2600")
    await estimate.get_by_role("button", name="Apply estimate").click()
    calls, storage = current.filter(has_text="api-calls"), current.filter(has_text="storage")
    # 100 free, then 1000 x 0.02 + 1500 x 0.01 = 35.00: a forecast, the period's own net stays 0.00
    await expect(calls.locator("td[data-col='estimated_quantity']")).to_have_text("2600")
    await expect(calls.locator("td[data-col='estimated_net']")).to_have_text("35.00 EUR (est.)")
    await expect(calls.locator("td[data-col='net']")).to_have_text("0.00 EUR")
    await expect(storage.locator("td[data-col='estimated_net']")).to_have_text("—")

    # Another quantity recalculates the rows; the filters stay as they were.
    estimate = page.get_by_role("form", name="Estimate consumption")
    await estimate.get_by_label("Quantity per period").fill("600")
    await estimate.get_by_role("button", name="Apply estimate").click()
    await expect(calls.locator("td[data-col='estimated_net']")).to_have_text("10.00 EUR (est.)")  # 500 x 0.02
    await expect(current).to_have_count(2)
    await page.get_by_role("link", name="Remove estimate").click()
    await expect(current.locator("td[data-col='estimated_net']")).to_have_text(["—", "—"])
    await page.close()


async def test_one_periods_estimate_edited_on_the_contract_page(browser, portal_url, databases):
    contract = new_contract_id("browser-estimate-edit")
    customer = f"CUST-{contract}"
    await given_priced_contract(databases, contract, customer)
    page = await browser.new_page()
    await page.goto(f"{portal_url}/customers/{customer}/contracts/{contract}")
    schedule = page.get_by_role("form", name="Filter billing schedule")
    await schedule.get_by_label("Item").select_option("api-calls")
    await schedule.get_by_label("Periods").select_option("future")
    await schedule.get_by_role("button", name="Filter").click()
    estimate = page.get_by_role("form", name="Estimate consumption")
    await estimate.get_by_label("Estimate for").select_option("api-calls")
    await estimate.get_by_label("Quantity per period").fill("600")
    await estimate.get_by_role("button", name="Apply estimate").click()
    future = page.locator("#schedule tbody tr")
    await expect(future.locator("td[data-col='estimated_net']")).to_have_text(["10.00 EUR (est.)"] * 12)  # 500 x 0.02

    # Edit the second future period: the first is then treated as actual, the later ones keep 600.
    second = future.nth(1)
    await second.get_by_label("Estimated quantity").fill("2600")
    await second.get_by_role("button", name="Edit").click()
    await expect(future.locator("td[data-col='estimated_net']")).to_have_text(
        ["—", "35.00 EUR (est.)"] + ["10.00 EUR (est.)"] * 10)  # 1000 x 0.02 + 1500 x 0.01 after 100 free
    await expect(future.nth(1).locator("td[data-col='estimated_quantity']")).to_contain_text("(edited)")
    await expect(future.nth(1).get_by_label("Estimated quantity")).to_have_value("2600")
    await expect(future.locator("td[data-col='net']")).to_have_text(["0.00 EUR"] * 12)  # a forecast, never billed
    await page.get_by_role("link", name="Remove estimate").click()
    await expect(future.locator("td[data-col='estimated_net']")).to_have_text(["—"] * 12)
    await page.close()


async def test_an_operator_signs_out_and_in_again_and_a_wrong_password_is_refused(portal_url, browser):
    await ensure_operator("max", "Max Mustermann", Role.viewer, "another long password")
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        page = await (await chromium.new_context()).new_page()
        await sign_in(page, portal_url, "max", "not his password at all")
        await expect(page.get_by_role("alert")).to_have_text("wrong name or password")
        await page.get_by_label("Name").fill("max")
        await page.get_by_label("Password").fill("another long password")
        await page.get_by_role("button", name="Sign in").click()
        await expect(page).to_have_url(re.compile(r"/customers$"))
        await expect(page.get_by_test_id("signed-in")).to_contain_text("max (viewer)")
        await expect(page.get_by_role("link", name="Audit trail")).to_have_count(0)  # administrators only

        await page.get_by_role("button", name="Sign out").click()
        await expect(page).to_have_url(re.compile(r"/sign-in$"))
        await page.goto(f"{portal_url}/customers")  # the session ended on the server, not just in the browser
        await expect(page).to_have_url(re.compile(r"/sign-in\?next=/customers$"))
        await chromium.close()
