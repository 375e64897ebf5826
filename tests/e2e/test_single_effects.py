"""SPEC §7: a state change happens once however often it is sent, and an Idempotency-Key is
bound to the request it first came with. Through the gateway, sent at once from many threads."""
from __future__ import annotations

import json
import threading
import time

import pytest
import requests
from sqlalchemy import select

from tests.support import at_once, unique_email

BURST = 10


def _recorded(system, event_type: str, reservation_id: str) -> int:
    """How many events of this type reservation recorded for one reservation (its outbox)."""
    from services.reservation.tables import outbox

    runtime = system.runtime("reservation")
    try:
        with runtime.sessions() as session:
            bodies = session.execute(select(outbox.c.body).where(outbox.c.type == event_type)).scalars().all()
    finally:
        runtime.engine.dispose()
    return sum(1 for b in bodies if json.loads(b)["data"]["reservation_id"] == reservation_id)


def _exactly_one_mail(mailbox, to: str, subject: str) -> None:
    mailbox.wait(1, to=to, subject=subject)
    time.sleep(1.0)  # a second mail, if any were planned, would have followed by now
    assert len(mailbox.matching(to=to, subject=subject)) == 1


def test_ten_cancels_at_once_cancel_once_record_one_event_and_send_one_mail(cobuy, system, mailbox):
    offer = cobuy.create_offer(cobuy.register_seller())
    email = unique_email("dbl-cancel")
    r = cobuy.reserve(offer["id"], email).json()
    replies = at_once(BURST, lambda: requests.delete(cobuy.url(f"/api/v1/reservations/{r['id']}"),
                                             headers={"X-Cancel-Token": r["cancel_token"]}, timeout=30))
    assert [x.status_code for x in replies] == [204] * BURST
    assert _recorded(system, "ReservationCancelled", r["id"]) == 1
    _exactly_one_mail(mailbox, email, "Cancelled")


def test_ten_re_reservations_at_once_after_a_cancel_give_one_201_and_one_mail(cobuy, system, mailbox):
    offer = cobuy.create_offer(cobuy.register_seller())
    email = unique_email("dbl-again")
    r = cobuy.reserve(offer["id"], email).json()
    rounds = 4
    for _ in range(rounds):
        assert cobuy.delete(f"/api/v1/reservations/{r['id']}", headers={"X-Cancel-Token": r["cancel_token"]}).ok
        replies = at_once(BURST, lambda: requests.post(cobuy.url(f"/api/v1/offers/{offer['id']}/reservations"),
                                               json={"name": "Again", "email": email}, timeout=30))
        codes = sorted(x.status_code for x in replies)
        assert codes == [200] * (BURST - 1) + [201], codes
        assert {x.json()["id"] for x in replies} == {r["id"]}
        assert {x.json()["status"] for x in replies} == {"active"}
    assert _recorded(system, "ReservationAccepted", r["id"]) == 1 + rounds
    mailbox.wait(1 + rounds, to=email, subject="Reserved")
    time.sleep(1.0)
    assert len(mailbox.matching(to=email, subject="Reserved")) == 1 + rounds
    cobuy.wait_offer(offer["id"], lambda o: o["reservation_count"] == 1, what="count 1")


def test_the_same_idempotency_key_with_the_same_body_returns_the_first_answer(cobuy):
    offer = cobuy.create_offer(cobuy.register_seller())
    key = {"Idempotency-Key": f"retry-{unique_email()}"}
    body = {"name": "Ida", "email": unique_email("ida")}
    path = f"/api/v1/offers/{offer['id']}/reservations"
    first = cobuy.post(path, json=body, headers=key)
    again = cobuy.post(path, json=body, headers=key)
    assert first.status_code == 201 and again.status_code == 201
    assert again.json() == first.json()


def test_a_key_replayed_after_a_cancel_gets_the_first_answer_and_reserves_nothing(cobuy):
    offer = cobuy.create_offer(cobuy.register_seller())
    key = {"Idempotency-Key": f"late-{unique_email()}"}
    body = {"name": "Lee", "email": unique_email("lee")}
    path = f"/api/v1/offers/{offer['id']}/reservations"
    first = cobuy.post(path, json=body, headers=key)
    assert cobuy.delete(f"/api/v1/reservations/{first.json()['id']}",
                        headers={"X-Cancel-Token": first.json()["cancel_token"]}).status_code == 204
    replay = cobuy.post(path, json=body, headers=key)
    assert (replay.status_code, replay.json()) == (first.status_code, first.json())
    cobuy.wait_offer(offer["id"], lambda o: o["reservation_count"] == 0, what="count back to 0")
    time.sleep(0.5)
    assert cobuy.offer(offer["id"])["reservation_count"] == 0


def test_the_same_idempotency_key_with_another_body_is_a_422_that_reveals_nothing(cobuy):
    offer = cobuy.create_offer(cobuy.register_seller())
    key = {"Idempotency-Key": f"k-{unique_email()}"}
    first = cobuy.reserve(offer["id"], unique_email("victim"), headers=key)
    assert first.status_code == 201
    other = cobuy.reserve(offer["id"], unique_email("thief"), headers=key)
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_mismatch"
    for secret in (first.json()["id"], first.json()["cancel_token"]):
        assert secret not in other.text
    renamed = cobuy.reserve(offer["id"], json.loads(first.request.body)["email"], name="Someone Else", headers=key)
    assert renamed.status_code == 422 and renamed.json()["code"] == "idempotency_key_mismatch"
    cobuy.wait_offer(offer["id"], lambda o: o["reservation_count"] == 1, what="count 1")


def test_ten_requests_at_once_with_one_key_and_two_bodies_make_one_reservation(cobuy, system):
    offer = cobuy.create_offer(cobuy.register_seller())
    key = {"Idempotency-Key": f"race-{unique_email()}"}
    emails = [unique_email("race-a"), unique_email("race-b")]
    counter = iter(range(BURST))
    lock = threading.Lock()

    def send():
        with lock:
            email = emails[next(counter) % 2]
        return requests.post(cobuy.url(f"/api/v1/offers/{offer['id']}/reservations"),
                             json={"name": "Race", "email": email}, headers=key, timeout=30)

    replies = at_once(BURST, send)
    won = [x for x in replies if x.status_code == 201]
    lost = [x for x in replies if x.status_code == 422]
    assert len(won) + len(lost) == BURST and won and lost, [x.status_code for x in replies]
    assert len({x.json()["id"] for x in won}) == 1
    assert {x.json()["code"] for x in lost} == {"idempotency_key_mismatch"}
    cobuy.wait_offer(offer["id"], lambda o: o["reservation_count"] == 1, what="count 1")


@pytest.mark.parametrize("key, ok", [("k" * 255, True), ("k" * 256, False), ("", False), ("a\tb", False),
                                     ("x" * 300, False), ('"quoted: key / with spaces"', True)],
                         ids=["255", "256", "empty", "tab", "300", "printable"])
def test_idempotency_keys_are_1_to_255_printable_ascii_characters(cobuy, key, ok):
    offer = cobuy.create_offer(cobuy.register_seller())
    reply = cobuy.reserve(offer["id"], headers={"Idempotency-Key": key})
    if ok:
        assert reply.status_code == 201, reply.text
    else:
        assert reply.status_code == 422, reply.text
        assert "Idempotency-Key" in reply.json()["errors"]
