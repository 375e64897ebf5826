"""Sellers and offers through the gateway (SPEC §3), on this run's servers."""
import pytest

from tests.support import instant, unique_email


def test_registering_returns_the_key_once_and_me_answers_with_it(cobuy):
    email = unique_email("shop")
    reply = cobuy.post("/api/v1/sellers", json={"name": "Corner Shop", "email": email})
    assert reply.status_code == 201
    seller = reply.json()
    cobuy.sellers.append(seller)
    assert seller["api_key"].startswith("cb_") and seller["email"] == email
    me = cobuy.get("/api/v1/sellers/me", headers=cobuy.auth(seller))
    assert me.status_code == 200
    assert me.json() == {k: seller[k] for k in ("id", "name", "email", "registered_at", "lang")}
    assert "api_key" not in me.json()


def test_an_email_is_registered_once_case_insensitively(cobuy):
    email = unique_email("twice")
    cobuy.register_seller(email=email)
    reply = cobuy.post("/api/v1/sellers", json={"name": "Again", "email": email.upper()})
    assert reply.status_code == 409
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert reply.json()["code"] == "email_taken"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer cb_not-a-key"}, {"Authorization": "Basic eDp5"}])
def test_seller_routes_refuse_missing_or_unknown_keys(cobuy, headers):
    reply = cobuy.get("/api/v1/sellers/me", headers=headers)
    assert reply.status_code == 401
    assert reply.json()["code"] in {"authentication_required", "invalid_api_key"}


def test_a_client_cannot_forge_the_identity_header(cobuy):
    victim = cobuy.register_seller()
    forged = {"X-Cobuy-Identity": "eyJpZCI6ImV2aWwifQ.deadbeef"}
    assert cobuy.get("/api/v1/sellers/me", headers=forged).status_code == 401
    offer = cobuy.post("/api/v1/offers", headers=forged, json={
        "title": "x", "currency": "usd", "unit_price": 1, "minimum_reservations": 1, "closes_at": instant(60)})
    assert offer.status_code == 401
    assert cobuy.get("/api/v1/sellers/me", headers=cobuy.auth(victim)).json()["id"] == victim["id"]


def test_publishing_an_offer_makes_the_caller_the_holder(cobuy):
    seller = cobuy.register_seller(name="Kettle Co")
    offer = cobuy.create_offer(seller, title="Kettle", unit_price=4999, minimum_reservations=5,
                               description="Steel, 1.7 l")
    assert offer["status"] == "open" and offer["outcome"] is None and offer["invited"] is False
    assert offer["condition"]["seller_id"] == seller["id"] == offer["offering_seller_id"]
    assert offer["condition"]["seller_name"] == "Kettle Co"
    assert (offer["condition"]["unit_price"], offer["condition"]["minimum_reservations"]) == (4999, 5)
    assert offer["reservation_count"] == 0 and offer["min_decrement"] == 1
    assert [h["kind"] for h in offer["history"]] == ["initial"]
    assert cobuy.offer(offer["id"]) == offer  # readable right after its 201


def test_invite_at_defaults_to_the_last_fifth_of_the_term(cobuy):
    from datetime import datetime

    offer = cobuy.create_offer(cobuy.register_seller(), closes_at=instant(1000))
    opens, invite, closes = (datetime.fromisoformat(offer[k]) for k in ("opens_at", "invite_at", "closes_at"))
    assert abs((invite - opens).total_seconds() - 0.8 * (closes - opens).total_seconds()) < 0.01


@pytest.mark.parametrize("change, field", [
    ({"closes_at": instant(-60)}, "closes_at"),
    ({"invite_at": instant(7200)}, "invite_at"),
    ({"invite_at": instant(-5)}, "invite_at"),
    ({"unit_price": 0}, "unit_price"),
    ({"unit_price": -5}, "unit_price"),
    ({"unit_price": 12.5}, "unit_price"),
    ({"unit_price": "100"}, "unit_price"),
    ({"minimum_reservations": 0}, "minimum_reservations"),
    ({"currency": "xyz"}, "currency"),
    ({"min_decrement": 0}, "min_decrement"),
    ({"min_decrement": 999_999_999_999}, "min_decrement"),  # beyond the stored range: 422, never a 500
    ({"unit_price": 2**31}, "unit_price"),
    ({"title": ""}, "title"),
    ({"title": "x" * 201}, "title"),
    ({"title": "line\r\nbreak"}, "title"),
    ({"closes_at": "2030-01-01T00:00:00"}, "closes_at"),
    ({"status": "closed"}, "status"),
    ({"seller_id": "someone"}, "seller_id"),
    ({"reservation_count": 100}, "reservation_count"),
])
def test_offer_rules_answer_422_naming_the_field(cobuy, change, field):
    seller = cobuy.register_seller()
    body = {"title": "Widget", "currency": "usd", "unit_price": 100, "minimum_reservations": 2,
            "closes_at": instant(3600), **change}
    reply = cobuy.post("/api/v1/offers", json=body, headers=cobuy.auth(seller))
    assert reply.status_code == 422, reply.text
    problem = reply.json()
    assert problem["code"] == "validation_failed" and field in problem["errors"]


def test_jpy_prices_are_whole_yen(cobuy):
    offer = cobuy.create_offer(cobuy.register_seller(), currency="JPY", unit_price=1500)
    assert offer["currency"] == "jpy"
    page = cobuy.get(f"/offers/{offer['id']}").text
    assert "¥1,500" in page


def test_unknown_offer_is_a_404_problem(cobuy):
    reply = cobuy.get("/api/v1/offers/no-such-offer")
    assert reply.status_code == 404 and reply.json()["code"] == "offer_not_found"


def test_offers_list_newest_first_filtered_and_paginated(cobuy):
    seller = cobuy.register_seller()
    ids = [cobuy.create_offer(seller)["id"] for _ in range(3)]
    reply = cobuy.get("/api/v1/offers", params={"status": "open", "per_page": 2})
    body = reply.json()
    assert reply.status_code == 200 and len(body["items"]) == 2 and body["total"] >= 3
    assert [o["id"] for o in body["items"]] == ids[::-1][:2]
    second = cobuy.get("/api/v1/offers", params={"status": "open", "per_page": 2, "page": 2}).json()
    assert second["items"][0]["id"] == ids[0]
    assert all(o["status"] == "closed" for o in cobuy.get("/api/v1/offers", params={"status": "closed"}).json()["items"])
    assert cobuy.get("/api/v1/offers", params={"status": "bogus"}).status_code == 422


def test_home_page_shows_the_offer_with_its_condition_and_escapes_titles(cobuy):
    seller = cobuy.register_seller(name="<b>Bold</b> Seller")
    offer = cobuy.create_offer(seller, title="<script>alert(1)</script> Teapot", unit_price=123456,
                               minimum_reservations=7)
    page = cobuy.home_showing(offer["id"])
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Teapot" in page
    assert "<script>alert(1)</script>" not in page
    assert "&lt;b&gt;Bold&lt;/b&gt; Seller" in page
    assert "$1,234.56" in page and f'href="/offers/{offer["id"]}"' in page
    assert "UTC" in page


def test_the_gateway_keeps_public_pages_half_a_second_but_never_shares_a_visitors_form_token(cobuy):
    import re
    import time

    import requests

    offer = cobuy.create_offer(cobuy.register_seller())
    cobuy.home_showing(offer["id"])
    visitor = requests.Session()  # one kept-alive connection: one gateway worker, whose cache it is
    first = visitor.get(cobuy.url("/"))
    second = visitor.get(cobuy.url("/"))
    assert first.status_code == second.status_code == 200 and second.headers.get("X-Cache") == "HIT"
    assert "Set-Cookie" not in second.headers and second.text == first.text
    time.sleep(0.6)
    later = visitor.get(cobuy.url("/"))
    assert later.headers.get("X-Cache") is None  # kept no longer than half a second
    tokens, cookies = set(), set()
    for _ in range(3):  # the offer page's body may be kept (ADR 0013), but each new visitor gets a token
        reply = requests.get(cobuy.url(f"/offers/{offer['id']}"))  # of its own, for a cookie of its own
        assert reply.status_code == 200 and reply.headers["Cache-Control"] == "private, no-cache"
        cookies.add(reply.cookies["cobuy_csrf"])
        tokens.add(re.search(r'name="csrf_token" value="([^"]+)"', reply.text).group(1))
    assert len(tokens) == len(cookies) == 3


def test_openapi_document_describes_the_whole_api(cobuy):
    doc = cobuy.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path in ("/api/v1/sellers", "/api/v1/sellers/me", "/api/v1/offers", "/api/v1/offers/{offer_id}",
                 "/api/v1/offers/{offer_id}/counter-offers", "/api/v1/offers/{offer_id}/reservations",
                 "/api/v1/reservations/{reservation_id}", "/api/v1/webhooks", "/api/v1/webhooks/{endpoint_id}",
                 "/api/v1/webhooks/{endpoint_id}/deliveries"):
        assert path in doc["paths"], path


def test_internal_routes_are_not_reachable_through_the_gateway(cobuy):
    assert cobuy.post("/internal/auth", json={"api_key": "x"}).status_code == 404
    assert cobuy.get("/internal/offers/x").status_code == 404
