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


def sent(sessions) -> None:
    """What the relay does after publishing: note the offers whose reservations moved."""
    with sessions.begin() as session:
        note_recounts(session, recorded(sessions, outbox))


def notes(sessions) -> int:
    with sessions() as session:
        return session.execute(select(func.count()).select_from(pending_recounts)).scalar_one()


def test_recounts_of_one_offer_are_coalesced_and_the_last_count_always_follows(sessions, at):
    interval = timedelta(seconds=0.2)
    start = T0 + timedelta(minutes=1)
    ann, _ = reserve(sessions)
    sent(sessions)
    assert recount_pending(sessions, interval) is None  # the first change after a quiet spell: at once
    assert count_events(sessions) == [(1, 1)]
    reserve(sessions, "bob@example.org", "Bob")
    sent(sessions)
    at(start + timedelta(seconds=0.05))
    assert recount_pending(sessions, interval) == pytest.approx(0.15)  # put off, its note kept
    assert (count_events(sessions), notes(sessions)) == ([(1, 1)], 1)
    reserve(sessions, "cy@example.org", "Cy")
    cancel(sessions, ann)
    sent(sessions)
    at(start + timedelta(seconds=0.2))
    assert recount_pending(sessions, interval) is None
    assert (count_events(sessions), notes(sessions)) == ([(1, 1), (2, 2)], 0)  # three changes, one count


def test_a_clock_set_back_does_not_put_a_recount_off(sessions, at):
    reserve(sessions)
    sent(sessions)
    recount_pending(sessions, timedelta(seconds=0.2))
    reserve(sessions, "bob@example.org", "Bob")
    sent(sessions)
    at(T0)  # a minute before the last count
    assert recount_pending(sessions, timedelta(seconds=0.2)) is None
    assert count_events(sessions) == [(1, 1), (2, 2)]


def test_a_recount_put_off_is_due_for_each_offer_on_its_own(sessions, at):
    with sessions.begin() as session:
        use_cases.on_offer_published(session, offer_published("o2"))
    interval = timedelta(seconds=0.2)
    reserve(sessions)
    sent(sessions)
    recount_pending(sessions, interval)
    reserve(sessions, "bob@example.org", "Bob")
    reserve(sessions, "bob@example.org", "Bob", offer_id="o2")
    sent(sessions)
    assert recount_pending(sessions, interval) == pytest.approx(0.2)  # o1 waits, o2 is counted at once
    assert [(e.data["offer_id"], e.data["count"]) for e in recorded(sessions, outbox, "ReservationCountChanged")] \
        == [("o1", 1), ("o2", 1)]


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
# ---- verified reservations (SPEC §10) -------------------------------------------------------------

@pytest.fixture
def verified_offer(sessions):
    with sessions.begin() as session:
        use_cases.on_offer_published(session, offer_published("v1", verify_emails=True))
    return "v1"


def verify_link(sessions, reservation: dict) -> str:
    """The token of the link the confirmation mail carries, as the event told the mailer."""
    [accepted] = [e for e in recorded(sessions, outbox, "ReservationAccepted")
                  if e.data["reservation_id"] == reservation["id"]][-1:]
    return accepted.data["verify_token"]


def verify(sessions, reservation_id: str, token: str) -> dict:
    with sessions.begin() as session:
        return use_cases.verify(session, reservation_id, token, SECRET)


def active_count(sessions, offer_id: str) -> int:
    with sessions.begin() as session:
        use_cases.refresh_tally(session, offer_id)
    with sessions() as session:
        return session.execute(select(tallies.c.count).where(tallies.c.offer_id == offer_id)).scalar_one()


def test_on_a_verified_offer_a_reservation_starts_pending_counts_nothing_and_its_event_carries_the_link(
        sessions, verified_offer):
    reservation, status = reserve(sessions, offer_id=verified_offer)
    assert (reservation["status"], status) == ("pending", 201)
    [accepted] = recorded(sessions, outbox, "ReservationAccepted")
    assert accepted.data["status"] == "pending" and len(accepted.data["verify_token"]) == 40
    assert active_count(sessions, verified_offer) == 0


def test_the_verify_link_makes_it_active_once_and_records_one_event(sessions, verified_offer):
    reservation, _ = reserve(sessions, offer_id=verified_offer)
    token = verify_link(sessions, reservation)
    assert verify(sessions, reservation["id"], token)["status"] == "active"
    with pytest.raises(Problem) as twice:
        verify(sessions, reservation["id"], token)
    assert (twice.value.status, twice.value.code) == (409, "already_verified")
    assert len(recorded(sessions, outbox, "ReservationVerified")) == 1
    assert active_count(sessions, verified_offer) == 1


def test_a_verify_link_for_another_reservation_is_refused_and_changes_nothing(sessions, verified_offer):
    ann, _ = reserve(sessions, offer_id=verified_offer)
    bob, _ = reserve(sessions, "bob@example.org", "Bob", offer_id=verified_offer)
    for token in (verify_link(sessions, ann), "0" * 40, "é" * 3):
        with pytest.raises(Problem) as refused:
            verify(sessions, bob["id"], token)
        assert (refused.value.status, refused.value.code) == (403, "wrong_verify_token")
    with pytest.raises(Problem) as unknown:
        verify(sessions, "no-such-reservation", verify_link(sessions, ann))
    assert unknown.value.status == 404
    assert recorded(sessions, outbox, "ReservationVerified") == []


def test_a_link_from_before_a_cancel_and_a_new_reservation_no_longer_works(sessions, verified_offer):
    first, _ = reserve(sessions, offer_id=verified_offer)
    old_token = verify_link(sessions, first)
    cancel(sessions, first)
    with pytest.raises(Problem) as cancelled:
        verify(sessions, first["id"], old_token)
    assert cancelled.value.code == "not_pending"
    again, status = reserve(sessions, offer_id=verified_offer)
    assert (again["id"], again["status"], status) == (first["id"], "pending", 201)
    with pytest.raises(Problem):
        verify(sessions, first["id"], old_token)
    assert verify(sessions, first["id"], verify_link(sessions, again))["status"] == "active"


def test_the_cut_counts_and_lists_only_confirmed_ones_and_lapses_the_rest(sessions, verified_offer):
    reserved = [reserve(sessions, f"p{i}@example.org", f"P{i}", offer_id=verified_offer)[0] for i in range(3)]
    for reservation in reserved[:2]:
        verify(sessions, reservation["id"], verify_link(sessions, reservation))
    with sessions() as session:
        assert len(use_cases.list_for_holder(session, verified_offer, HOLDER)) == 2
    with sessions.begin() as session:
        use_cases.on_deadline_reached(session, Envelope("OfferDeadlineReached", {"offer_id": verified_offer},
                                                        "auction"))
    [finalised] = recorded(sessions, outbox, "ReservationsFinalised")
    assert finalised.data["final_count"] == 2
    assert {r["id"] for r in finalised.data["reservations"]} == {r["id"] for r in reserved[:2]}
    with pytest.raises(Problem) as late:  # the third purchaser's link, after the cut
        verify(sessions, reserved[2]["id"], verify_link(sessions, reserved[2]))
    assert late.value.code == "not_pending"
    with sessions() as session:
        assert session.execute(select(reservations.c.status).where(
            reservations.c.id == reserved[2]["id"])).scalar_one() == "lapsed"


def test_from_the_deadline_a_verify_link_is_refused_before_the_cut(sessions, verified_offer, at):
    reservation, _ = reserve(sessions, offer_id=verified_offer)
    at(T0 + timedelta(minutes=10))
    with pytest.raises(Problem) as refused:
        verify(sessions, reservation["id"], verify_link(sessions, reservation))
    assert (refused.value.status, refused.value.code) == (409, "offer_closed")


def test_a_pending_reservation_can_be_cancelled_and_its_events_carry_rising_revisions(sessions, verified_offer):
    reservation, _ = reserve(sessions, offer_id=verified_offer)
    cancel(sessions, reservation)
    revisions = [e.data["revision"] for e in recorded(sessions, outbox)
                 if e.type in ("ReservationAccepted", "ReservationCancelled")]
    assert revisions == [1, 2]


def test_a_cancel_that_lands_between_a_verifys_read_and_its_update_makes_the_verify_say_not_pending(
        sessions, verified_offer, monkeypatch):
    """The race of a cancel against a verify, made deterministic: the cancel's UPDATE runs after the
    verify read the row pending. The verify records nothing and says why truly (not 'already verified')."""
    reservation, _ = reserve(sessions, offer_id=verified_offer)
    token = verify_link(sessions, reservation)
    find_offer = use_cases.find_offer

    def cancelled_meanwhile(session, offer_id):
        session.execute(reservations.update().where(reservations.c.id == reservation["id"])
                        .values(status="cancelled", revision=reservations.c.revision + 1))
        return find_offer(session, offer_id)

    monkeypatch.setattr(use_cases, "find_offer", cancelled_meanwhile)
    with pytest.raises(Problem) as refused:
        verify(sessions, reservation["id"], token)
    assert (refused.value.status, refused.value.code) == (409, "not_pending")
    assert recorded(sessions, outbox, "ReservationVerified") == []
