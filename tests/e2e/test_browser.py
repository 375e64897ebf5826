"""The pages in a real browser: Debian's Chromium driven by Playwright."""
from __future__ import annotations

import os

import pytest

from tests.infra import IN_CI
from tests.support import unique_email

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        if IN_CI:
            pytest.fail("Chromium is required in CI (.ci/run installs Debian's chromium)")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    yield page
    context.close()


def test_a_purchaser_reserves_through_the_page_and_watches_the_offer_change_live(cobuy, page, output_dir):
    holder = cobuy.register_seller(name="Browser Bikes")
    rival = cobuy.register_seller(name="Rival Cycles")
    title = f"City bike {holder['id'][:5]} <i>fast</i>"
    offer = cobuy.create_offer(holder, title=title, unit_price=39900, minimum_reservations=3,
                               description="<script>document.title='pwned'</script>")
    page.goto(cobuy.base_url + "/")
    card = page.locator(f'article[data-offer-id="{offer["id"]}"]')
    card.wait_for()
    assert card.locator("h3").inner_text() == title  # rendered as text, not markup
    assert "$399.00" in card.inner_text() and "Browser Bikes" in card.inner_text()
    cobuy.reserve(offer["id"])  # the home page's counter follows too
    card.locator(".count", has_text="1").wait_for(timeout=4000)
    page.screenshot(path=str(output_dir / "home.png"), full_page=True)

    card.locator("a").click()
    page.wait_for_url(f"**/offers/{offer['id']}")
    assert page.title() != "pwned"
    page.fill("#name", "Robin Rider")
    page.fill("#email", unique_email("robin"))
    page.click("button[type=submit]")
    page.wait_for_selector("text=You have reserved")
    cancel_link = page.locator("a", has_text="Cancel this reservation").get_attribute("href")
    assert cancel_link.startswith("/reservations/")

    page.goto(cobuy.base_url + f"/offers/{offer['id']}")
    page.wait_for_function("document.getElementById('count').textContent === '2'", timeout=5000)
    cobuy.reserve(offer["id"])  # someone else, through the API: the open page follows without a reload
    page.wait_for_function("document.getElementById('count').textContent === '3'", timeout=3000)
    assert cobuy.counter(rival, offer["id"], 35000, 3).status_code == 201
    page.wait_for_function("document.getElementById('holder').textContent === 'Rival Cycles'", timeout=3000)
    assert page.locator("#price").inner_text() == "$350.00"
    page.screenshot(path=str(output_dir / "offer.png"), full_page=True)

    page.goto(cobuy.base_url + cancel_link)
    page.click("button[type=submit]")
    page.wait_for_selector("text=Your reservation is cancelled")
    cobuy.wait_offer(offer["id"], lambda o: o["reservation_count"] == 2, timeout=3)


def test_the_form_works_without_javascript_and_refuses_a_missing_csrf_token(cobuy, browser, output_dir):
    offer = cobuy.create_offer(cobuy.register_seller())
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(cobuy.base_url + f"/offers/{offer['id']}")
        page.fill("#name", "No Script")
        page.fill("#email", "a@b")  # passes the browser's own check, not ours
        page.click("button[type=submit]")
        assert "valid e-mail" in page.content()  # the error is shown next to the form
        page.fill("#email", unique_email("noscript"))
        page.click("button[type=submit]")
        page.wait_for_selector("text=You have reserved")
    finally:
        context.close()
    forged = cobuy.post(f"/offers/{offer['id']}/reserve", data={"name": "X", "email": unique_email()})
    assert forged.status_code == 400 and "expired" in forged.text
    cobuy.wait_offer(offer["id"], lambda o: o["reservation_count"] == 1, timeout=3)
