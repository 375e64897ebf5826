"""catalog's use cases on a real SQLite session, no server: sellers and their keys, publishing,
the published offer for look-ups, and the read model built from other services' events."""
from __future__ import annotations

from datetime import timedelta

import pytest

from services.catalog import offers as use_cases, sellers
from services.catalog.tables import MIGRATIONS, outbox
from shared import clock
from shared.envelope import Envelope
from shared.problems import Problem
from tests.use_cases import T0, recorded

OFFER = {"title": "Kettle", "description": "", "currency": "USD", "unit_price": 5000, "minimum_reservations": 3,
         "closes_at": T0 + timedelta(days=10)}


@pytest.fixture
def sessions(sessions_for, at):
    at(T0)
    return sessions_for("catalog", MIGRATIONS)


@pytest.fixture
def seller(sessions) -> dict:
    with sessions.begin() as session:
        return sellers.register_seller(session, "First", "First@Example.org")


@pytest.fixture
def offer(sessions, seller) -> dict:
    with sessions.begin() as session:
        return use_cases.publish_offer(session, seller, OFFER)


def apply(sessions, handler, type_: str, data: dict) -> None:
    with sessions.begin() as session:
        handler(session, Envelope(type_, data, "auction"))


def read(sessions, offer_id: str) -> dict:
    with sessions() as session:
        return use_cases.get_offer(session, offer_id)


def test_a_registered_seller_is_announced_and_reached_by_its_key(sessions, seller):
    [registered] = recorded(sessions, outbox, "SellerRegistered")
    assert registered.data["seller_id"] == seller["id"] and registered.data["email"] == "first@example.org"
    with sessions() as session:
        assert sellers.seller_by_key(session, seller["api_key"])["id"] == seller["id"]
        assert sellers.seller_by_key(session, "cb_wrong") is None


def test_a_second_seller_with_the_same_email_in_another_case_is_refused(sessions, seller):
    with pytest.raises(Problem) as refused, sessions.begin() as session:
        sellers.register_seller(session, "Again", "first@EXAMPLE.org")
    assert (refused.value.status, refused.value.code) == (409, "email_taken")
    assert len(recorded(sessions, outbox, "SellerRegistered")) == 1


def test_a_rotated_key_replaces_the_old_one(sessions, seller):
    with sessions.begin() as session:
        new_key = sellers.rotate_key(session, "FIRST@example.org")
        assert sellers.rotate_key(session, "nobody@example.org") is None
    with sessions() as session:
        assert sellers.seller_by_key(session, seller["api_key"]) is None
        assert sellers.seller_by_key(session, new_key)["id"] == seller["id"]


def test_a_published_offer_is_held_by_its_seller_and_invites_at_the_default_date(sessions, seller, offer):
    assert (offer["condition"]["seller_id"], offer["status"], offer["currency"]) == (seller["id"], "open", "usd")
    assert offer["invite_at"] == T0 + timedelta(days=8)
    assert [h["kind"] for h in offer["history"]] == ["initial"]
    [published] = recorded(sessions, outbox, "OfferPublished")
    assert published.data["condition"]["seller_email"] == "first@example.org"
    assert published.data["invite_at"] == clock.iso(T0 + timedelta(days=8))


def test_an_offer_asking_for_verified_emails_says_so_in_its_event_its_look_up_and_its_json(sessions, seller):
    with sessions.begin() as session:
        offer = use_cases.publish_offer(session, seller, {**OFFER, "verify_emails": True})
        looked_up = use_cases.published_data_for(session, offer["id"])
    [published] = recorded(sessions, outbox, "OfferPublished")
    assert (offer["verify_emails"], published.data["verify_emails"], looked_up["verify_emails"]) == (True, True, True)


def test_an_offer_verifies_no_emails_by_default(sessions, offer):
    assert offer["verify_emails"] is False
    assert recorded(sessions, outbox, "OfferPublished")[0].data["verify_emails"] is False


@pytest.mark.parametrize("term, field", [
    ({"closes_at": T0}, "closes_at"),
    ({"invite_at": T0 + timedelta(days=11)}, "invite_at"),
])
def test_an_offer_with_an_impossible_term_is_refused_naming_the_field(sessions, seller, term, field):
    with pytest.raises(Problem) as refused, sessions.begin() as session:
        use_cases.publish_offer(session, seller, {**OFFER, **term})
    assert (refused.value.status, refused.value.code) == (422, "validation_failed")
    assert list(refused.value.extra["errors"]) == [field]
    assert recorded(sessions, outbox, "OfferPublished") == []


def intercepted(offer_id: str, version: int, price: int) -> dict:
    return {"offer_id": offer_id, "version": version, "kind": "voluntary", "condition": {
        "seller_id": "s2", "seller_name": "Rival", "unit_price": price, "minimum_reservations": 3,
        "since": clock.iso(T0 + timedelta(minutes=version))}}


def test_interceptions_move_the_condition_in_version_order_and_keep_each_in_the_history(sessions, offer):
    for version, price in ((2, 4800), (1, 4900), (2, 4800)):  # late, then redelivered
        apply(sessions, use_cases.on_offer_intercepted, "OfferIntercepted", intercepted(offer["id"], version, price))
    shown = read(sessions, offer["id"])
    assert (shown["condition"]["seller_name"], shown["condition"]["unit_price"]) == ("Rival", 4800)
    assert [h["unit_price"] for h in shown["history"]] == [5000, 4900, 4800]


def test_the_published_offer_for_look_ups_keeps_the_initial_condition(sessions, offer):
    apply(sessions, use_cases.on_offer_intercepted, "OfferIntercepted", intercepted(offer["id"], 1, 4900))
    with sessions() as session:
        data = use_cases.published_data_for(session, offer["id"])
        assert use_cases.published_data_for(session, "o-none") is None
    assert data == recorded(sessions, outbox, "OfferPublished")[0].data


def test_an_invitation_marks_the_offer_invited(sessions, offer):
    apply(sessions, use_cases.on_offer_invited, "OfferInvited", {"offer_id": offer["id"]})
    assert read(sessions, offer["id"])["invited"] is True


def test_counts_apply_in_version_order_and_the_close_sets_the_final_one(sessions, offer):
    for count, version in ((2, 2), (1, 1)):
        apply(sessions, use_cases.on_count_changed, "ReservationCountChanged",
              {"offer_id": offer["id"], "count": count, "version": version})
    assert read(sessions, offer["id"])["reservation_count"] == 2
    apply(sessions, use_cases.on_offer_closed, "OfferClosed", {
        "offer_id": offer["id"], "outcome": "failed", "final_count": 2, "closed_at": clock.iso(OFFER["closes_at"])})
    apply(sessions, use_cases.on_count_changed, "ReservationCountChanged",
          {"offer_id": offer["id"], "count": 5, "version": 3})  # too late: the close is final
    shown = read(sessions, offer["id"])
    assert (shown["status"], shown["outcome"], shown["reservation_count"]) == ("closed", "failed", 2)


def test_the_list_shows_open_offers_newest_first_and_closed_ones_apart(sessions, seller, offer, at):
    at(T0 + timedelta(minutes=1))
    with sessions.begin() as session:
        newer = use_cases.publish_offer(session, seller, OFFER)
    apply(sessions, use_cases.on_offer_closed, "OfferClosed", {
        "offer_id": offer["id"], "outcome": "concluded", "final_count": 3, "closed_at": clock.iso(T0)})
    with sessions() as session:
        everything, total = use_cases.list_offers(session, None, 1, 10)
        closed, closed_total = use_cases.list_offers(session, "closed", 1, 10, with_history=False)
    assert ([o["id"] for o in everything], total) == ([newer["id"], offer["id"]], 2)
    assert ([o["id"] for o in closed], closed_total, closed[0]["history"]) == ([offer["id"]], 1, [])


def test_every_change_of_the_read_model_raises_the_version_the_live_streams_follow(sessions, offer, at):
    def changed_since(instant):
        with sessions() as session:
            return {f["offer"]["id"]: f["version"] for f in use_cases.changed_offers(session, instant, None, 10)}

    assert changed_since(T0) == {offer["id"]: 1}
    at(T0 + timedelta(minutes=1))
    apply(sessions, use_cases.on_count_changed, "ReservationCountChanged",
          {"offer_id": offer["id"], "count": 1, "version": 1})
    apply(sessions, use_cases.on_count_changed, "ReservationCountChanged",
          {"offer_id": offer["id"], "count": 1, "version": 1})  # redelivered: no change, no new version
    apply(sessions, use_cases.on_offer_intercepted, "OfferIntercepted", intercepted(offer["id"], 1, 4900))
    apply(sessions, use_cases.on_offer_invited, "OfferInvited", {"offer_id": offer["id"]})
    apply(sessions, use_cases.on_offer_closed, "OfferClosed", {
        "offer_id": offer["id"], "outcome": "failed", "final_count": 1, "closed_at": clock.iso(T0)})
    assert changed_since(T0 + timedelta(minutes=1)) == {offer["id"]: 5}
    assert changed_since(T0 + timedelta(minutes=2)) == {}


def test_a_seller_registered_in_japanese_is_told_so_to_the_mailer(sessions):
    with sessions.begin() as session:
        registered = sellers.register_seller(session, "山田商店", "yamada@example.jp", "ja")
    assert registered["lang"] == "ja"
    [event] = recorded(sessions, outbox, "SellerRegistered")
    assert event.data["lang"] == "ja"
