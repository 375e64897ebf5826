"""Red-team probes of the two-statement reservation (services/reservation/reservations.py,
`_reserve_at_once`) and its hot route (services/reservation/api.py): the same reservation ten
times at once, with and without an Idempotency-Key, on offers with and without verified e-mails,
and strange bodies and headers, which must be refused as the documented errors are."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.support import unique_email


def _burst(cobuy, offer_id: str, email: str, headers: dict | None = None, n: int = 10):
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda i: cobuy.reserve(offer_id, email, headers=headers or {}), range(n)))


@pytest.mark.parametrize("verify", [False, True])
@pytest.mark.parametrize("keyed", [False, True])
def test_the_same_reservation_ten_times_at_once_is_one_reservation(cobuy, verify, keyed):
    offer = cobuy.create_offer(cobuy.register_seller(), verify_emails=verify)
    email = unique_email("tenfold")
    headers = {"Idempotency-Key": f"k-{email}"} if keyed else None
    replies = _burst(cobuy, offer["id"], email, headers)
    assert all(r.status_code in (200, 201) for r in replies), [(r.status_code, r.text[:200]) for r in replies]
    # a repeat by e-mail is a 200; a repeat by key is the first answer again (SPEC §7), a 201
    assert sum(r.status_code == 201 for r in replies) == (10 if keyed else 1), [r.status_code for r in replies]
    bodies = {tuple(sorted(r.json().items())) for r in replies}
    assert len(bodies) == 1, bodies
    assert replies[0].json()["status"] == ("pending" if verify else "active")
    if not verify:
        cobuy.wait_offer(offer["id"], lambda o: o["reservation_count"] == 1, what="count 1")
    time.sleep(0.5)
    assert cobuy.offer(offer["id"])["reservation_count"] == (0 if verify else 1)


def test_strange_reservation_bodies_are_the_documented_4xx_never_a_500(cobuy):
    offer = cobuy.create_offer(cobuy.register_seller())
    path = cobuy.url(f"/api/v1/offers/{offer['id']}/reservations")
    json_type = {"Content-Type": "application/json"}
    cases = [
        (b"", json_type), (b"null", json_type), (b"[]", json_type), (b"42", json_type), (b'"x"', json_type),
        (b"{}", json_type), (b'{"name": null, "email": null}', json_type),
        (b'{"name": 1, "email": 2}', json_type), (b'{"name": ["a"], "email": {"a": 1}}', json_type),
        (b'{"name": "A", "email": "a@example.com", "lang": "xx"}', json_type),
        (b'{"name": "A", "email": "a@example.com", "lang": null}', json_type),
        (b'{"name": "A\\u0000B", "email": "a0@example.com"}', json_type),
        (b'{"name": "\\ud800", "email": "a1@example.com"}', json_type),
        (b'\xff\xfe{', json_type), (b'{"name": "A", "email": "a@example.com"', json_type),
        (b'{"name": "A", "email": "' + b"x" * 300 + b'@example.com"}', json_type),
        (b'{"name": "A", "email": "a@example.com"}', {"Content-Type": "text/plain"}),
        (b'{"name": "A", "email": "a@example.com"}', {"Content-Type": "application/json; charset=latin-9"}),
        (b"[" * 5000 + b"]" * 5000, json_type),
        (b'{"name": "A", "email": "a2@example.com"}', {**json_type, "Idempotency-Key": ""}),
        (b'{"name": "A", "email": "a3@example.com"}', {**json_type, "Idempotency-Key": "k" * 5000}),
    ]
    for body, headers in cases:
        reply = requests.post(path, data=body, headers=headers, timeout=30)
        assert reply.status_code < 500, (body[:80], headers, reply.status_code, reply.text[:300])
        if reply.status_code >= 400:
            problem = reply.json()
            assert problem["status"] == reply.status_code and problem.get("code"), (body[:80], problem)


def test_reservations_racing_the_close_cut_count_exactly_what_was_accepted(cobuy):
    """Eight clients reserve without pause across closes_at: every 201 is a reservation the holder
    lists and the closed offer counts, and nothing else is."""
    from tests.support import instant
    holder = cobuy.register_seller()
    offer = cobuy.create_offer(holder, closes_at=instant(2.0), invite_at=instant(1))
    deadline = time.time() + 4.0

    def client(_):
        accepted, refused = [], 0
        while time.time() < deadline:
            reply = cobuy.reserve(offer["id"], unique_email("racer"))
            if reply.status_code == 201:
                accepted.append(reply.json()["id"])
            else:
                assert reply.status_code in (409, 429), (reply.status_code, reply.text[:200])
                refused += reply.status_code == 409
        return accepted, refused

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(client, range(8)))
    accepted = {i for ids, _ in results for i in ids}
    assert accepted and sum(r for _, r in results) > 0  # the race did cross the cut
    listed = cobuy.get(f"/api/v1/offers/{offer['id']}/reservations?per_page=100", headers=cobuy.auth(holder))
    assert listed.status_code == 200, listed.text[:300]
    items = listed.json()["items"]
    assert listed.json().get("total", len(items)) == len(accepted)
    cobuy.wait_offer(offer["id"], lambda o: o["status"] == "closed" and o["reservation_count"] == len(accepted),
                     timeout=15, what=f"closed with {len(accepted)}")
    time.sleep(1.5)
    assert cobuy.offer(offer["id"])["reservation_count"] == len(accepted)
