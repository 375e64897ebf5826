"""auction's use cases on a real SQLite session, no server: counter-offers and their verdicts,
the invitation and close steps on their dates, the count, the decision at the close."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from services.auction import counter_offers, handlers, steps
from services.auction.tables import MIGRATIONS, offers, outbox
from shared.envelope import Envelope
from shared.problems import Problem
from tests.use_cases import T0, offer_published, recorded

RIVAL = {"id": "s2", "name": "Rival", "email": "rival@example.org"}
HOLDER = {"id": "s1", "name": "First", "email": "first@example.org"}
INVITE_AT, CLOSES_AT = T0 + timedelta(minutes=8), T0 + timedelta(minutes=10)


@pytest.fixture
def sessions(sessions_for, at):
    at(T0 + timedelta(minutes=1))
    sessions = sessions_for("auction", MIGRATIONS)
    with sessions.begin() as session:  # held by s1 at 5000 for 3, in steps of 10
        handlers.on_offer_published(session, offer_published("o1"))
    return sessions


def counter(sessions, seller=RIVAL, price=4990, minimum=3, offer_id="o1") -> dict:
    with sessions.begin() as session:
        return counter_offers.counter_offer(session, offer_id, seller, price, minimum)


def offer_row(sessions):
    with sessions() as session:
        return session.execute(select(offers).where(offers.c.id == "o1")).one()


def test_a_better_counter_offer_takes_the_offer_and_names_the_old_holder(sessions):
    taken = counter(sessions)
    assert (taken["condition"]["seller_id"], taken["intercepted_seller_id"]) == ("s2", "s1")
    [event] = recorded(sessions, outbox, "OfferIntercepted")
    assert (event.data["version"], event.data["kind"]) == (1, "voluntary")
    assert event.data["intercepted"] == {"seller_id": "s1", "seller_name": "First",
                                         "seller_email": "first@example.org", "unit_price": 5000,
                                         "minimum_reservations": 3}
    assert (offer_row(sessions).holder_id, offer_row(sessions).unit_price) == ("s2", 4990)


def test_a_counter_offer_from_the_invitation_date_is_invited(sessions, at):
    at(INVITE_AT)
    counter(sessions)
    assert recorded(sessions, outbox, "OfferIntercepted")[0].data["kind"] == "invited"


@pytest.mark.parametrize("seller, price, minimum, when, code", [
    (RIVAL, 4991, 3, T0, "not_better"),          # less than one step
    (HOLDER, 4000, 3, T0, "already_holder"),
    (RIVAL, 4000, 4, T0, "raises_minimum"),
    (RIVAL, 4000, 3, CLOSES_AT, "offer_closed"),
])
def test_a_refused_counter_offer_is_a_409_with_its_verdict_and_changes_nothing(sessions, at, seller, price,
                                                                               minimum, when, code):
    at(when)
    with pytest.raises(Problem) as refused:
        counter(sessions, seller, price, minimum)
    assert (refused.value.status, refused.value.code) == (409, code)
    assert refused.value.extra["condition"]["seller_id"] == "s1"
    assert recorded(sessions, outbox, "OfferIntercepted") == []


def test_a_counter_offer_on_an_offer_auction_has_not_heard_of_is_not_found(sessions):
    with pytest.raises(Problem) as refused:
        counter(sessions, offer_id="o2")
    assert (refused.value.status, refused.value.code) == (404, "offer_not_found")


def test_counts_apply_in_version_order(sessions):
    for count, version in ((2, 2), (1, 1)):
        with sessions.begin() as session:
            handlers.on_count_changed(session, Envelope("ReservationCountChanged",
                                                         {"offer_id": "o1", "count": count, "version": version},
                                                         "reservation"))
    assert offer_row(sessions).reservation_count == 2


def test_each_step_runs_once_on_its_date(sessions, at):
    assert steps.run_due_steps(sessions)[0] == 0
    at(INVITE_AT)
    assert steps.run_due_steps(sessions)[0] == 1
    assert steps.run_due_steps(sessions)[0] == 0
    [invited] = recorded(sessions, outbox, "OfferInvited")
    assert (invited.data["holder_id"], offer_row(sessions).invited) == ("s1", True)
    at(CLOSES_AT)
    assert steps.run_due_steps(sessions)[0] == 1
    [deadline] = recorded(sessions, outbox, "OfferDeadlineReached")
    assert deadline.data["offer"]["condition"]["seller_id"] == "s1"
    assert offer_row(sessions).status == "closing"


def test_a_late_scheduler_runs_both_steps_in_date_order(sessions, at):
    at(CLOSES_AT)
    assert steps.run_due_steps(sessions)[0] == 2
    assert [e.type for e in recorded(sessions, outbox)] == ["OfferInvited", "OfferDeadlineReached"]


def test_an_invitation_step_of_an_offer_already_closing_invites_nobody(sessions, at):
    with sessions.begin() as session:
        session.execute(offers.update().values(status="closing"))
    at(INVITE_AT)
    assert steps.run_due_steps(sessions)[0] == 1
    assert recorded(sessions, outbox, "OfferInvited") == []


@pytest.mark.parametrize("final_count, outcome", [(2, "failed"), (3, "concluded")])
def test_the_final_tally_decides_the_close_once(sessions, final_count, outcome):
    purchasers = [{"id": f"r{i}", "name": f"P{i}", "email": f"p{i}@example.org", "lang": ("ja", "en")[i % 2]}
                  for i in range(final_count)]  # each purchaser's language goes on to their close mail
    finalised = Envelope("ReservationsFinalised", {"offer_id": "o1", "final_count": final_count,
                                                   "reservations": purchasers}, "reservation")
    for _ in range(2):
        with sessions.begin() as session:
            handlers.on_reservations_finalised(session, finalised)
    [closed] = recorded(sessions, outbox, "OfferClosed")
    assert (closed.data["outcome"], closed.data["purchasers"]) == (outcome, purchasers)
    assert closed.data["condition"]["seller_email"] == "first@example.org"
    assert (offer_row(sessions).status, offer_row(sessions).outcome) == ("closed", outcome)
