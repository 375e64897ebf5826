"""The gateway's micro-cache: keeps only what says it is public, shares one fetch, never a cookie."""
from __future__ import annotations

import asyncio
import time

import pytest
from multidict import CIMultiDict

from gateway.cache import MAX_SECONDS, MicroCache, Stored, fill_form_tokens, language_of, lifetime
from shared import csrf


@pytest.mark.parametrize("status, headers, expected", [
    (200, {"Cache-Control": "public, max-age=0, s-maxage=1"}, MAX_SECONDS),
    (200, {"Cache-Control": "public, max-age=60"}, MAX_SECONDS),
    (200, {"Cache-Control": "public, s-maxage=0"}, 0.0),
    (200, {"Cache-Control": "private, no-cache"}, 0.0),
    (200, {}, 0.0),
    (200, {"Cache-Control": "public, s-maxage=1", "Set-Cookie": "session=abc"}, 0.0),
    # the key holds the language, the one thing a public page takes from Accept-Language or a cookie
    (200, {"Cache-Control": "public, s-maxage=1", "Vary": "Accept-Language, Cookie"}, MAX_SECONDS),
    (200, {"Cache-Control": "public, s-maxage=1", "Vary": "Cookie, Authorization"}, 0.0),
    (200, {"Cache-Control": "public, s-maxage=1", "Vary": "User-Agent"}, 0.0),
    (200, {"Cache-Control": "public, s-maxage=1", "Vary": "Accept-Encoding"}, MAX_SECONDS),
    (404, {"Cache-Control": "public, s-maxage=1"}, 0.0),
])
def test_only_public_successes_without_cookies_are_kept(status, headers, expected):
    assert lifetime(status, CIMultiDict(headers)) == expected


def _stored(ttl: float, body: bytes) -> Stored:
    return Stored(time.monotonic() + ttl, 200, {}, body)


def test_concurrent_misses_share_one_fetch_and_later_hits_need_none():
    cache, calls = MicroCache(), []

    async def load():
        calls.append(1)
        await asyncio.sleep(0.05)
        return _stored(MAX_SECONDS, b"page")

    async def burst():
        return await asyncio.gather(*(cache.fetch(("GET", "/"), load) for _ in range(20)))

    results = asyncio.run(burst())
    assert len(calls) == 1 and all(stored.body == b"page" for stored, _ in results)
    assert sum(hit for _, hit in results) == 19
    assert cache.get(("GET", "/")) is not None


def test_a_response_that_may_not_be_kept_is_never_handed_to_another_visitor():
    cache, served = MicroCache(), iter(range(100))

    async def load():
        n = next(served)
        await asyncio.sleep(0.02)
        return _stored(0.0, f"visitor {n}".encode())  # e.g. it carried Set-Cookie

    async def burst():
        return await asyncio.gather(*(cache.fetch(("GET", "/offers/1"), load) for _ in range(5)))

    bodies = [stored.body for stored, _ in asyncio.run(burst())]
    assert len(set(bodies)) == 5
    assert cache.get(("GET", "/offers/1")) is None


def test_an_entry_expires():
    cache = MicroCache()

    async def load():
        return _stored(0.05, b"x")

    asyncio.run(cache.fetch(("GET", "/"), load))
    assert cache.get(("GET", "/")) is not None
    time.sleep(0.06)
    assert cache.get(("GET", "/")) is None


@pytest.mark.parametrize("query, cookie, accept_language, expected", [
    (None, None, None, "en"),
    (None, None, "ja,en-US;q=0.8", "ja"),
    (None, None, "ja-JP", "ja"),
    (None, None, "fr-FR,fr;q=0.9", "en"),  # a language we do not speak: English
    (None, None, "fr,ja;q=0.5,en;q=0.4", "ja"),
    (None, "ja", "en", "ja"),  # the switcher's cookie beats the browser
    ("en", "ja", "ja", "en"),  # and ?lang= beats the cookie
    ("xx", "ja", None, "ja"),  # an unknown ?lang= is no choice
    (None, "zz", "ja", "ja"),
    (None, None, "ja;q=" + "9" * 5000, "en"),  # an absurd header is not parsed at length
])
def test_the_cache_key_holds_the_language_the_page_is_answered_in(query, cookie, accept_language, expected):
    cookies = {"cobuy_lang": cookie} if cookie else {}
    assert language_of(query, cookies, accept_language) == expected


# -- a kept page's form tokens, filled per visitor (shared/csrf.py) -------------------------------------

def _kept_form(control: str = "public, s-maxage=1") -> tuple[CIMultiDict, Stored]:
    headers = CIMultiDict({"Cache-Control": control, csrf.HAS_SLOTS: "1", "Content-Type": "text/html"})
    body = f'<input name="csrf_token" value="{csrf.SLOT}"><i>{csrf.SLOT}</i>'.encode()
    return CIMultiDict(headers), Stored(time.monotonic() + MAX_SECONDS, 200, headers, body)


def test_a_new_visitor_gets_a_secret_cookie_and_its_hmac_in_every_slot_of_a_private_answer():
    key = csrf.form_key("internal")
    headers, body = _kept_form()
    filled = fill_form_tokens(headers, body, None, key, secure=True)
    [cookie] = headers.getall("Set-Cookie")
    secret = cookie.split(";")[0].split("=", 1)[1]
    assert {"HttpOnly", "SameSite=Lax", "Secure", "Path=/"} <= {p.strip() for p in cookie.split(";")}
    token = csrf.token_for(key, secret)
    assert filled == body.body.replace(csrf.SLOT.encode(), token.encode()) and filled.count(token.encode()) == 2
    assert headers["Cache-Control"] == "private, no-cache" and csrf.HAS_SLOTS not in headers
    assert csrf.SLOT.encode() in body.body and body.headers[csrf.HAS_SLOTS] == "1"  # the kept answer is untouched


def test_a_returning_visitor_keeps_its_secret_and_each_visitor_gets_only_its_own_token():
    key = csrf.form_key("internal")
    mine, theirs = csrf.new_secret(), csrf.new_secret()
    headers, body = _kept_form()
    filled = fill_form_tokens(headers, body, mine, key, secure=False)
    assert "Set-Cookie" not in headers
    assert csrf.token_for(key, mine).encode() in filled and csrf.token_for(key, theirs).encode() not in filled
    other_headers, _ = _kept_form()
    assert csrf.token_for(key, theirs).encode() in fill_form_tokens(other_headers, body, theirs, key, secure=False)
    for planted in ("", "x" * 32, mine.upper(), mine + "0", "; Path=/"):  # not a secret we give: a new one
        headers, _ = _kept_form()
        fill_form_tokens(headers, body, planted, key, secure=False)
        assert headers.getall("Set-Cookie")[0].startswith(f"{csrf.COOKIE}=")


def test_a_page_that_says_no_store_keeps_saying_it():
    headers, body = _kept_form("no-store")
    fill_form_tokens(headers, body, None, csrf.form_key("k"), secure=False)
    assert headers["Cache-Control"] == "no-store"
