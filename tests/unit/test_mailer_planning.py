"""mailer's planning on a real SQLite session, no server: which deliveries each event plans.
Sending them is tests/integration/test_mailer.py's part."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from services.mailer.planning import Planner
from services.mailer.tables import MIGRATIONS, deliveries, sellers
from shared.envelope import Envelope
from tests.use_cases import T0

OFFER = {"title": "Kettle", "currency": "usd", "closes_at": "2030-01-01T12:10:00+00:00"}
CONDITION = {"seller_id": "s1", "seller_name": "First", "seller_email": "first@example.org", "unit_price": 5000,
             "minimum_reservations": 3, "since": "2030-01-01T12:00:00+00:00"}


@pytest.fixture
def sessions(sessions_for, at):
    at(T0)
    return sessions_for("mailer", MIGRATIONS)


def plan(sessions, type_: str, data: dict, event: Envelope | None = None) -> Envelope:
    event = event or Envelope(type_, data, "producer")
    with sessions.begin() as session:
        Planner("cobuy.example").handlers()[type_](session, event)
    return event


def planned(sessions) -> list[tuple[str, str]]:
    with sessions() as session:
        return sorted(tuple(r) for r in session.execute(select(deliveries.c.template, deliveries.c.recipient)))


def register(sessions, seller_id: str, email: str) -> None:
    plan(sessions, "SellerRegistered", {"seller_id": seller_id, "name": seller_id.upper(), "email": email,
                                        "registered_at": "2030-01-01T12:00:00+00:00"})


def test_a_registered_seller_joins_the_invitation_list_and_gets_no_mail(sessions):
    register(sessions, "s1", "first@example.org")
    with sessions() as session:
        assert session.execute(select(sellers.c.id, sellers.c.email)).all() == [("s1", "first@example.org")]
    assert planned(sessions) == []


def test_an_accepted_reservation_plans_one_confirmation_carrying_its_cancel_token(sessions):
    plan(sessions, "ReservationAccepted", {"reservation_id": "r1", "offer_id": "o1", "name": "Ann",
                                           "email": "Ann@Example.org", "cancel_token": "t" * 40,
                                           "offer": {**OFFER, "unit_price": 5000, "minimum_reservations": 3,
                                                     "holder_name": "First"}})
    assert planned(sessions) == [("reservation_accepted", "ann@example.org")]
    with sessions() as session:
        assert json.loads(session.execute(select(deliveries.c.extra)).scalar_one())["cancel_token"] == "t" * 40


def test_a_cancelled_reservation_plans_one_notice(sessions):
    plan(sessions, "ReservationCancelled", {"reservation_id": "r1", "offer_id": "o1", "name": "Ann",
                                            "email": "ann@example.org", "offer": OFFER})
    assert planned(sessions) == [("reservation_cancelled", "ann@example.org")]


def test_an_interception_plans_one_notice_to_the_old_holder(sessions):
    plan(sessions, "OfferIntercepted", {
        "offer_id": "o1", "version": 1, "kind": "voluntary",
        "condition": {**CONDITION, "seller_id": "s2", "seller_name": "Rival", "unit_price": 4990},
        "intercepted": {k: CONDITION[k] for k in ("seller_id", "seller_name", "seller_email", "unit_price",
                                                  "minimum_reservations")},
        "offer": {**OFFER, "min_decrement": 10, "reservation_count": 0}})
    assert planned(sessions) == [("offer_intercepted", "first@example.org")]


def test_an_invitation_plans_a_mail_to_every_seller_but_the_holder(sessions):
    for seller_id in ("s1", "s2", "s3"):
        register(sessions, seller_id, f"{seller_id}@example.org")
    plan(sessions, "OfferInvited", {"offer_id": "o1", **OFFER, "invite_at": "2030-01-01T12:08:00+00:00",
                                    "holder_id": "s1", "holder_name": "First", "unit_price": 5000,
                                    "minimum_reservations": 3, "min_decrement": 10, "reservation_count": 0})
    assert planned(sessions) == [("invitation", "s2@example.org"), ("invitation", "s3@example.org")]


@pytest.mark.parametrize("outcome, purchaser_template, holder_template", [
    ("concluded", "contract_concluded", "concluded_holder"),
    ("failed", "contract_failed", "failed_holder"),
])
def test_a_close_plans_one_mail_per_purchaser_and_one_to_the_holder_once(sessions, outcome, purchaser_template,
                                                                         holder_template):
    purchasers = [{"id": f"r{i}", "name": f"P{i}", "email": f"p{i}@example.org"} for i in range(3)]
    closed = {"offer_id": "o1", "title": "Kettle", "currency": "usd", "outcome": outcome, "final_count": 3,
              "closed_at": "2030-01-01T12:10:01+00:00", "closes_at": OFFER["closes_at"], "condition": CONDITION,
              "purchasers": purchasers}
    event = plan(sessions, "OfferClosed", closed)
    plan(sessions, "OfferClosed", closed, event)  # redelivered: nothing more
    assert planned(sessions) == sorted([(purchaser_template, p["email"]) for p in purchasers]
                                       + [(holder_template, "first@example.org")])


def test_an_address_no_mail_could_reach_is_skipped_and_the_others_planned(sessions):
    purchasers = [{"id": "r1", "name": "P1", "email": "x" * 300 + "@example.org"},
                  {"id": "r2", "name": "P2", "email": "p2@example.org"}]
    plan(sessions, "OfferClosed", {"offer_id": "o1", "title": "Kettle", "currency": "usd", "outcome": "failed",
                                   "final_count": 2, "closed_at": OFFER["closes_at"],
                                   "closes_at": OFFER["closes_at"], "condition": CONDITION,
                                   "purchasers": purchasers})
    assert planned(sessions) == [("contract_failed", "p2@example.org"), ("failed_holder", "first@example.org")]


def planned_languages(sessions) -> dict[tuple[str, str], str]:
    with sessions() as session:
        rows = session.execute(select(deliveries.c.template, deliveries.c.recipient, deliveries.c.extra)).all()
    return {(r.template, r.recipient): json.loads(r.extra)["lang"] for r in rows}


def test_sellers_are_invited_told_of_an_interception_and_of_the_close_in_the_language_they_registered_in(sessions):
    register(sessions, "s1", "first@example.org")  # an older SellerRegistered, with no lang: English
    for seller_id, lang in (("s2", "ja"), ("s3", "fr")):  # a language we do not speak: English too
        plan(sessions, "SellerRegistered", {"seller_id": seller_id, "name": "N", "email": f"{seller_id}@example.org",
                                            "registered_at": "2030-01-01T12:00:00+00:00", "lang": lang})
    plan(sessions, "OfferInvited", {"offer_id": "o1", **OFFER, "invite_at": "2030-01-01T12:08:00+00:00",
                                    "holder_id": "s1", "holder_name": "First", "unit_price": 5000,
                                    "minimum_reservations": 3, "min_decrement": 10, "reservation_count": 0})
    japanese_holder = {**CONDITION, "seller_id": "s2", "seller_email": "s2@example.org"}
    plan(sessions, "OfferIntercepted", {
        "offer_id": "o1", "version": 1, "kind": "voluntary", "condition": {**CONDITION, "unit_price": 4990},
        "intercepted": {k: japanese_holder[k] for k in ("seller_id", "seller_name", "seller_email", "unit_price",
                                                        "minimum_reservations")},
        "offer": {**OFFER, "min_decrement": 10, "reservation_count": 0}})
    plan(sessions, "OfferClosed", {"offer_id": "o1", "title": "Kettle", "currency": "usd", "outcome": "failed",
                                   "final_count": 2, "closed_at": "2030-01-01T12:10:01+00:00",
                                   "closes_at": OFFER["closes_at"], "condition": japanese_holder,
                                   "purchasers": [{"id": "r1", "name": "A", "email": "a@example.org", "lang": "ja"},
                                                  {"id": "r2", "name": "B", "email": "b@example.org"}]})
    assert planned_languages(sessions) == {
        ("invitation", "s2@example.org"): "ja", ("invitation", "s3@example.org"): "en",
        ("offer_intercepted", "s2@example.org"): "ja",
        ("failed_holder", "s2@example.org"): "ja",
        ("contract_failed", "a@example.org"): "ja", ("contract_failed", "b@example.org"): "en",
    }


def test_a_purchasers_confirmation_and_cancellation_keep_the_language_she_reserved_in(sessions):
    offer = {**OFFER, "unit_price": 5000, "minimum_reservations": 3, "holder_name": "First"}
    plan(sessions, "ReservationAccepted", {"reservation_id": "r1", "offer_id": "o1", "name": "Ann", "lang": "ja",
                                           "email": "ann@example.org", "cancel_token": "t", "offer": offer})
    plan(sessions, "ReservationCancelled", {"reservation_id": "r1", "offer_id": "o1", "name": "Ann", "lang": "JA",
                                            "email": "ann@example.org", "offer": OFFER})
    plan(sessions, "ReservationAccepted", {"reservation_id": "r2", "offer_id": "o1", "name": "Bo",
                                           "email": "bo@example.org", "cancel_token": "t", "offer": offer})
    assert planned_languages(sessions) == {("reservation_accepted", "ann@example.org"): "ja",
                                           ("reservation_cancelled", "ann@example.org"): "ja",
                                           ("reservation_accepted", "bo@example.org"): "en"}
