"""The offer page through the gateway (issue 18, B3): the gateway keeps its body for every visitor
and puts each visitor's own CSRF token into the form (gateway/cache.py, shared/csrf.py). A token
works with its own browser's cookie only, and a kept body never goes out with another's token."""
from __future__ import annotations

import re

import requests

from tests.support import unique_email

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def visit(cobuy, path: str) -> tuple[requests.Session, requests.Response, str]:
    browser = requests.Session()
    page = browser.get(cobuy.url(path), timeout=30)
    assert page.status_code == 200
    return browser, page, TOKEN.search(page.text).group(1)


def test_each_visitor_gets_its_own_token_in_a_kept_page_and_only_that_token_reserves(cobuy):
    offer = cobuy.create_offer(cobuy.register_seller())
    path = f"/offers/{offer['id']}"
    visits = [visit(cobuy, path) for _ in range(6)]
    assert any(page.headers.get("X-Cache") == "HIT" for _, page, _ in visits[1:])  # one body, kept
    tokens = {token for _, _, token in visits}
    assert len(tokens) == 6  # one per visitor, never a kept one's
    for browser, page, token in visits:
        assert page.headers["Cache-Control"] == "private, no-cache"
        assert "\x00" not in page.text and "X-Cobuy-Csrf-Slots" not in page.headers
        assert browser.cookies.get("cobuy_csrf") and "session" not in browser.cookies
    (mine, _, my_token), (_, _, their_token) = visits[0], visits[1]
    again = mine.get(cobuy.url(path), timeout=30)  # the same browser, the same token
    assert TOKEN.search(again.text).group(1) == my_token and "Set-Cookie" not in again.headers

    crossed = mine.post(cobuy.url(f"{path}/reserve"), timeout=30,
                        data={"csrf_token": their_token, "name": "Crossed", "email": unique_email()})
    assert crossed.status_code == 400 and "expired" in crossed.text
    bare = requests.post(cobuy.url(f"{path}/reserve"), timeout=30,  # another site's form: no cookie
                         data={"csrf_token": my_token, "name": "Forged", "email": unique_email()})
    assert bare.status_code == 400
    taken = mine.post(cobuy.url(f"{path}/reserve"), timeout=30,
                      data={"csrf_token": my_token, "name": "Mine", "email": unique_email()})
    assert taken.status_code == 200 and "You have reserved" in taken.text
    cobuy.wait_offer(offer["id"], lambda o: o["reservation_count"] == 1, timeout=5, what="one reservation")
