"""A seller's whole journey on the web (SPEC §9) in Debian's Chromium: register, sign in from the
mailed link, publish, watch a reservation arrive, be intercepted, win back from the mail's link,
download the purchasers, sign out; and a used or expired link refused with a clear page."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import update

from tests.e2e.test_browser import AXE, DESKTOP, LIVE, PHONE, browser, serious_violations  # noqa: F401 (fixture)
from tests.infra import IN_CI
from tests.support import unique_email

LINK = re.compile(r"https?://\S+/sellers/sign-in/link\?token=[A-Za-z0-9_-]+")
COUNTER_LINK = re.compile(r"https?://\S+/dashboard/offers/[0-9a-f-]+/counter-offer\?\S+")


MAIL_WAIT = 60  # s: the mailer yields the CPU to the web processes (COBUY_MAIL_NICE); CI machines are shared


def mailed_link(mailbox, email: str, pattern=LINK, count: int = 1, **criteria) -> str:
    """The link in the `count`-th mail that matches (the latest of them)."""
    mails = mailbox.wait(count, to=email, timeout=MAIL_WAIT, **criteria)
    return pattern.findall(mails[-1].text)[-1]


def local(url: str, base_url: str) -> str:
    """A mailed link (COBUY_PUBLIC_URL) on the system under test."""
    return f"{base_url}/{url.split('/', 3)[3]}"


def sign_in_by_mail(page, mailbox, base_url: str, email: str, count: int) -> None:
    page.fill("#email", email)
    page.click("text=Send me a sign-in link")
    page.wait_for_selector("text=Check your e-mail")
    page.goto(local(mailed_link(mailbox, email, subject="sign-in link", count=count), base_url))
    page.click("button:has-text('Sign in')")


def expire_links(system, email: str) -> None:
    """Moves every link of this seller 16 minutes into the past (the system's clock cannot be moved)."""
    from services.catalog.tables import sellers, sign_in_links

    runtime = system.runtime("catalog")
    try:
        with runtime.sessions.begin() as session:
            seller_id = session.execute(sellers.select().where(sellers.c.email == email)).one().id
            session.execute(update(sign_in_links).where(sign_in_links.c.seller_id == seller_id).values(
                expires_at=datetime.now(timezone.utc) - timedelta(minutes=1)))
    finally:
        runtime.engine.dispose()


def test_a_seller_registers_publishes_sees_a_reservation_live_wins_back_from_the_mail_and_signs_out(
        cobuy, system, mailbox, browser, output_dir):
    email = unique_email("web-seller")
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    page = context.new_page()
    try:
        page.goto(cobuy.base_url + "/sellers/register")
        page.fill("#name", "Web Wares <b>")
        page.fill("#email", email)
        page.click("button[type=submit]")
        assert page.inner_text("#api-key").startswith("cb_")
        page.screenshot(path=str(output_dir / "seller-registered.png"), full_page=True)

        first_link = local(mailed_link(mailbox, email, subject="sign-in link"), cobuy.base_url)
        page.goto(first_link)
        page.click("button:has-text('Sign in')")
        page.wait_for_url("**/dashboard")
        assert "Web Wares <b>'s offers" in page.inner_text("h1")  # text, not markup

        page.click("text=Publish an offer")
        page.fill("#title", "Web kettle")
        page.fill("#unit_price", "49.00")
        page.fill("#minimum_reservations", "2")
        page.fill("#closes_at", "2020-01-01T00:00:00")
        page.click("button[value=publish]")
        assert "Give a closing time in the future" in page.inner_text("#closes_at-error")  # the API's rule, in words
        closes = (datetime.now(timezone.utc) + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S")
        page.fill("#closes_at", closes)
        page.click("button[value=preview]")
        assert "$49.00" in page.inner_text("#preview") and "0 of 2 reservations needed" in page.inner_text("#preview")
        page.screenshot(path=str(output_dir / "seller-publish-preview.png"), full_page=True)
        page.click("button[value=publish]")
        page.wait_for_selector("text=Your offer is published")
        offer_id = page.locator("a", has_text="See it as purchasers do").get_attribute("href").rsplit("/", 1)[1]
        assert cobuy.offer(offer_id)["condition"]["seller_name"] == "Web Wares <b>"

        page.goto(cobuy.base_url + "/dashboard")
        card = page.locator(f'#held [data-offer-id="{offer_id}"]')
        card.wait_for()
        purchaser = unique_email("buyer")
        assert cobuy.reserve(offer_id, email=purchaser, name="=HYPERLINK(\"x\")").status_code == 201
        card.locator(".count", has_text="1").wait_for(timeout=LIVE)  # pushed: no reload
        page.screenshot(path=str(output_dir / "seller-dashboard-live.png"), full_page=True)

        rival = cobuy.register_seller(name="Rival Retail")
        assert cobuy.counter(rival, offer_id, 4800, 2).status_code == 201
        card.locator(".holder", has_text="Rival Retail").wait_for(timeout=LIVE)
        counter_link = local(mailed_link(mailbox, email, COUNTER_LINK, subject="Intercepted"), cobuy.base_url)

        # The mail opened on another device: sign-in first, then straight to the prefilled form.
        phone = browser.new_context(viewport=PHONE)
        try:
            other = phone.new_page()
            other.goto(counter_link)
            other.wait_for_url("**/sellers/sign-in?next=*")
            sign_in_by_mail(other, mailbox, cobuy.base_url, email, count=2)
            other.wait_for_url(f"**/dashboard/offers/{offer_id}/counter-offer?*")
            assert other.input_value("#unit_price") == "47.99" and other.input_value("#minimum_reservations") == "2"
            assert "$47.99 or less" in other.inner_text("#to-win")
            other.fill("#unit_price", "48.00")
            other.click("button:has-text('Counter-offer')")
            assert "Offer $47.99 or less to win" in other.inner_text(".error[role=alert]")  # 409 not_better, in words
            other.screenshot(path=str(output_dir / "seller-counter-offer-refused-phone.png"), full_page=True)
            other.fill("#unit_price", "47.99")
            other.click("button:has-text('Counter-offer')")
            assert "You now hold this offer at $47.99" in other.inner_text("#won")
        finally:
            phone.close()
        cobuy.wait_offer(offer_id, lambda o: o["condition"]["unit_price"] == 4799)
        card.locator(".holder", has_text="Web Wares").wait_for(timeout=LIVE)

        page.goto(cobuy.base_url + f"/dashboard/offers/{offer_id}")
        assert purchaser in page.inner_text("#purchasers")
        with page.expect_download() as download:
            page.click("text=Download CSV")
        csv_text = open(download.value.path(), encoding="utf-8").read()
        assert purchaser in csv_text and "'=HYPERLINK" in csv_text  # a formula stays text
        page.screenshot(path=str(output_dir / "seller-purchasers.png"), full_page=True)

        page.click("button:has-text('Sign out')")
        page.wait_for_selector("text=You are signed out")
        page.goto(cobuy.base_url + "/dashboard")
        page.wait_for_url("**/sellers/sign-in?next=*")

        page.goto(first_link)
        assert page.inner_text("h1") == "This sign-in link has been used"
        page.screenshot(path=str(output_dir / "seller-link-used.png"), full_page=True)
        page.goto(cobuy.base_url + "/sellers/sign-in")
        page.fill("#email", email)
        page.click("text=Send me a sign-in link")
        page.wait_for_selector("text=Check your e-mail")
        late_link = local(mailed_link(mailbox, email, subject="sign-in link", count=3), cobuy.base_url)
        expire_links(system, email)
        page.goto(late_link)
        assert page.inner_text("h1") == "This sign-in link has expired"
        assert page.locator("#email").is_visible()  # and the way to a new one is right there
        page.screenshot(path=str(output_dir / "seller-link-expired.png"), full_page=True)
    finally:
        context.close()


def test_axe_finds_nothing_serious_on_the_seller_pages(cobuy, mailbox, browser, output_dir):
    if not AXE.exists():
        if IN_CI:
            pytest.fail(f"{AXE} is missing: `make install-dev` installs it")
        pytest.skip("axe-core is not installed (make install-dev)")
    email = unique_email("axe-seller")
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    found = {}
    try:
        page.goto(cobuy.base_url + "/sellers/register")
        page.click("button[type=submit]")  # empty: the errors are checked too
        found["register with errors"] = serious_violations(page)
        page.fill("#name", "Axe Seller")
        page.fill("#email", email)
        page.click("button[type=submit]")
        found["registered"] = serious_violations(page)
        page.goto(local(mailed_link(mailbox, email, subject="sign-in link"), cobuy.base_url))
        found["link"] = serious_violations(page)
        page.click("button:has-text('Sign in')")
        page.wait_for_url("**/dashboard")
        offer = cobuy.create_offer(cobuy.register_seller(name="Axe Holder"), title="Axe lamp")
        page.goto(cobuy.base_url + "/dashboard")
        found["dashboard"] = serious_violations(page)
        page.goto(cobuy.base_url + "/dashboard/offers/new")
        page.click("button[value=publish]")
        found["publish with errors"] = serious_violations(page)
        page.goto(cobuy.base_url + f"/dashboard/offers/{offer['id']}/counter-offer")
        found["counter-offer"] = serious_violations(page)
        page.screenshot(path=str(output_dir / "seller-counter-offer-phone.png"), full_page=True)
        page.click("button:has-text('Sign out')")
        page.wait_for_selector("text=You are signed out")
        found["sign-in"] = serious_violations(page)
    finally:
        context.close()
    assert {where: v for where, v in found.items() if v} == {}


def test_a_seller_who_chose_japanese_signs_in_and_counter_offers_from_a_japanese_dashboard(
        cobuy, mailbox, browser, output_dir):
    """`?lang=ja` once, on the sign-in page: the cookie keeps every seller page after it in Japanese."""
    seller = cobuy.register_seller(name="山田商店", lang="ja")
    cobuy.create_offer(seller, title="電動自転車", currency="jpy", unit_price=39900, minimum_reservations=3)
    theirs = cobuy.create_offer(cobuy.register_seller(name="鈴木自転車"), title="ケトル", currency="jpy",
                                unit_price=4900, minimum_reservations=3)
    context = browser.new_context(viewport=DESKTOP, locale="en-US")  # the browser itself asks for English
    page = context.new_page()
    try:
        page.goto(cobuy.base_url + "/sellers/sign-in?lang=ja")
        page.fill("#email", seller["email"])
        page.click("button[type=submit]")
        page.wait_for_selector("text=メールを確認してください")
        page.goto(local(mailed_link(mailbox, seller["email"], subject="サインインリンク"), cobuy.base_url))
        page.click("button[type=submit]")
        page.wait_for_url("**/dashboard")
        assert page.get_attribute("html", "lang") == "ja"
        assert page.inner_text("h1") == "山田商店 の募集"
        assert page.inner_text("#held-title") == "保持中"
        assert "予約 0件 / 成立に必要な 3件" in page.inner_text("#held")
        assert "サインアウト" in page.inner_text("nav.seller")
        page.screenshot(path=str(output_dir / "seller-dashboard-ja.png"), full_page=True)

        page.click(f'#others tr[data-offer-id="{theirs["id"]}"] >> text=対抗する')
        assert page.inner_text("h1") == "ケトル に対抗条件を出す"
        page.fill("#unit_price", "4800")
        page.fill("#minimum_reservations", "3")
        page.click("form.seller button[type=submit]")  # not the nav bar's sign-out button
        assert "あなたがこの募集を ￥4,800（最低 3件）で保持しました。" in page.inner_text("#won")
        page.screenshot(path=str(output_dir / "seller-counter-offer-ja.png"), full_page=True)
    finally:
        context.close()
