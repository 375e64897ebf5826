"""Sellers on the web under attack (SPEC §9, §4): another seller's data is never shown, every form
wants its CSRF token, a session acts for its own seller only, sign-in links work once and expire,
and the sign-in page does not tell which addresses are registered."""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.e2e.test_seller_web import expire_links, local, mailed_link
from tests.support import Cobuy, unique_email

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf(response: requests.Response) -> str:
    return CSRF.search(response.text).group(1)


def ask_link(cobuy: Cobuy, browser: requests.Session, email: str, next_path: str = "/dashboard") -> requests.Response:
    form = browser.get(cobuy.url(f"/sellers/sign-in?next={next_path}"), timeout=30)
    return browser.post(cobuy.url("/sellers/sign-in"), timeout=30, allow_redirects=False,
                        data={"email": email, "next": next_path, "csrf_token": csrf(form)})


def use_link(cobuy: Cobuy, browser: requests.Session, link: str) -> requests.Response:
    page = browser.get(local(link, cobuy.base_url), timeout=30)
    token = link.rsplit("token=", 1)[1]
    return browser.post(cobuy.url("/sellers/sign-in/link"), data={"token": token, "csrf_token": csrf(page)},
                        timeout=30, allow_redirects=False)


def signed_in(cobuy: Cobuy, mailbox, seller: dict) -> requests.Session:
    """A browser (cookies and all) signed in as this seller, through the mailed link."""
    browser = requests.Session()
    mails = len(mailbox.matching(to=seller["email"], subject="sign-in link"))
    ask_link(cobuy, browser, seller["email"])
    assert use_link(cobuy, browser, mailed_link(mailbox, seller["email"], subject="sign-in link",
                                                count=mails + 1)).status_code == 303
    return browser


@pytest.fixture
def holder_and_rival(cobuy, mailbox):
    holder, rival = cobuy.register_seller(name="Secret Holder"), cobuy.register_seller(name="Nosy Rival")
    return holder, signed_in(cobuy, mailbox, holder), rival, signed_in(cobuy, mailbox, rival)


def test_another_sellers_purchasers_and_csv_are_refused_and_an_unknown_offer_is_404(cobuy, holder_and_rival):
    holder, holder_web, _rival, rival_web = holder_and_rival
    offer = cobuy.create_offer(holder, title="Private list")
    purchaser = unique_email("private")
    assert cobuy.reserve(offer["id"], email=purchaser).status_code == 201
    assert purchaser in holder_web.get(cobuy.url(f"/dashboard/offers/{offer['id']}"), timeout=30).text
    for path in (f"/dashboard/offers/{offer['id']}", f"/dashboard/offers/{offer['id']}/purchasers.csv"):
        refused = rival_web.get(cobuy.url(path), timeout=30)
        assert refused.status_code == 403 and purchaser not in refused.text
        assert "Only the seller holding this offer" in refused.text
    assert rival_web.get(cobuy.url("/dashboard/offers/no-such-offer"), timeout=30).status_code == 404
    dashboard = rival_web.get(cobuy.url("/dashboard"), timeout=30).text
    assert "Nosy Rival's offers" in dashboard and purchaser not in dashboard
    assert f"/dashboard/offers/{offer['id']}/counter-offer" in dashboard  # among the offers to take…
    assert f"/dashboard/offers/{offer['id']}/purchasers.csv" not in dashboard  # …never as the rival's own


def test_every_seller_form_refuses_a_post_without_its_csrf_token(cobuy, holder_and_rival):
    holder, holder_web, _rival, _ = holder_and_rival
    offer = cobuy.create_offer(cobuy.register_seller(name="Third"), unit_price=5000)
    forms = {
        "/sellers/sign-in": {"email": holder["email"]},
        "/sellers/sign-in/link": {"token": "x" * 43},
        "/sellers/register": {"name": "Forged", "email": unique_email("forged")},
        "/sellers/sign-out": {},
        "/dashboard/offers/new": {"title": "Forged", "currency": "usd", "unit_price": "1", "minimum_reservations": "1",
                                  "closes_at": "2099-01-01T00:00:00", "action": "publish"},
        f"/dashboard/offers/{offer['id']}/counter-offer": {"unit_price": "1.00", "minimum_reservations": "1"},
        "/dashboard/key": {},
    }
    for path, data in forms.items():
        forged = holder_web.post(cobuy.url(path), data=data, timeout=30, allow_redirects=False)
        assert forged.status_code == 400 and "This form has expired" in forged.text, path
        wrong = holder_web.post(cobuy.url(path), data={**data, "csrf_token": "forged"}, timeout=30, allow_redirects=False)
        assert wrong.status_code == 400, path
    assert cobuy.offer(offer["id"])["condition"]["unit_price"] == 5000  # no counter-offer went through
    assert cobuy.get("/api/v1/sellers/me", headers=cobuy.auth(holder)).status_code == 200  # the key did not rotate
    assert "Secret Holder's offers" in holder_web.get(cobuy.url("/dashboard"), timeout=30).text  # still signed in


def test_a_session_acts_only_for_its_own_seller_whatever_else_the_request_says(cobuy, holder_and_rival):
    holder, holder_web, rival, rival_web = holder_and_rival
    offer = cobuy.create_offer(holder, unit_price=9000, minimum_reservations=2)
    form = rival_web.get(cobuy.url(f"/dashboard/offers/{offer['id']}/counter-offer"), timeout=30)
    forged_identity = {"X-Cobuy-Identity": "e30.forged", "Authorization": f"Bearer {holder['api_key']}"}
    won = rival_web.post(cobuy.url(f"/dashboard/offers/{offer['id']}/counter-offer"), timeout=30,
                         data={"unit_price": "89.00", "minimum_reservations": "2", "csrf_token": csrf(form)},
                         headers={"X-Cobuy-Identity": forged_identity["X-Cobuy-Identity"]})
    assert won.status_code == 201
    assert cobuy.wait_offer(offer["id"], lambda o: o["condition"]["seller_id"] == rival["id"])
    # the holder's own key alongside the rival's cookie changes nothing either: pages go by the cookie
    page = rival_web.get(cobuy.url("/dashboard"), timeout=30, headers=forged_identity)
    assert "Nosy Rival's offers" in page.text and "Secret Holder's offers" not in page.text
    # a made-up or altered cookie is no session
    for value in ("made-up", holder_web.cookies["cobuy_seller"][:-2] + "xx"):
        anonymous = requests.get(cobuy.url("/dashboard"), cookies={"cobuy_seller": value}, timeout=30,
                                 allow_redirects=False)
        assert anonymous.status_code == 303 and anonymous.headers["Location"].startswith("/sellers/sign-in?next=")


def test_the_session_cookie_is_httponly_lax_and_dies_with_sign_out_on_the_server(cobuy, mailbox):
    seller = cobuy.register_seller(name="Cookie Seller")
    browser = requests.Session()
    ask_link(cobuy, browser, seller["email"])
    opened = use_link(cobuy, browser, mailed_link(mailbox, seller["email"], subject="sign-in link"))
    cookie = opened.headers["Set-Cookie"]
    assert cookie.startswith("cobuy_seller=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Max-Age=43200" in cookie and "Secure" not in cookie  # http here; Secure under https (unit test)
    stolen = browser.cookies["cobuy_seller"]
    page = browser.get(cobuy.url("/dashboard"), timeout=30)
    assert page.headers["Cache-Control"] == "private, no-store"
    browser.post(cobuy.url("/sellers/sign-out"), data={"csrf_token": csrf(page)}, timeout=30)
    replayed = requests.get(cobuy.url("/dashboard"), cookies={"cobuy_seller": stolen}, timeout=30,
                            allow_redirects=False)
    assert replayed.status_code == 303  # revoked on the server, not only forgotten by the browser


def test_a_sign_in_link_opens_one_session_even_pressed_ten_times_at_once(cobuy, mailbox):
    seller = cobuy.register_seller(name="Clicky Seller")
    ask_link(cobuy, requests.Session(), seller["email"])
    link = mailed_link(mailbox, seller["email"], subject="sign-in link")
    browsers = [requests.Session() for _ in range(10)]
    tokens = [csrf(b.get(local(link, cobuy.base_url), timeout=30)) for b in browsers]  # all see a usable link
    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(lambda bt: bt[0].post(
            cobuy.url("/sellers/sign-in/link"), data={"token": link.rsplit("token=", 1)[1], "csrf_token": bt[1]},
            timeout=30, allow_redirects=False), zip(browsers, tokens)))
    assert sorted(a.status_code for a in answers) == [303] + [410] * 9
    assert all("This sign-in link has been used" in a.text for a in answers if a.status_code == 410)


def test_an_expired_link_opens_nothing(cobuy, system, mailbox):
    seller = cobuy.register_seller(name="Late Seller")
    browser = requests.Session()
    ask_link(cobuy, browser, seller["email"])
    link = mailed_link(mailbox, seller["email"], subject="sign-in link")
    expire_links(system, seller["email"])
    refused = use_link(cobuy, browser, link)
    assert refused.status_code == 410 and "This sign-in link has expired" in refused.text
    assert "cobuy_seller" not in browser.cookies


def test_the_sign_in_page_answers_the_same_for_a_registered_and_an_unknown_address(cobuy, mailbox):
    seller = cobuy.register_seller(name="Known Seller")
    unknown = unique_email("unknown")
    answers = {}
    for email in (seller["email"], unknown):
        answer = ask_link(cobuy, requests.Session(), email)
        answers[email] = (answer.status_code, answer.text.replace(email, "EMAIL"),
                          sorted(k for k in answer.headers if k.lower() not in ("date", "x-correlation-id",
                                                                                 "content-length", "set-cookie")))
    assert answers[seller["email"]] == answers[unknown]
    mailbox.wait(to=seller["email"], subject="sign-in link")
    assert mailbox.matching(to=unknown) == []  # (the mailer has delivered the other meanwhile)


@pytest.mark.parametrize("next_path", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
def test_sign_in_never_sends_the_seller_to_another_site(cobuy, mailbox, next_path):
    seller = cobuy.register_seller(name="Redirected Seller")
    browser = requests.Session()
    ask_link(cobuy, browser, seller["email"], next_path)
    opened = use_link(cobuy, browser, mailed_link(mailbox, seller["email"], subject="sign-in link"))
    assert opened.headers["Location"] == "/dashboard"


def test_strange_input_on_the_seller_pages_never_gives_a_server_error(cobuy, mailbox):
    seller = cobuy.register_seller(name="Hostile Seller")
    web = signed_in(cobuy, mailbox, seller)
    offer = cobuy.create_offer(cobuy.register_seller(name="Target"), unit_price=5000)
    token = csrf(web.get(cobuy.url("/dashboard"), timeout=30))
    long_id = "x" * 3000
    gets = [f"/dashboard/offers/{long_id}", f"/dashboard/offers/{long_id}/purchasers.csv",
            "/dashboard/offers/%00/counter-offer", f"/sellers/sign-in?next={'/' * 5000}",
            f"/dashboard/offers/{offer['id']}/counter-offer?unit_price=99999999999999999999&minimum_reservations=-1",
            f"/sellers/sign-in/link?token={'a' * 5000}", "/sellers/sign-in/link?token=%00%ff"]
    for path in gets:
        assert web.get(cobuy.url(path), timeout=30).status_code < 500, path
    posts = [
        ("/sellers/sign-in", {"email": "a\x00@example.com"}), ("/sellers/sign-in", {"email": "x" * 10_000}),
        ("/sellers/sign-in", {"email": "ü@例え.jp", "next": "\r\nLocation: //evil"}),
        ("/sellers/sign-in/link", {"token": "\x00" * 50}),
        ("/dashboard/offers/new", {"title": "\x00", "currency": "x" * 500, "unit_price": "1e400",
                                   "minimum_reservations": "99999999999999", "closes_at": "9999-12-31T23:59:59",
                                   "invite_at": "0001-01-01T00:00", "min_decrement": "NaN", "action": "preview"}),
        ("/dashboard/offers/new", {"title": "T", "currency": "usd", "unit_price": "1", "minimum_reservations": "1",
                                   "closes_at": "9999-12-31T23:59:59", "action": "publish"}),
        (f"/dashboard/offers/{offer['id']}/counter-offer", {"unit_price": "99999999999", "minimum_reservations": "1"}),
        (f"/dashboard/offers/{long_id}/counter-offer", {"unit_price": "1", "minimum_reservations": "1"}),
    ]
    for path, data in posts:
        answer = web.post(cobuy.url(path), data={**data, "csrf_token": token}, timeout=30, allow_redirects=False)
        assert answer.status_code < 500, (path, data, answer.status_code)
    assert "Hostile Seller's offers" in web.get(cobuy.url("/dashboard"), timeout=30).text
