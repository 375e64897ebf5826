"""English and Japanese pages and mails (SPEC §12), through the gateway and the SMTP sink."""
from __future__ import annotations

import re

import requests

from tests.support import instant, unique_email, wait_for


def _visitor(**headers) -> requests.Session:
    """A browser of its own: the suite's client must not keep a language cookie."""
    session = requests.Session()
    session.headers.update(headers)
    return session


def test_a_page_follows_accept_language_and_says_its_language(cobuy):
    japanese = _visitor(**{"Accept-Language": "ja-JP,ja;q=0.9,en;q=0.5"}).get(cobuy.url("/"), timeout=10)
    english = _visitor(**{"Accept-Language": "en-GB"}).get(cobuy.url("/"), timeout=10)
    assert '<html lang="ja">' in japanese.text and "受付中の共同購入" in japanese.text
    assert '<html lang="en">' in english.text and "Open joint purchases" in english.text
    assert japanese.headers["Content-Language"] == "ja"
    assert {"accept-language", "cookie"} <= {v.strip().lower() for v in japanese.headers["Vary"].split(",")}
    assert 'href="/?lang=en"' in japanese.text and 'href="/?lang=ja"' in english.text  # the switcher


def test_the_switcher_remembers_the_language_in_a_cookie_over_the_browsers_own(cobuy):
    visitor = _visitor(**{"Accept-Language": "en-US"})
    switched = visitor.get(cobuy.url("/?lang=ja"), timeout=10)
    assert '<html lang="ja">' in switched.text
    cookie = next(c for c in visitor.cookies if c.name == "cobuy_lang")
    assert cookie.value == "ja" and cookie.has_nonstandard_attr("HttpOnly")
    offer = cobuy.create_offer(cobuy.register_seller())
    assert '<html lang="ja">' in visitor.get(cobuy.url(f"/offers/{offer['id']}"), timeout=10).text
    assert '<html lang="en">' in visitor.get(cobuy.url("/?lang=en"), timeout=10).text
    assert '<html lang="en">' in visitor.get(cobuy.url("/"), timeout=10).text


def test_the_edge_cache_never_serves_one_language_to_another(cobuy):
    """The gateway keeps the home page half a second: each language gets its own copy."""
    langs = ["ja", "en", "ja;q=0.1,en", "ja", "fr,ja", "en"] * 5
    expected = {"ja": "ja", "en": "en", "ja;q=0.1,en": "en", "fr,ja": "ja"}
    replies = [_visitor(**{"Accept-Language": lang}).get(cobuy.url("/"), timeout=10) for lang in langs]
    assert [re.search(r'<html lang="(\w+)">', r.text).group(1) for r in replies] == [expected[l] for l in langs]
    assert any(r.headers.get("X-Cache") == "HIT" for r in replies)  # and it still caches
    by_cookie = _visitor(**{"Accept-Language": "en"})
    by_cookie.cookies.set("cobuy_lang", "ja")
    assert '<html lang="ja">' in by_cookie.get(cobuy.url("/"), timeout=10).text


def test_a_language_the_api_does_not_speak_is_refused_with_its_field_named(cobuy):
    reply = cobuy.post("/api/v1/sellers", json={"name": "Pierre", "email": unique_email(), "lang": "fr"})
    assert reply.status_code == 422 and reply.json()["code"] == "validation_failed"
    assert "lang" in reply.json()["errors"]
    offer = cobuy.create_offer(cobuy.register_seller())
    reply = cobuy.post(f"/api/v1/offers/{offer['id']}/reservations",
                       json={"name": "Pat", "email": unique_email(), "lang": ["ja"]})
    assert reply.status_code == 422 and "lang" in reply.json()["errors"]


def test_a_seller_registered_in_japanese_is_invited_in_japanese_and_an_english_one_in_english(
        cobuy, mailbox, output_dir):
    holder = cobuy.register_seller(name="招待元商店")
    japanese = cobuy.register_seller(name="山田商店", lang="ja")
    english = cobuy.register_seller(name="Yamada Trading")
    assert japanese["lang"] == "ja" and english["lang"] == "en"
    offer = cobuy.create_offer(holder, title="電動自転車 20型", currency="jpy", unit_price=98000,
                               minimum_reservations=2, min_decrement=500, invite_at=instant(2), closes_at=instant(3600))
    cobuy.post(f"/api/v1/offers/{offer['id']}/reservations",
               json={"name": "佐藤花子", "email": unique_email("hanako"), "lang": "ja"})
    [mail] = mailbox.wait(1, to=japanese["email"], subject="招待", timeout=20)
    assert mail.subject == "招待: 電動自転車 20型 で ￥98,000 を下回る条件を"
    assert "山田商店 様" in mail.text and "2件の予約" in mail.text and "￥500 以上下げる" in mail.text
    assert re.search(r"締め切り:\s+\d{4}年\d{1,2}月\d{1,2}日 \d{1,2}:\d{2}:\d{2} UTC", mail.text)
    assert '<html lang="ja">' in mail.html
    (output_dir / "invitation-ja.eml").write_bytes(mail.message.as_bytes())
    (output_dir / "invitation-ja.txt").write_text(f"Subject: {mail.subject}\n\n{mail.text}", encoding="utf-8")
    [theirs] = mailbox.wait(1, to=english["email"], subject="Invitation", timeout=20)
    assert theirs.subject == "Invitation: beat ¥98,000 on 電動自転車 20型" and "2 reservations" in theirs.text


def test_a_purchaser_who_reserved_in_japanese_gets_her_mails_in_japanese(cobuy, mailbox):
    offer = cobuy.create_offer(cobuy.register_seller(name="Kettle Co"), title="Kettle", unit_price=4900,
                               minimum_reservations=1)
    email = unique_email("hanako")
    reservation = cobuy.post(f"/api/v1/offers/{offer['id']}/reservations",
                             json={"name": "佐藤花子", "email": email, "lang": "ja"}).json()
    [accepted] = mailbox.wait(1, to=email, subject="予約完了", timeout=20)
    assert accepted.subject == "予約完了: Kettle（$49.00）" and "1件の予約が必要です" in accepted.text
    cancelled = cobuy.delete(f"/api/v1/reservations/{reservation['id']}",
                             headers={"X-Cancel-Token": reservation["cancel_token"]})
    assert cancelled.status_code == 204
    [gone] = mailbox.wait(1, to=email, subject="取り消し", timeout=20)
    assert "「Kettle」のご予約を取り消しました" in gone.text


def test_purchasers_are_told_of_the_close_each_in_the_language_they_reserved_in(cobuy, mailbox):
    offer = cobuy.create_offer(cobuy.register_seller(name="Close Co", lang="ja"), title="Tea set", unit_price=3000,
                               minimum_reservations=3, closes_at=instant(4))
    ja, en = unique_email("ja"), unique_email("en")
    assert cobuy.post(f"/api/v1/offers/{offer['id']}/reservations",
                      json={"name": "花子", "email": ja, "lang": "ja"}).status_code == 201
    assert cobuy.reserve(offer["id"], en).status_code == 201
    [japanese] = mailbox.wait(1, to=ja, subject="不成立", timeout=30)
    [english] = mailbox.wait(1, to=en, subject="Not concluded", timeout=30)
    assert "最低 3件に対し 2件でした" in japanese.text and "2 of 3 reservations" in english.text
    holder = wait_for(lambda: [m for m in mailbox.matching(subject="不成立: Tea set（3件中 2件）")], 30, what="holder")
    assert holder


def test_a_seller_who_registers_from_the_japanese_page_is_invited_in_japanese(cobuy, mailbox):
    visitor = _visitor(**{"Accept-Language": "ja"})
    form = visitor.get(cobuy.url("/sellers/register"), timeout=10)
    assert '<html lang="ja">' in form.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    email = unique_email("kyoto")
    registered = visitor.post(cobuy.url("/sellers/register"), timeout=10,
                              data={"csrf_token": token, "name": "京都商店", "email": email})
    assert registered.status_code == 200, registered.text
    holder = cobuy.register_seller(name="Holder Inc")
    offer = cobuy.create_offer(holder, title="抹茶セット", currency="jpy", unit_price=5000, invite_at=instant(2),
                               closes_at=instant(3600))
    [invitation] = mailbox.wait(1, to=email, subject="招待", timeout=20)
    assert invitation.subject == f"招待: {offer['title']} で ￥5,000 を下回る条件を" and "京都商店 様" in invitation.text


def test_a_page_with_a_form_keeps_its_language_cookie_beside_its_form_cookie_through_the_gateway(cobuy):
    """The seller's sign-in page sets two cookies at once (its CSRF session and `?lang=`'s): the
    gateway passes both, so the next page, asked in English by the browser, still speaks Japanese."""
    visitor = _visitor(**{"Accept-Language": "en-US"})
    first = visitor.get(cobuy.url("/sellers/sign-in?lang=ja"), timeout=10)
    assert '<html lang="ja">' in first.text and len(first.raw.headers.getlist("Set-Cookie")) >= 2
    assert visitor.cookies.get("cobuy_lang") == "ja"
    again = visitor.get(cobuy.url("/sellers/register"), timeout=10)
    assert '<html lang="ja">' in again.text and "販売者として登録" in again.text
