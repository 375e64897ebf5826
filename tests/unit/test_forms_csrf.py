"""The forms' CSRF protection (shared/csrf.py, services/catalog/csrf.py): a double-submit cookie
whose token is an HMAC of its secret. catalog's own app on SQLite, through Flask's test client."""
from __future__ import annotations

import hashlib
import hmac
import re
from datetime import timedelta

import pytest
from itsdangerous import URLSafeTimedSerializer

from services.catalog import offers, sellers
from services.catalog.app import create_app
from services.catalog.tables import MIGRATIONS
from shared import clock, config as config_module, csrf
from shared.runtime import Runtime

TOKEN = re.compile(r'name="csrf_token" value="([^"]*)"')
VERIFY = "/reservations/r1/verify"  # a form whose handler refuses a bad link itself, asking nothing of others


@pytest.fixture
def catalog(tmp_path, monkeypatch):
    for name in ("COBUY_DATABASE_URL", "COBUY_AMQP_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COBUY_DATA_DIR", str(tmp_path))
    runtime = Runtime.create("catalog", config_module.load())
    runtime.migrate(MIGRATIONS)
    yield runtime
    runtime.engine.dispose()


@pytest.fixture
def app(catalog):
    return create_app(catalog)


@pytest.fixture
def offer_path(catalog):
    with catalog.sessions.begin() as session:
        seller = sellers.register_seller(session, "Form Seller", "form@example.org")
        offer = offers.publish_offer(session, seller, {
            "title": "Bike", "description": "", "currency": "usd", "unit_price": 10000,
            "minimum_reservations": 3, "closes_at": clock.now() + timedelta(hours=1)})
    return f"/offers/{offer['id']}"


def token_of(page) -> str:
    return TOKEN.search(page.get_data(as_text=True)).group(1)


def test_a_visitor_gets_a_csrf_cookie_and_its_hmac_in_the_form_and_no_flask_session(app, offer_path):
    client = app.test_client()
    page = client.get(offer_path)
    cookies = page.headers.getlist("Set-Cookie")
    assert not [c for c in cookies if c.startswith("session=")]  # nothing signed into a session
    [cookie] = [c for c in cookies if c.startswith("cobuy_csrf=")]
    assert {"HttpOnly", "SameSite=Lax", "Path=/"} <= {p.strip() for p in cookie.split(";")}
    secret = client.get_cookie("cobuy_csrf").value
    key = csrf.form_key(app.config["COBUY"].internal_secret)
    assert token_of(page) == csrf.token_for(key, secret)
    again = client.get(offer_path)  # the same browser keeps its secret, and so its token
    assert "Set-Cookie" not in again.headers and token_of(again) == token_of(page)


def test_a_post_is_taken_only_with_the_token_of_its_own_cookie(app, offer_path):
    visitor, other = app.test_client(), app.test_client()
    token, others = token_of(visitor.get(offer_path)), token_of(other.get(offer_path))
    assert token != others
    taken = visitor.post(VERIFY, data={"csrf_token": token, "token": "zz"})
    assert taken.status_code == 403  # past the CSRF check: the verify link itself is refused
    by_header = visitor.post(VERIFY, data={"token": "zz"}, headers={"X-CSRFToken": token})
    assert by_header.status_code == 403
    assert visitor.post(VERIFY, data={"csrf_token": others, "token": "zz"}).status_code == 400  # another's token
    assert visitor.post(VERIFY, data={"token": "zz"}).status_code == 400  # none
    assert visitor.post(VERIFY, data={"csrf_token": "0" * 64, "token": "zz"}).status_code == 400
    forged = app.test_client()  # another site's form: the right token, but the browser has no cookie
    assert forged.post(VERIFY, data={"csrf_token": token, "token": "zz"}).status_code == 400
    forged.set_cookie("cobuy_csrf", "f" * 32)  # a planted secret of its own: the token is not its HMAC
    assert forged.post(VERIFY, data={"csrf_token": token, "token": "zz"}).status_code == 400
    assert "This form has expired" in forged.post(VERIFY, data={"token": "zz"}).get_data(as_text=True)


def test_a_token_of_the_previous_release_with_its_session_cookie_is_refused(app):
    """The previous release's Flask-WTF token, its secret in Flask's session: a planted pair of them
    must not pass (it would skip the binding of a seller's token to the session)."""
    client = app.test_client()
    with client.session_transaction() as session:
        session["csrf_token"] = "a" * 40
    legacy = URLSafeTimedSerializer(app.secret_key, salt="wtf-csrf-token").dumps("a" * 40)
    assert client.post(VERIFY, data={"csrf_token": legacy, "token": "zz"}).status_code == 400
    assert client.post(VERIFY, data={"csrf_token": legacy[:-2] + "xx", "token": "zz"}).status_code == 400


def test_asked_by_the_gateway_the_page_carries_the_slot_and_no_cookie_and_may_be_kept(app, offer_path):
    page = app.test_client().get(offer_path, headers={csrf.EDGE_FILLS: "1"})
    assert page.status_code == 200 and token_of(page) == csrf.SLOT
    assert page.headers[csrf.HAS_SLOTS] == "1" and "Set-Cookie" not in page.headers
    assert "public" in page.headers["Cache-Control"]
    direct = app.test_client().get(offer_path)  # not asked: catalog fills it, and nobody shares it
    assert csrf.HAS_SLOTS not in direct.headers and csrf.SLOT not in direct.get_data(as_text=True)
    assert direct.headers["Cache-Control"] == "private, no-cache"


def test_a_post_never_gets_the_slot_even_if_a_caller_asks(app):
    reply = app.test_client().post(VERIFY, data={"token": "zz"}, headers={csrf.EDGE_FILLS: "1"})
    assert reply.status_code == 400 and csrf.HAS_SLOTS not in reply.headers


def test_the_token_is_compared_whole_and_a_malformed_secret_is_never_valid():
    key = csrf.form_key("k")
    secret = csrf.new_secret()
    good = csrf.token_for(key, secret)
    assert good == hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()  # HMAC-SHA256 of the secret
    assert csrf.valid(key, secret, good)
    assert not csrf.valid(key, secret, good[:-1]) and not csrf.valid(key, secret, good + "0")
    assert not csrf.valid(key, secret, "") and not csrf.valid(key, secret, None)
    assert not csrf.valid(csrf.form_key("other"), secret, good)
    assert not csrf.valid(key, secret.upper(), csrf.token_for(key, secret.upper()))  # not a secret we give
    assert not csrf.valid(key, None, good) and not csrf.valid(key, "", csrf.token_for(key, ""))
    assert not csrf.valid(key, secret, "\u00e9" * 64)
