"""reservation's use cases on a real SQLite session, no server: reserve, repeat, re-reserve,
idempotency keys, cancel, the holder's list, the close cut and the count."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from services.reservation import reservations as use_cases
from services.reservation.recounts import note_recounts, recount_pending
from services.reservation.tables import MIGRATIONS, offers, outbox, pending_recounts, reservations, tallies
from shared.envelope import Envelope
from shared.problems import Problem
from tests.use_cases import SECRET, T0, offer_published, recorded

HOLDER = {"id": "s1", "name": "First", "email": "first@example.org"}


@pytest.fixture
def sessions(sessions_for, at):
    at(T0 + timedelta(minutes=1))
    sessions = sessions_for("reservation", MIGRATIONS)
    with sessions.begin() as session:
        use_cases.on_offer_published(session, offer_published("o1"))
    return sessions


def reserve(sessions, email="ann@example.org", name="Ann", key=None, offer_id="o1", lang="en"):
    with sessions.begin() as session:
        return use_cases.reserve(session, offer_id, name, email, key, SECRET, lang)


def cancel(sessions, reservation):
    with sessions.begin() as session:
        use_cases.cancel(session, reservation["id"], reservation["cancel_token"], SECRET)


def rows(sessions) -> list:
    with sessions() as session:
        return session.execute(select(reservations)).all()


def test_reserving_A_then_a_keeps_one_reservation_and_one_event(sessions):
    first, first_status = reserve(sessions, "Ann@Example.org")
    repeat, repeat_status = reserve(sessions, "ann@example.org")
    assert (first_status, repeat_status) == (201, 200)
    assert repeat == first
    assert len(rows(sessions)) == 1
    assert [e.data["reservation_id"] for e in recorded(sessions, outbox, "ReservationAccepted")] == [first["id"]]


def test_reserving_again_after_a_cancel_makes_the_same_reservation_active_and_announces_it_again(sessions):
    first, _ = reserve(sessions)
    cancel(sessions, first)
    again, status = reserve(sessions)
    assert (again["id"], again["status"], status) == (first["id"], "active", 201)
    assert len(recorded(sessions, outbox, "ReservationAccepted")) == 2


def test_a_replayed_idempotency_key_gets_the_first_answer_with_its_status(sessions):
    first = reserve(sessions, key="k1")
    assert reserve(sessions, key="k1") == first
    assert first[1] == 201
    assert len(recorded(sessions, outbox, "ReservationAccepted")) == 1


def test_an_idempotency_key_sent_with_another_body_is_refused(sessions):
    reserve(sessions, key="k1")
    with pytest.raises(Problem) as refused:
        reserve(sessions, "bob@example.org", "Bob", key="k1")
    assert (refused.value.status, refused.value.code) == (422, "idempotency_key_mismatch")
    assert refused.value.extra == {} and len(rows(sessions)) == 1  # nothing of the first reservation


def test_an_offer_reservation_has_not_heard_of_is_unknown(sessions):
    with pytest.raises(use_cases.OfferUnknown):
        reserve(sessions, offer_id="o2")


def test_from_the_deadline_an_offer_refuses_reservations(sessions, at):
    at(T0 + timedelta(minutes=10))
    with pytest.raises(Problem) as refused:
        reserve(sessions)
    assert (refused.value.status, refused.value.code) == (409, "offer_closed")
    assert rows(sessions) == []


def test_a_cancel_with_a_wrong_token_is_refused_and_changes_nothing(sessions):
    reservation, _ = reserve(sessions)
    with pytest.raises(Problem) as refused:
        cancel(sessions, {**reservation, "cancel_token": "0" * 40})
    assert (refused.value.status, refused.value.code) == (403, "wrong_cancel_token")
    assert rows(sessions)[0].status == "active"
    assert recorded(sessions, outbox, "ReservationCancelled") == []


def test_a_cancel_of_no_reservation_is_not_found(sessions):
    with pytest.raises(Problem) as refused:
        cancel(sessions, {"id": "r0", "cancel_token": use_cases.cancel_token(SECRET, "r0")})
    assert (refused.value.status, refused.value.code) == (404, "reservation_not_found")


def test_cancelling_twice_cancels_once_with_one_event(sessions):
    reservation, _ = reserve(sessions)
    cancel(sessions, reservation)
    cancel(sessions, reservation)
    assert rows(sessions)[0].status == "cancelled"
    assert [e.data["reservation_id"] for e in recorded(sessions, outbox, "ReservationCancelled")] == [reservation["id"]]


def test_from_the_deadline_a_reservation_can_no_longer_be_cancelled(sessions, at):
    reservation, _ = reserve(sessions)
    at(T0 + timedelta(minutes=10))
    with pytest.raises(Problem) as refused:
        cancel(sessions, reservation)
    assert (refused.value.status, refused.value.code) == (409, "offer_closed")


def test_the_holder_lists_only_active_reservations_and_nobody_else_lists_them(sessions):
    kept, _ = reserve(sessions, "ann@example.org")
    cancel(sessions, reserve(sessions, "bob@example.org", "Bob")[0])
    with sessions() as session:
        assert [r["id"] for r in use_cases.list_for_holder(session, "o1", HOLDER)] == [kept["id"]]
        with pytest.raises(Problem) as refused:
            use_cases.list_for_holder(session, "o1", {**HOLDER, "id": "s2"})
        assert (refused.value.status, refused.value.code) == (403, "not_holder")
        with pytest.raises(Problem) as missing:
            use_cases.list_for_holder(session, "o2", HOLDER)
        assert (missing.value.status, missing.value.code) == (404, "offer_not_found")


def test_an_interception_makes_the_new_holder_the_one_who_lists(sessions):
    intercepted = {"offer_id": "o1", "version": 1, "condition": {
        "seller_id": "s2", "seller_name": "Rival", "unit_price": 4900, "minimum_reservations": 3}}
    with sessions.begin() as session:
        use_cases.on_offer_intercepted(session, Envelope("OfferIntercepted", intercepted, "auction"))
    with sessions() as session:
        assert use_cases.list_for_holder(session, "o1", {**HOLDER, "id": "s2"}) == []
        assert use_cases.find_offer(session, "o1").unit_price == 4900


def test_the_deadline_cut_lists_only_active_reservations_and_closes_the_offer(sessions):
    kept, _ = reserve(sessions, "ann@example.org")
    cancel(sessions, reserve(sessions, "bob@example.org", "Bob")[0])
    with sessions.begin() as session:
        use_cases.on_deadline_reached(session, Envelope("OfferDeadlineReached", {"offer_id": "o1"}, "auction"))
    [finalised] = recorded(sessions, outbox, "ReservationsFinalised")
    assert finalised.data["final_count"] == 1
    assert finalised.data["reservations"] == [{"id": kept["id"], "name": "Ann", "email": "ann@example.org",
                                                  "lang": "en"}]
    with pytest.raises(Problem) as refused:  # closed by the cut, before the deadline
        reserve(sessions, "cid@example.org", "Cid")
    assert refused.value.code == "offer_closed"


def test_the_deadline_cut_of_an_offer_never_heard_of_learns_it_from_the_event(sessions):
    snapshot = offer_published("o2").data
    with sessions.begin() as session:
        use_cases.on_deadline_reached(session, Envelope("OfferDeadlineReached",
                                                        {"offer_id": "o2", "offer": snapshot}, "auction"))
    with sessions() as session:
        assert use_cases.find_offer(session, "o2").closed
    assert recorded(sessions, outbox, "ReservationsFinalised")[0].data["final_count"] == 0


def count_events(sessions) -> list[tuple[int, int]]:
    return [(e.data["count"], e.data["version"]) for e in recorded(sessions, outbox, "ReservationCountChanged")]


def test_a_recount_records_a_new_version_only_when_the_count_moved(sessions):
    reserve(sessions)
    for _ in range(2):
        with sessions.begin() as session:
            use_cases.refresh_tally(session, "o1")
    reserve(sessions, "bob@example.org", "Bob")
    with sessions.begin() as session:
        use_cases.refresh_tally(session, "o1")
    assert count_events(sessions) == [(1, 1), (2, 2)]


def test_an_offer_whose_reservations_were_sent_is_noted_recounted_and_its_note_cleared(sessions):
    reserve(sessions)
    with sessions.begin() as session:
        note_recounts(session, recorded(sessions, outbox))
    recount_pending(sessions)
    assert count_events(sessions) == [(1, 1)]
    with sessions() as session:
        assert session.execute(select(func.count()).select_from(pending_recounts)).scalar_one() == 0


def test_on_start_every_open_offer_gets_a_true_count(sessions):
    reserve(sessions)
    use_cases.refresh_open_tallies(sessions)
    with sessions() as session:
        assert session.execute(select(tallies.c.count, tallies.c.version)).one() == (1, 1)
        assert session.execute(select(offers.c.closed)).scalar_one() is False


def test_the_language_a_purchaser_reserved_in_is_kept_and_told_with_each_of_her_events(sessions):
    first, _ = reserve(sessions, "ann@example.org", lang="ja")
    cancel(sessions, first)
    reserve(sessions, "ann@example.org", lang="en")  # back again, from an English page this time
    reserve(sessions, "bob@example.org", "Bob")
    accepted = [e.data["lang"] for e in recorded(sessions, outbox, "ReservationAccepted")]
    assert accepted == ["ja", "en", "en"]
    assert [e.data["lang"] for e in recorded(sessions, outbox, "ReservationCancelled")] == ["ja"]
    with sessions.begin() as session:
        use_cases.on_deadline_reached(session, Envelope("OfferDeadlineReached", {"offer_id": "o1"}, "auction"))
    [finalised] = recorded(sessions, outbox, "ReservationsFinalised")
    assert sorted((p["email"], p["lang"]) for p in finalised.data["reservations"]) == [
        ("ann@example.org", "en"), ("bob@example.org", "en")]
