"""The pages in a real browser: Debian's Chromium driven by Playwright, axe-core for accessibility."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.infra import IN_CI
from tests.support import instant, unique_email

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
AXE = Path(__file__).parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"  # `make install-dev`
LIVE = 5000  # ms: a pushed change shows in well under a second; the margin is for a loaded CI machine
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1100, "height": 900}


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
    context = browser.new_context(viewport=DESKTOP, timezone_id="Asia/Tokyo")
    page = context.new_page()
    yield page
    context.close()


def offer_api_polls(page) -> list[str]:
    """Records every request for an offer's JSON other than a stream: the pages must not poll."""
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url) if "/api/v1/offers" in r.url and "/stream" not in r.url else None)
    return seen


def test_a_purchaser_reserves_through_the_page_and_watches_the_offer_change_live(cobuy, page, output_dir):
    holder = cobuy.register_seller(name="Browser Bikes")
    rival = cobuy.register_seller(name="Rival Cycles")
    title = f"City bike {holder['id'][:5]} <i>fast</i>"
    offer = cobuy.create_offer(holder, title=title, unit_price=39900, minimum_reservations=3,
                               description="<script>document.title='pwned'</script>")
    polls = offer_api_polls(page)
    page.goto(cobuy.base_url + "/")
    card = page.locator(f'article[data-offer-id="{offer["id"]}"]')
    card.wait_for()
    assert card.locator("h3").inner_text() == title  # rendered as text, not markup
    assert "$399.00" in card.inner_text() and "Browser Bikes" in card.inner_text()
    assert "JST" in card.inner_text() or "GMT+9" in card.inner_text()  # the viewer's zone, named
    cobuy.reserve(offer["id"])  # the home page's counter follows too
    card.locator(".count", has_text="1").wait_for(timeout=LIVE)

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
    page.wait_for_function("document.querySelector('#tally .count').textContent === '2'", timeout=LIVE)
    cobuy.reserve(offer["id"])  # someone else, through the API: the open page follows without a reload
    page.locator("#tally", has_text="minimum of 3 reached").wait_for(timeout=LIVE)
    assert page.get_attribute("#tally", "aria-live") == "polite"
    assert cobuy.counter(rival, offer["id"], 35000, 3).status_code == 201
    page.wait_for_function("document.getElementById('holder').textContent === 'Rival Cycles'", timeout=LIVE)
    assert page.locator("#price").inner_text() == "$350.00"
    page.screenshot(path=str(output_dir / "offer-live.png"), full_page=True)

    page.goto(cobuy.base_url + cancel_link)
    page.click("button[type=submit]")
    page.wait_for_selector("text=Your reservation is cancelled")
    assert page.locator("a", has_text=title).first.get_attribute("href") == f"/offers/{offer['id']}"
    cobuy.wait_offer(offer["id"], lambda o: o["reservation_count"] == 2, timeout=3)
    assert polls == []


def test_an_open_offer_page_sees_the_count_a_counter_offer_and_the_close_without_a_reload(cobuy, page, output_dir):
    holder, rival = cobuy.register_seller(name="Live Holder"), cobuy.register_seller(name="Live Rival")
    offer = cobuy.create_offer(holder, unit_price=10000, minimum_reservations=1, closes_at=instant(8))
    polls = offer_api_polls(page)
    page.goto(cobuy.base_url + f"/offers/{offer['id']}")
    page.wait_for_selector("#reserve-open:not([hidden])")
    left = page.locator("#countdown .left").inner_text()
    page.wait_for_function(f"document.querySelector('#countdown .left').textContent !== {left!r}", timeout=LIVE)

    cobuy.reserve(offer["id"])
    page.locator("#tally", has_text="minimum of 1 reached").wait_for(timeout=LIVE)
    assert cobuy.counter(rival, offer["id"], 9000, 1).status_code == 201
    page.wait_for_function("document.getElementById('holder').textContent === 'Live Rival'", timeout=LIVE)
    assert page.locator("#price").inner_text() == "$90.00"
    page.wait_for_function("document.querySelectorAll('#history tr').length === 2", timeout=LIVE)
    assert page.locator("#chart circle").count() == 2
    assert "$90.00" in page.locator("#history").inner_text()

    page.wait_for_function("document.getElementById('status').textContent === 'concluded'", timeout=20000)
    assert "concluded" in page.get_attribute("#status", "class")
    assert page.locator("#outcome").is_visible() and "Live Rival sells at $90.00" in page.inner_text("#outcome")
    assert not page.locator("form.reserve").is_visible() and page.locator("#reserve-closed").is_visible()
    assert not page.locator("#countdown").is_visible()
    page.screenshot(path=str(output_dir / "offer-closed-live.png"), full_page=True)
    assert polls == []


def test_the_home_page_gains_a_new_offer_and_moves_a_closed_one_to_recently_closed(cobuy, page, output_dir):
    seller = cobuy.register_seller(name="Home Seller")
    closing = cobuy.create_offer(seller, title=f"Closing {seller['id'][:6]}", closes_at=instant(6))
    page.goto(cobuy.base_url + "/")
    page.locator(f'#open-offers article[data-offer-id="{closing["id"]}"]').wait_for()
    fresh = cobuy.create_offer(seller, title=f"Fresh <b>{seller['id'][:6]}</b>")
    card = page.locator(f'#open-offers article[data-offer-id="{fresh["id"]}"]')
    card.wait_for(timeout=LIVE)
    assert card.locator("h3").inner_text() == fresh["title"] and "$100.00" in card.inner_text()
    page.locator(f'#closed-offers tr[data-offer-id="{closing["id"]}"]').wait_for(timeout=20000)
    assert page.locator(f'#open-offers article[data-offer-id="{closing["id"]}"]').count() == 0
    assert "failed" in page.locator(f'#closed-offers tr[data-offer-id="{closing["id"]}"]').inner_text()
    page.screenshot(path=str(output_dir / "home-live.png"), full_page=True)


def test_a_late_reservation_is_refused_in_plain_words_next_to_the_form(cobuy, browser, output_dir):
    offer = cobuy.create_offer(cobuy.register_seller(), closes_at=instant(3))
    context = browser.new_context(java_script_enabled=False, viewport=PHONE)  # the page cannot know it closed
    page = context.new_page()
    try:
        page.goto(cobuy.base_url + f"/offers/{offer['id']}")
        page.fill("#name", "Late Larry")
        page.fill("#email", unique_email("late"))
        cobuy.wait_offer(offer["id"], lambda o: o["status"] == "closed", timeout=20)
        page.click("button[type=submit]")
        refusal = page.locator("#reserve .error")
        assert "This offer closed on" in refusal.inner_text() and "no more reservations" in refusal.inner_text()
        assert page.get_attribute("#reserve .error", "role") == "alert"
        page.screenshot(path=str(output_dir / "late-refusal.png"), full_page=True)
    finally:
        context.close()


def test_the_form_works_without_javascript_and_refuses_a_missing_csrf_token(cobuy, browser, output_dir):
    offer = cobuy.create_offer(cobuy.register_seller())
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(cobuy.base_url + f"/offers/{offer['id']}")
        page.fill("#name", "No Script")
        page.fill("#email", "a@b")  # passes the browser's own check, not ours
        page.click("button[type=submit]")
        assert "Please give a valid e-mail address" in page.inner_text("#email-error")  # plain words, by the field
        assert page.get_attribute("#email", "aria-invalid") == "true"
        assert page.get_attribute("#email", "aria-describedby") == "email-error"
        assert page.get_attribute("#name", "aria-invalid") is None
        page.screenshot(path=str(output_dir / "form-error.png"), full_page=True)
        page.fill("#email", unique_email("noscript"))
        page.click("button[type=submit]")
        page.wait_for_selector("text=You have reserved")
    finally:
        context.close()
    forged = cobuy.post(f"/offers/{offer['id']}/reserve", data={"name": "X", "email": unique_email()})
    assert forged.status_code == 400 and "expired" in forged.text
    cobuy.wait_offer(offer["id"], lambda o: o["reservation_count"] == 1, timeout=3)


def serious_violations(page) -> list[str]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
            for v in result["violations"] if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_axe_finds_nothing_serious_on_the_home_offer_reserved_and_cancel_pages(cobuy, browser, viewport, output_dir):
    if not AXE.exists():
        if IN_CI:
            pytest.fail(f"{AXE} is missing: `make install-dev` installs it")
        pytest.skip("axe-core is not installed (make install-dev)")
    holder = cobuy.register_seller(name="Axe Audio")
    offer = cobuy.create_offer(holder, title="Headphones", unit_price=12900, minimum_reservations=2)
    cobuy.counter(cobuy.register_seller(name="Axe Rival"), offer["id"], 11900, 2)
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    found = {}
    try:
        tag = "desktop" if viewport is DESKTOP else "phone"
        page.goto(cobuy.base_url + "/")
        found["/"] = serious_violations(page)
        page.goto(cobuy.base_url + f"/offers/{offer['id']}")
        page.click("button[type=submit]")  # empty: the form's errors are checked too
        found["offer with errors"] = serious_violations(page)
        page.fill("#name", "Ada Axe")
        page.fill("#email", unique_email("axe"))
        page.click("button[type=submit]")
        page.wait_for_selector("text=You have reserved")
        found["reserved"] = serious_violations(page)
        page.screenshot(path=str(output_dir / f"reserved-{tag}.png"), full_page=True)
        page.click("text=Cancel this reservation")
        found["cancel"] = serious_violations(page)
        page.screenshot(path=str(output_dir / f"cancel-{tag}.png"), full_page=True)
        page.goto(cobuy.base_url + f"/offers/{offer['id']}")
        page.wait_for_selector("#chart svg")
        found["offer"] = serious_violations(page)
        smallest_label = page.evaluate("""Math.min(...[...document.querySelectorAll('#chart text')].map(t =>
            parseFloat(getComputedStyle(t).fontSize) * t.ownerSVGElement.getBoundingClientRect().width
            / t.ownerSVGElement.viewBox.baseVal.width))""")
        assert smallest_label >= 12, f"chart labels drawn at {smallest_label:.1f} px"
        page.screenshot(path=str(output_dir / f"offer-{tag}.png"), full_page=True)
    finally:
        context.close()
    assert {where: v for where, v in found.items() if v} == {}


def test_a_verified_offer_asks_to_check_the_mail_and_its_link_confirms_without_javascript(cobuy, browser, mailbox,
                                                                                          output_dir):
    """SPEC §10 in the browser: scripts off for the purchaser; axe on the two new pages, scripts on."""
    offer = cobuy.create_offer(cobuy.register_seller(), title="Verified lamp", minimum_reservations=2,
                               verify_emails=True)
    buyer = unique_email("verify-browser")
    context = browser.new_context(viewport=PHONE, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(cobuy.base_url + f"/offers/{offer['id']}")
        assert "0 of 2 confirmed reservations needed" in page.inner_text("#tally")
        page.fill("#name", "Vera Verify")
        page.fill("#email", buyer)
        page.click("button[type=submit]")
        page.wait_for_selector("text=Check your e-mail to confirm")
        [mail] = mailbox.wait(1, to=buyer, subject="Reserved: Verified lamp", timeout=60)
        link = next(word for word in mail.text.split() if "/verify?token=" in word)
        page.goto(link)
        page.click("text=Confirm my reservation")
        page.wait_for_selector("text=is confirmed and counts now")
        page.screenshot(path=str(output_dir / "verified.png"), full_page=True)
    finally:
        context.close()
    cobuy.wait_offer(offer["id"], lambda o: o["reservation_count"] == 1, what="the confirmed reservation counted")
    if not AXE.exists():
        return
    context = browser.new_context(viewport=DESKTOP)
    try:
        page = context.new_page()
        page.goto(link)
        found = {"verify": serious_violations(page)}
        page.click("text=Confirm my reservation")  # used already: the refusal, in words
        page.wait_for_selector("text=confirmed already")
        found["verify refused"] = serious_violations(page)
    finally:
        context.close()
    assert {where: v for where, v in found.items() if v} == {}
