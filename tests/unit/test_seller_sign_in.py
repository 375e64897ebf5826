"""Sign-in links and seller sessions (catalog's signin.py) on a real SQLite session, the clock moved
by the test: single use, 15 minutes, 12 hours, revocation, only hashes stored, nothing for a stranger."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from services.catalog import sellers, signin
from services.catalog.tables import outbox, seller_sessions, sign_in_links
from tests.unit.test_catalog_use_cases import seller, sessions  # noqa: F401 (fixtures)
from tests.use_cases import T0, recorded


def mailed_token(sessions, seller, next_path=None) -> str:
    with sessions.begin() as session:
        assert signin.request_link(session, seller["email"].upper(), next_path) is True
    return recorded(sessions, outbox, "SignInLinkRequested")[-1].data["token"]


def redeem(sessions, token):
    with sessions.begin() as session:
        return signin.redeem_link(session, token)


def seller_of(sessions, session_token):
    with sessions() as session:
        return signin.seller_for_session(session, session_token)


def test_an_unknown_address_gets_no_link_and_no_event(sessions, seller):
    with sessions.begin() as session:
        assert signin.request_link(session, "stranger@example.org") is False
    assert recorded(sessions, outbox, "SignInLinkRequested") == []


def test_a_link_is_stored_as_its_hash_and_opens_exactly_one_session(sessions, seller):
    token = mailed_token(sessions, seller, "/offers/1")
    [event] = recorded(sessions, outbox, "SignInLinkRequested")
    assert event.data["email"] == "first@example.org" and event.data["expires_at"] == (T0 + timedelta(minutes=15)).isoformat()
    with sessions() as session:
        stored = session.execute(select(sign_in_links)).one()
        assert token not in stored and stored.token_hash != token and signin.link_state(session, token) == "usable"
    session_token, next_path = redeem(sessions, token)
    assert next_path == "/offers/1" and seller_of(sessions, session_token)["id"] == seller["id"]
    assert redeem(sessions, token) is None
    with sessions() as session:
        assert signin.link_state(session, token) == "used"
        assert session_token not in session.execute(select(seller_sessions)).one()


def test_a_link_works_until_15_minutes_and_not_at_15(sessions, seller, at):
    early, late = mailed_token(sessions, seller), mailed_token(sessions, seller)
    at(T0 + timedelta(minutes=14, seconds=59))
    assert redeem(sessions, early) is not None
    at(T0 + timedelta(minutes=15))
    assert redeem(sessions, late) is None
    with sessions() as session:
        assert signin.link_state(session, late) == "expired"


def test_a_session_lasts_12_hours_and_ends_at_once_when_revoked(sessions, seller, at):
    first, _ = redeem(sessions, mailed_token(sessions, seller))
    second, _ = redeem(sessions, mailed_token(sessions, seller))
    at(T0 + timedelta(hours=11, minutes=59))
    assert seller_of(sessions, first) is not None
    with sessions.begin() as session:
        signin.revoke_session(session, second)
    assert seller_of(sessions, second) is None
    at(T0 + timedelta(hours=12))
    assert seller_of(sessions, first) is None


def test_a_next_path_to_another_site_is_stored_as_the_dashboard(sessions, seller):
    assert redeem(sessions, mailed_token(sessions, seller, "//evil.example"))[1] == "/dashboard"


@pytest.mark.parametrize("token", [None, "", "x" * 10_000, "not-a-token"])
def test_anything_but_a_live_token_is_nobody(sessions, seller, token):
    assert redeem(sessions, token) is None and seller_of(sessions, token) is None
    with sessions() as session:
        assert signin.link_state(session, token) == "unknown"


def test_new_links_sweep_links_and_sessions_a_day_past_their_end(sessions, seller, at):
    redeem(sessions, mailed_token(sessions, seller))
    at(T0 + timedelta(days=2))
    mailed_token(sessions, seller)
    with sessions() as session:
        assert len(session.execute(select(sign_in_links)).all()) == 1
        assert session.execute(select(seller_sessions)).all() == []
