"""The purchaser's whole flow in Japanese, in Debian's Chromium (fonts-noto-cjk draws the screenshots)."""
from __future__ import annotations

import pytest

from tests.e2e.test_browser import AXE, DESKTOP, LIVE, browser, serious_violations  # noqa: F401  (a fixture)
from tests.support import unique_email


@pytest.fixture
def japanese_page(browser):  # noqa: F811
    context = browser.new_context(viewport=DESKTOP, locale="ja-JP", timezone_id="Asia/Tokyo")
    page = context.new_page()
    yield page
    context.close()


def test_a_japanese_purchaser_reserves_watches_and_cancels_all_in_japanese(cobuy, mailbox, japanese_page,
                                                                           output_dir):
    page = japanese_page
    holder = cobuy.register_seller(name="山田自転車店", lang="ja")
    rival = cobuy.register_seller(name="鈴木サイクル")
    offer = cobuy.create_offer(holder, title=f"電動アシスト自転車 {holder['id'][:4]}", currency="jpy",
                               unit_price=98000, minimum_reservations=2, min_decrement=1000,
                               description="折りたたみ式、20インチ")
    page.goto(cobuy.base_url + "/")  # the browser asks for Japanese: Accept-Language ja-JP
    assert page.get_attribute("html", "lang") == "ja"
    page.locator("h1", has_text="受付中の共同購入").wait_for()
    card = page.locator(f'article[data-offer-id="{offer["id"]}"]')
    card.wait_for()
    assert "￥98,000" in card.inner_text() and "販売: 山田自転車店" in card.inner_text()
    assert "予約 0件 / 成立に必要な 2件" in card.inner_text()
    assert "JST" in card.inner_text() and "残り" in card.inner_text()  # the viewer's zone, named; time left ticks
    cobuy.reserve(offer["id"])
    card.locator(".tally", has_text="予約 1件").wait_for(timeout=LIVE)  # pushed, in Japanese words
    page.screenshot(path=str(output_dir / "home-ja.png"), full_page=True)
    if AXE.exists():
        assert serious_violations(page) == []

    card.locator("a").click()
    page.wait_for_url(f"**/offers/{offer['id']}")
    assert page.locator("#status").inner_text() == "受付中"
    page.fill("#name", "佐藤花子")
    email = unique_email("hanako")
    page.fill("#email", email)
    page.click("button[type=submit]")
    page.locator("h1", has_text="予約しました").wait_for()
    assert "￥98,000" in page.inner_text("main") and "UTC" in page.inner_text("main")
    cancel_link = page.locator("a", has_text="この予約を取り消す").get_attribute("href")
    [mail] = mailbox.wait(1, to=email, timeout=20)  # her confirmation speaks the page's language
    assert mail.subject.startswith("予約完了:") and "佐藤花子 様" in mail.text and cancel_link in mail.text

    page.goto(cobuy.base_url + f"/offers/{offer['id']}")
    page.locator("#tally", has_text="予約 2件 · 最低数 2件に到達").wait_for(timeout=LIVE)
    assert cobuy.counter(rival, offer["id"], 90000, 2).status_code == 201
    page.wait_for_function("document.getElementById('holder').textContent === '鈴木サイクル'", timeout=LIVE)
    assert page.locator("#price").inner_text() == "￥90,000"
    page.locator("#history", has_text="(自主)").wait_for(timeout=LIVE)
    page.screenshot(path=str(output_dir / "offer-ja.png"), full_page=True)

    page.goto(cobuy.base_url + cancel_link)
    page.locator("h1", has_text="予約を取り消す").wait_for()
    page.click("button[type=submit]")
    page.locator("text=予約を取り消しました。料金は発生せず").wait_for()
    mailbox.wait(1, to=email, subject="取り消し", timeout=20)

    page.click("nav.languages a[hreflang=en]")  # the switcher: English from now on
    assert page.get_attribute("html", "lang") == "en"
    page.goto(cobuy.base_url + "/")
    assert page.get_attribute("html", "lang") == "en" and page.locator("h1").inner_text() == "Open joint purchases"


def test_a_refused_form_says_why_in_japanese_next_to_the_field(cobuy, browser):  # noqa: F811
    offer = cobuy.create_offer(cobuy.register_seller())
    context = browser.new_context(java_script_enabled=False, locale="ja-JP")
    page = context.new_page()
    try:
        page.goto(cobuy.base_url + f"/offers/{offer['id']}")
        page.fill("#name", "花子")
        page.fill("#email", "a@b")
        page.click("button[type=submit]")
        assert "正しいメールアドレス" in page.inner_text("#email-error")
        assert page.get_attribute("html", "lang") == "ja"
    finally:
        context.close()
