"""The seller's session cookie under https (COBUY_PUBLIC_URL https): Secure, HttpOnly, SameSite=Lax,
12 hours; catalog's own app on SQLite, through Flask's test client."""
from __future__ import annotations

import re

import pytest

from services.catalog import sellers, signin
from services.catalog.app import create_app
from services.catalog.tables import MIGRATIONS, outbox
from shared import config as config_module
from shared.runtime import Runtime
from tests.use_cases import recorded


@pytest.fixture
def catalog(tmp_path, monkeypatch):
    for name in ("COBUY_DATABASE_URL", "COBUY_AMQP_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COBUY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COBUY_PUBLIC_URL", "https://cobuy.example")
    runtime = Runtime.create("catalog", config_module.load())
    runtime.migrate(MIGRATIONS)
    yield runtime
    runtime.engine.dispose()


def test_under_https_the_session_cookie_is_secure_httponly_lax_for_12_hours(catalog):
    with catalog.sessions.begin() as session:
        seller = sellers.register_seller(session, "Secure Seller", "secure@example.org")
        signin.request_link(session, seller["email"])
    token = recorded(catalog.sessions, outbox, "SignInLinkRequested")[-1].data["token"]
    client = create_app(catalog).test_client()
    page = client.get(f"/sellers/sign-in/link?token={token}")
    assert page.headers["Referrer-Policy"] == "no-referrer" and page.headers["X-Frame-Options"] == "DENY"
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)
    opened = client.post("/sellers/sign-in/link", data={"token": token, "csrf_token": csrf})
    assert opened.status_code == 303 and opened.headers["Location"] == "/dashboard"
    [cookie] = [c for c in opened.headers.getlist("Set-Cookie") if c.startswith("cobuy_seller=")]
    assert {"Secure", "HttpOnly", "SameSite=Lax", "Max-Age=43200", "Path=/"} <= {p.strip() for p in cookie.split(";")}
    assert "Secure" in page.headers.get("Set-Cookie", "")  # Flask's own cookie (the CSRF token's) too


def csrf_of(page) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)


def test_signing_in_renews_the_forms_csrf_secret_so_a_token_known_before_it_is_worthless_after(catalog):
    """Session fixation of the CSRF secret: whoever planted or read the visitor's cookie before the
    sign-in (a shared computer, a sibling subdomain) must not hold a token that works for the seller."""
    with catalog.sessions.begin() as session:
        seller = sellers.register_seller(session, "Fixed Seller", "fixed@example.org")
        signin.request_link(session, seller["email"])
    token = recorded(catalog.sessions, outbox, "SignInLinkRequested")[-1].data["token"]
    client = create_app(catalog).test_client()
    before = csrf_of(client.get(f"/sellers/sign-in/link?token={token}"))
    assert client.post("/sellers/sign-in/link", data={"token": token, "csrf_token": before}).status_code == 303
    assert client.post("/dashboard/key", data={"csrf_token": before}).status_code == 400
    after = csrf_of(client.get("/dashboard"))
    assert after != before and client.post("/dashboard/key", data={"csrf_token": after}).status_code == 200


def test_signing_in_again_on_a_browser_ends_the_session_it_replaces_on_the_server(catalog):
    """The browser forgets the old cookie; the server must too, or a copy of it lives on for 12 hours."""
    with catalog.sessions.begin() as session:
        seller = sellers.register_seller(session, "Twice Seller", "twice@example.org")
    client, cookies = create_app(catalog).test_client(), []
    for _ in range(2):
        with catalog.sessions.begin() as session:
            signin.request_link(session, seller["email"])
        token = recorded(catalog.sessions, outbox, "SignInLinkRequested")[-1].data["token"]
        page = client.get(f"/sellers/sign-in/link?token={token}")
        assert client.post("/sellers/sign-in/link", data={"token": token, "csrf_token": csrf_of(page)}).status_code == 303
        cookies.append(client.get_cookie("cobuy_seller").value)
    with catalog.sessions() as session:
        assert signin.seller_for_session(session, cookies[0]) is None
        assert signin.seller_for_session(session, cookies[1])["id"] == seller["id"]
