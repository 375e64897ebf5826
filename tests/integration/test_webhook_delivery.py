"""The webhook deliverer against a real HTTP receiver on loopback, on a SQLite database of its own:
what one attempt does (SSRF at send time, redirects, body cap, signature) and how claims share endpoints."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import insert, select

from services.mailer.tables import MIGRATIONS, deliveries
from services.mailer.webhooks.delivery import Deliverer, Settings
from services.mailer.webhooks.network import RESPONSE_CAP
from services.mailer.webhooks.planning import document, message_id
from services.mailer.webhooks.tables import attempts, endpoints, messages
from shared import clock
from tests.webhook_receiver import Receiver, Script

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OPEN = Settings(allow_http=True, allow_private=True, timeout_seconds=1, backoff_seconds=1, retry_seconds=3600)


@pytest.fixture
def sessions(sessions_for):
    return sessions_for("mailer", MIGRATIONS)


@pytest.fixture
def receiver():
    with Receiver() as running:
        yield running


def endpoint(sessions, endpoint_id: str, url: str) -> None:
    with sessions.begin() as session:
        session.execute(insert(endpoints).values(
            id=endpoint_id, seller_id=f"s-{endpoint_id}", seller_name="Sam", seller_email=f"{endpoint_id}@example.org",
            url=url, events="offer.count_changed", secret=SECRET, created_at=clock.now()))


def message(sessions, endpoint_id: str, key: str = "k1") -> str:
    msg_id = message_id(key, endpoint_id)
    now = clock.now()
    with sessions.begin() as session:
        session.execute(insert(messages).values(
            endpoint_id=endpoint_id, message_id=msg_id, event_type="offer.count_changed",
            payload=document("offer.count_changed", clock.iso(now), {"offer_id": "o1", "count": 1}),
            state="pending", attempts=0, next_attempt_at=now, created_at=now))
    return msg_id


def deliver_all(deliverer: Deliverer) -> int:
    rows = deliverer.claim(8)
    for row in rows:
        deliverer.deliver(row)
    return len(rows)


def log(sessions) -> list:
    with sessions() as session:
        return session.execute(select(attempts).order_by(attempts.c.id)).all()


def state(sessions) -> list[tuple[str, int]]:
    with sessions() as session:
        return [tuple(r) for r in session.execute(select(messages.c.state, messages.c.attempts).order_by(messages.c.id))]


def test_a_delivery_is_signed_so_the_reference_library_verifies_it_and_logged(sessions, receiver):
    endpoint(sessions, "e1", receiver.url("/ok"))
    msg_id = message(sessions, "e1")
    assert deliver_all(Deliverer(sessions, OPEN)) == 1
    arrival = receiver.at("/ok")[0]
    assert arrival.verified(SECRET)["data"] == {"offer_id": "o1", "count": 1}
    assert arrival.headers["webhook-id"] == msg_id
    assert [(a.status, a.response, a.error) for a in log(sessions)] == [(200, "ok", None)]
    assert state(sessions) == [("delivered", 1)]


def test_an_address_that_became_private_since_registration_is_refused_at_send_time(sessions, receiver):
    """DNS rebinding: the check is made again for each attempt, and the connection goes to the
    address that was checked."""
    endpoint(sessions, "e1", receiver.url("/rebound"))
    message(sessions, "e1")
    deliver_all(Deliverer(sessions, Settings(allow_http=True, allow_private=False, backoff_seconds=1)))
    assert receiver.at("/rebound") == []
    (attempt,) = log(sessions)
    assert (attempt.status, attempt.error) == (None, "The URL's host resolves to a loopback address.")
    assert state(sessions) == [("pending", 1)]


def test_a_redirect_is_not_followed_and_counts_as_a_failure(sessions, receiver):
    receiver.scripts["/moved"] = Script(then=307, headers={"Location": receiver.url("/elsewhere")})
    endpoint(sessions, "e1", receiver.url("/moved"))
    message(sessions, "e1")
    deliver_all(Deliverer(sessions, OPEN))
    assert receiver.at("/elsewhere") == []
    assert [(a.status, a.error) for a in log(sessions)] == [(307, "HTTP 307")]
    assert state(sessions) == [("pending", 1)]


def test_only_the_first_kibibyte_of_an_answer_is_read_and_kept(sessions, receiver):
    receiver.scripts["/big"] = Script(body=b"x" * 5_000_000)
    endpoint(sessions, "e1", receiver.url("/big"))
    message(sessions, "e1")
    deliver_all(Deliverer(sessions, OPEN))
    assert [(a.status, len(a.response)) for a in log(sessions)] == [(200, RESPONSE_CAP)]


def test_an_answer_with_nul_bytes_is_still_logged(sessions, receiver):
    receiver.scripts["/nul"] = Script(then=500, body=b"bad\x00answer\xff")
    endpoint(sessions, "e1", receiver.url("/nul"))
    message(sessions, "e1")
    deliver_all(Deliverer(sessions, OPEN))
    assert [(a.status, a.response) for a in log(sessions)] == [(500, "bad\ufffdanswer\ufffd")]


def test_an_endpoint_dripping_its_answer_a_byte_at_a_time_is_cut_at_the_deadline(sessions, receiver):
    receiver.scripts["/drip"] = Script(drip=True)
    endpoint(sessions, "e1", receiver.url("/drip"))
    message(sessions, "e1")
    deliver_all(Deliverer(sessions, OPEN))  # without the watchdog this returns when the receiver stops
    (attempt,) = log(sessions)
    assert attempt.status is None and attempt.error
    assert not receiver.release.is_set()


def test_a_hanging_endpoint_is_given_up_after_the_time_out(sessions, receiver):
    receiver.scripts["/hang"] = Script(hang_seconds=30)
    endpoint(sessions, "e1", receiver.url("/hang"))
    message(sessions, "e1")
    deliver_all(Deliverer(sessions, OPEN))
    (attempt,) = log(sessions)
    assert attempt.status is None and "timed out" in attempt.error


def test_a_claim_takes_one_message_per_endpoint_and_none_of_a_busy_endpoint(sessions, receiver):
    endpoint(sessions, "e1", receiver.url("/one"))
    endpoint(sessions, "e2", receiver.url("/two"))
    message(sessions, "e1", "a")
    message(sessions, "e1", "b")
    message(sessions, "e2", "a")
    deliverer = Deliverer(sessions, OPEN)
    first = deliverer.claim(8)
    assert sorted(r["endpoint_id"] for r in first) == ["e1", "e2"]
    assert deliverer.claim(8) == [], "both endpoints have a message in flight"
    assert Deliverer(sessions, OPEN).claim(8) == [], "another worker waits for them too"
    for row in first:
        deliverer.deliver(row)
    assert [r["endpoint_id"] for r in deliverer.claim(8)] == ["e1"]


def test_a_message_abandoned_mid_attempt_is_due_again_after_the_lease(sessions, receiver, at):
    endpoint(sessions, "e1", receiver.url("/again"))
    message(sessions, "e1")
    dead = Deliverer(sessions, OPEN)
    (row,) = dead.claim(8)  # and the worker dies before its attempt ends
    now = clock.now()
    at(now + OPEN.lease - timedelta(seconds=1))
    assert Deliverer(sessions, OPEN).reclaim_abandoned() == 0
    at(now + OPEN.lease + timedelta(seconds=1))
    live = Deliverer(sessions, OPEN)
    assert live.reclaim_abandoned() == 1
    assert deliver_all(live) == 1
    dead.record(row, dead.attempt(row))  # the old claim's late answer changes nothing (fencing)
    assert state(sessions) == [("delivered", 1)]
    assert len({a.headers["webhook-id"] for a in receiver.at("/again")}) == 1


def _failing_for_three_minutes(sessions, receiver, at, *message_ids: str) -> Deliverer:
    """Endpoint e1 answers 500 to its messages, tried every half minute for three (a one-minute
    retry window): it ends disabled."""
    receiver.scripts["/down"] = Script(then=500)
    endpoint(sessions, "e1", receiver.url("/down"))
    for message_id in message_ids:
        message(sessions, "e1", message_id)
    settings = Settings(allow_http=True, allow_private=True, timeout_seconds=1, backoff_seconds=1, retry_seconds=60)
    deliverer = Deliverer(sessions, settings)
    start = clock.now()
    for minute in range(3):
        for second in (minute, minute + 30):
            at(start + timedelta(minutes=minute, seconds=second))
            while deliver_all(deliverer):
                pass
    return deliverer


def test_an_endpoint_failing_for_the_retry_window_is_disabled_once_and_its_seller_mailed_once(
        sessions, receiver, at):
    deliverer = _failing_for_three_minutes(sessions, receiver, at, "a", "b")
    with sessions() as session:
        disabled = session.execute(select(endpoints.c.disabled_at)).scalar_one()
        mails = session.execute(select(deliveries.c.template, deliveries.c.recipient)).all()
    assert disabled is not None
    assert mails == [("webhook_disabled", "e1@example.org")]
    assert deliver_all(deliverer) == 0, "a disabled endpoint is not called"


def test_an_endpoint_deleted_during_an_attempt_leaves_no_orphan_log(sessions, receiver):
    from sqlalchemy import delete

    endpoint(sessions, "e1", receiver.url("/gone"))
    message(sessions, "e1")
    deliverer = Deliverer(sessions, OPEN)
    (row,) = deliverer.claim(8)
    with sessions.begin() as session:  # what DELETE /api/v1/webhooks/{id} does
        for table in (messages, attempts):
            session.execute(delete(table).where(table.c.endpoint_id == "e1"))
        session.execute(delete(endpoints).where(endpoints.c.id == "e1"))
    deliverer.deliver(row)
    assert log(sessions) == [] and state(sessions) == []


def test_the_mail_planned_when_an_endpoint_is_disabled_rings_the_mail_claimers_bell(sessions, receiver, at,
                                                                                    monkeypatch):
    """Planned here in the worker, not by the consumer: without a ring, the idle mail claimer sees it
    only at its next look, up to a second later."""
    from shared import doorbell

    rings = []
    monkeypatch.setattr(doorbell, "ring", lambda: rings.append(clock.now()))
    _failing_for_three_minutes(sessions, receiver, at, "a")
    with sessions() as session:
        assert session.execute(select(deliveries.c.template)).scalars().all() == ["webhook_disabled"]
    assert len(rings) == 1
