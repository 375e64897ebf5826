"""Red-team probes of the gateway's kept pages (gateway/cache.py) against cookie headers the gateway
(aiohttp) and catalog (werkzeug) read differently: a repeated cookie name, or the cookies split over
two `Cookie` headers. The gateway keys a kept page by the language it believes the request is in,
and fills the form token of the cookie it believes the browser holds: both must be catalog's view."""
from __future__ import annotations

import re
import time

import requests

from tests.support import unique_email

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
LANG = re.compile(r'<html lang="([a-z]+)"')


def test_a_repeated_language_cookie_never_poisons_a_kept_page_for_other_visitors(cobuy):
    offer = cobuy.create_offer(cobuy.register_seller())
    path = cobuy.url(f"/offers/{offer['id']}")
    for poison in ("cobuy_lang=ja; cobuy_lang=en", "cobuy_lang=en; cobuy_lang=ja"):
        for _ in range(3):
            time.sleep(0.6)  # the kept page (0.5 s) is gone: the hostile request renders it
            hostile = requests.get(path, headers={"Cookie": poison, "Accept-Language": "en"}, timeout=30)
            plain = requests.get(path, headers={"Accept-Language": "en"}, timeout=30)
            assert hostile.status_code == plain.status_code == 200
            assert LANG.search(plain.text).group(1) == "en", (poison, plain.headers.get("X-Cache"))
            japanese = requests.get(path, headers={"Accept-Language": "ja"}, timeout=30)
            assert LANG.search(japanese.text).group(1) == "ja", (poison, japanese.headers.get("X-Cache"))


def test_a_language_cookie_in_a_second_cookie_header_never_poisons_a_kept_page(cobuy):
    offer = cobuy.create_offer(cobuy.register_seller())
    path = cobuy.url(f"/offers/{offer['id']}")
    for _ in range(3):
        time.sleep(0.6)
        # two Cookie header lines, as a hostile client may send them
        raw = _raw_get(path, [("Cookie", "cobuy_lang=ja"), ("Cookie", "x=1"), ("Accept-Language", "en")])
        assert raw.startswith(b"HTTP/1.1 200"), raw[:200]
        for lang in ("en", "ja"):
            page = requests.get(path, headers={"Accept-Language": lang}, timeout=30)
            assert LANG.search(page.text).group(1) == lang, (lang, page.headers.get("X-Cache"))


def test_a_second_accept_language_header_never_poisons_a_kept_page(cobuy):
    offer = cobuy.create_offer(cobuy.register_seller())
    path = cobuy.url(f"/offers/{offer['id']}")
    for _ in range(3):
        time.sleep(0.6)
        raw = _raw_get(path, [("Accept-Language", "en;q=0.1"), ("Accept-Language", "ja;q=0.5")])
        assert raw.startswith(b"HTTP/1.1 200"), raw[:200]
        for lang in ("en", "ja"):
            page = requests.get(path, headers={"Accept-Language": lang}, timeout=30)
            assert LANG.search(page.text).group(1) == lang, (lang, page.headers.get("X-Cache"))


def test_a_browser_with_two_csrf_cookies_gets_the_token_catalog_checks(cobuy):
    """Two `cobuy_csrf` cookies (one left by a sibling subdomain or an older path): the token the page
    carries must be the one catalog will check, else the visitor can never reserve."""
    offer = cobuy.create_offer(cobuy.register_seller())
    path = f"/offers/{offer['id']}"
    cookie = f"cobuy_csrf={'a' * 32}; cobuy_csrf={'b' * 32}"
    page = requests.get(cobuy.url(path), headers={"Cookie": cookie}, timeout=30)
    assert page.status_code == 200
    token = TOKEN.search(page.text).group(1)
    taken = requests.post(cobuy.url(f"{path}/reserve"), headers={"Cookie": cookie}, timeout=30,
                          data={"csrf_token": token, "name": "Twice", "email": unique_email()})
    assert taken.status_code == 200 and "You have reserved" in taken.text, taken.text[:300]


def _raw_get(url: str, headers: list[tuple[str, str]]) -> bytes:
    import socket
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    lines = [f"GET {parts.path} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close",
             *(f"{k}: {v}" for k, v in headers), "", ""]
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as s:
        s.sendall("\r\n".join(lines).encode())
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_planted_csrf_cookie_and_its_token_never_pass_a_signed_in_sellers_form(cobuy, mailbox):
    """Cookie tossing (a sibling subdomain, or a plain-http answer, sets `cobuy_csrf` for the site):
    the attacker plants a secret whose token they read from any page with that cookie. Signing in
    renews the browser's own secret, but the planted cookie (older, or on a longer path) is sent
    first, and catalog reads the first: the seller's forms must still refuse the planted pair."""
    from tests.e2e.test_seller_web_security import signed_in
    holder = cobuy.register_seller(name="Tossed")
    web = signed_in(cobuy, mailbox, holder)
    planted = "c" * 32
    offer = cobuy.create_offer(cobuy.register_seller())
    seen = requests.get(cobuy.url(f"/offers/{offer['id']}"), headers={"Cookie": f"cobuy_csrf={planted}"}, timeout=30)
    planted_token = TOKEN.search(seen.text).group(1)
    own = web.cookies["cobuy_csrf"]
    session = web.cookies["cobuy_seller"]
    for cookie in (f"cobuy_csrf={planted}; cobuy_csrf={own}; cobuy_seller={session}",
                   f"cobuy_csrf={planted}; cobuy_seller={session}"):
        forged = requests.post(cobuy.url("/dashboard/key"), headers={"Cookie": cookie}, timeout=30,
                               data={"csrf_token": planted_token}, allow_redirects=False)
        assert forged.status_code == 400, (cookie, forged.status_code)
    assert cobuy.get("/api/v1/sellers/me", headers=cobuy.auth(holder)).status_code == 200  # the key did not rotate
    # the seller's own form still works
    page = web.get(cobuy.url("/dashboard"), timeout=30)
    assert web.post(cobuy.url("/sellers/sign-out"), data={"csrf_token": TOKEN.search(page.text).group(1)},
                    timeout=30, allow_redirects=False).status_code == 303


def test_concurrent_first_visits_head_and_odd_csrf_cookies_each_get_their_own_token(cobuy):
    from concurrent.futures import ThreadPoolExecutor
    offer = cobuy.create_offer(cobuy.register_seller())
    path = cobuy.url(f"/offers/{offer['id']}")
    time.sleep(0.6)

    def first_visit(i):
        headers = {"Accept-Language": "ja" if i % 2 else "en"}
        if i % 3 == 0:
            headers["Cookie"] = "cobuy_csrf=" + ["x" * 5000, "A" * 32, "%00" * 11, "", "d" * 31][i % 5]
        browser = requests.Session()
        page = browser.get(path, headers=headers, timeout=30)
        return browser, page

    with ThreadPoolExecutor(12) as pool:
        visits = list(pool.map(first_visit, range(12)))
    tokens = []
    for browser, page in visits:
        assert page.status_code == 200 and "\x00" not in page.text
        assert page.headers["Cache-Control"] == "private, no-cache"
        secret = page.cookies.get("cobuy_csrf")
        assert secret and len(secret) == 32, page.headers.get("Set-Cookie")
        tokens.append(TOKEN.search(page.text).group(1))
        taken = requests.post(cobuy.url(f"/offers/{offer['id']}/reserve"), cookies={"cobuy_csrf": secret},
                              data={"csrf_token": tokens[-1], "name": "First", "email": unique_email()}, timeout=30)
        assert taken.status_code == 200 and "You have reserved" in taken.text
    assert len(set(tokens)) == len(tokens)
    head = requests.head(path, timeout=30)
    assert head.status_code == 200 and head.headers.get("Cache-Control") != "public, s-maxage=1"
    get = requests.get(path, timeout=30)
    assert get.status_code == 200 and TOKEN.search(get.text)
