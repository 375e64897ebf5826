"""What a hostile client found after the §7 fixes: bad input that still reached a 5xx.

Each test is one request (or one form) a client can send; none may be answered with a 5xx."""
from __future__ import annotations

import json
import re

import pytest
import requests

from tests.e2e.test_edge import raw_bytes, status_of
from tests.support import unique_email


@pytest.fixture
def reservation(cobuy):
    offer = cobuy.create_offer(cobuy.register_seller())
    reply = cobuy.reserve(offer["id"])
    assert reply.status_code == 201, reply.text
    return reply.json()


def form_session(cobuy, path: str) -> tuple[requests.Session, str]:
    """A browser session holding a CSRF token, as the page at `path` gave it."""
    browser = requests.Session()
    page = browser.get(cobuy.url(path), timeout=30)
    return browser, re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


# -- the cancel token --------------------------------------------------------------------------------

@pytest.mark.parametrize("token", ["caf\u00e9".encode("utf-8"), "\u20ac".encode("utf-8")], ids=["e-acute", "euro"])
def test_a_non_ascii_cancel_token_is_a_403_not_a_500(system, reservation, token):
    answer = raw_bytes(system.port, b"DELETE /api/v1/reservations/" + reservation["id"].encode()
                       + b" HTTP/1.1\r\nHost: x\r\nX-Cancel-Token: " + token + b"\r\nConnection: close\r\n\r\n")
    assert status_of(answer) == 403, answer[:300]


@pytest.mark.parametrize("token", ["caf\u00e9", "\u20ac", "a\nb"], ids=["e-acute", "euro", "newline"])
def test_a_strange_token_in_the_cancel_form_is_refused_with_a_4xx(cobuy, reservation, token):
    path = f"/reservations/{reservation['id']}/cancel"
    browser, csrf = form_session(cobuy, f"/offers/{reservation['offer_id']}")  # a page with a form
    reply = browser.post(cobuy.url(path), data={"csrf_token": csrf, "token": token}, timeout=30)
    assert 400 <= reply.status_code < 500, reply.status_code
    cobuy.wait_offer(reservation["offer_id"], lambda o: o["reservation_count"] == 1, what="the reservation kept")


# -- ids that carry an escape ------------------------------------------------------------------------

@pytest.mark.parametrize("method, template", [
    ("POST", "/api/v1/offers/{}/reservations"),
    ("GET", "/api/v1/offers/{}/reservations"),
    ("POST", "/api/v1/offers/{}/counter-offers"),
], ids=["reserve", "list", "counter-offer"])
def test_an_offer_id_that_is_an_encoded_escape_is_a_404_not_a_500(cobuy, system, method, template):
    """`%2500` reaches the service as the id `%00`; asked of catalog unquoted, it became a NUL."""
    seller = cobuy.register_seller()
    body = json.dumps({"unit_price": 1, "minimum_reservations": 1} if "counter" in template
                      else {"name": "Pat", "email": unique_email()}).encode()
    answer = raw_bytes(system.port, method.encode() + b" " + template.format("%2500").encode()
                       + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + seller["api_key"].encode()
                       + b"\r\nContent-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
                       + b"\r\nConnection: close\r\n\r\n" + body)
    assert status_of(answer) == 404, answer[:400]


def test_a_reservation_id_that_is_an_encoded_escape_in_the_cancel_form_is_a_404(cobuy):
    browser, csrf = form_session(cobuy, f"/offers/{cobuy.create_offer(cobuy.register_seller())['id']}")
    reply = browser.post(cobuy.url("/reservations/%2500/cancel"), data={"csrf_token": csrf, "token": "ab" * 20},
                         timeout=30)
    assert reply.status_code == 404, reply.status_code


# -- JSON --------------------------------------------------------------------------------------------

DEEP = '{"name":' * 5000 + "1" + "}" * 5000


@pytest.mark.parametrize("path", ["/api/v1/sellers", "/api/v1/offers", "/api/v1/offers/{}/reservations",
                                  "/api/v1/offers/{}/counter-offers"])
def test_deeply_nested_json_is_a_400_not_a_500(cobuy, path):
    seller = cobuy.register_seller()
    offer = cobuy.create_offer(seller)
    reply = cobuy.post(path.format(offer["id"]), data=DEEP,
                       headers={"Content-Type": "application/json", **cobuy.auth(cobuy.register_seller())})
    assert reply.status_code == 400, reply.text


@pytest.mark.parametrize("path, body", [
    ("/api/v1/sellers", {"name": "\ud800", "email": "x"}),
    ("/api/v1/offers/{}/reservations", {"name": "Pat \udfff", "email": "x"}),
    ("/api/v1/offers", {"title": "\ud83d", "currency": "usd", "unit_price": 1, "minimum_reservations": 1,
                        "closes_at": "2999-01-01T00:00:00+00:00"}),
], ids=["seller name", "purchaser name", "offer title"])
def test_a_lone_surrogate_in_a_name_is_a_422_not_a_500(cobuy, path, body):
    seller = cobuy.register_seller()
    offer = cobuy.create_offer(seller)
    body = dict(body)
    if "email" in body:
        body["email"] = unique_email()
    # json.dumps writes a lone surrogate as the \\udXXX escape a hostile client would send
    reply = cobuy.post(path.format(offer["id"]), data=json.dumps(body),
                       headers={"Content-Type": "application/json", **cobuy.auth(seller)})
    assert reply.status_code == 422, reply.text


# -- instants at the edge of the calendar ------------------------------------------------------------

@pytest.mark.parametrize("instants", [
    {"closes_at": "9999-12-31T23:59:59-14:00"},
    {"closes_at": "0001-01-01T00:00:00+14:00"},
    {"closes_at": "2999-01-01T00:00:00+00:00", "invite_at": "0001-01-01T00:00:00+14:00"},
    {"closes_at": "2999-01-01T00:00:00+00:00", "invite_at": "9999-12-31T23:59:59-14:00"},
], ids=["closes after year 9999 in UTC", "closes before year 1 in UTC", "invited before year 1", "invited after 9999"])
def test_an_instant_that_leaves_the_calendar_in_utc_is_a_422_not_a_500(cobuy, instants):
    body = {"title": "Edge of time", "currency": "usd", "unit_price": 1000, "minimum_reservations": 3, **instants}
    reply = cobuy.post("/api/v1/offers", json=body, headers=cobuy.auth(cobuy.register_seller()))
    assert reply.status_code == 422, reply.text
