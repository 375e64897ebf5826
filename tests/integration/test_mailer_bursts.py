"""The mailer's bursts: the consumer's burst path with the mailer's real handlers on a real (SQLite)
database; the broker is stood in by messages that note their ack."""
from __future__ import annotations

import logging

from sqlalchemy import select

from services.mailer.tables import MIGRATIONS, inbox, purchasers
from services.mailer.worker import handlers
from shared import config as config_module, logs
from shared.envelope import Envelope
from shared.messaging import Bus, Consumer
from tests.integration.test_confirmations_together import OFFER
from tests.use_cases import T0


class _Message:
    def __init__(self):
        self.acked = 0

    def ack(self):
        self.acked += 1


def _consumer(sessions) -> Consumer:
    mail = handlers("cobuy.example", "http://cobuy.example")
    bus = Bus(config_module.load(), {"mailer": tuple(mail)})
    return Consumer(bus, "mailer", sessions, inbox, mail, prefetch=50, burst=50)


def _event(kind: str, reservation_id: str, revision: int, email: str = "ann@example.org", **kw) -> Envelope:
    data = {"reservation_id": reservation_id, "offer_id": "o1", "name": "Ann", "email": email,
            "cancel_token": "t" * 40, "offer": OFFER, "revision": revision}
    return Envelope(kind, data, "reservation", **kw)


def _burst(consumer, envelopes) -> list[_Message]:
    messages = [_Message() for _ in envelopes]
    consumer._waiting = [(consumer.handlers[e.type], e, m) for e, m in zip(envelopes, messages)]
    consumer._apply_waiting()
    return messages


def test_an_acceptance_and_its_cancel_in_one_burst_keep_the_newest_revision_whatever_the_order(sessions_for, at):
    at(T0)
    sessions = sessions_for("mailer", MIGRATIONS)
    consumer = _consumer(sessions)
    messages = _burst(consumer, [
        _event("ReservationCancelled", "r1", 2), _event("ReservationAccepted", "r1", 1),  # cancel overtook
        _event("ReservationAccepted", "r2", 1), _event("ReservationCancelled", "r2", 2),
        _event("ReservationAccepted", "r3", 1), _event("ReservationVerified", "r3", 2),
        _event("ReservationAccepted", "r3", 1)])  # a redelivered copy would have the same id; this is another
    assert [m.acked for m in messages] == [1] * 7
    with sessions() as session:
        rows = session.execute(select(purchasers.c.reservation_id, purchasers.c.active, purchasers.c.revision)
                               .order_by(purchasers.c.reservation_id)).all()
    assert [tuple(r) for r in rows] == [("r1", False, 2), ("r2", False, 2), ("r3", True, 2)]


class _Correlations(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.seen: list[tuple[str, str | None]] = []

    def emit(self, record):
        self.seen.append((record.getMessage(), logs.correlation_id()))


def test_a_confirmation_skipped_in_a_burst_is_logged_under_its_requests_correlation_id(sessions_for, at):
    """A purchaser whose confirmation never came: the operator greps the logs for her request's
    correlation id. One by one, the warning carries it; in a burst it carries none."""
    at(T0)
    consumer = _consumer(sessions_for("mailer", MIGRATIONS))
    recorder = _Correlations()
    logging.getLogger("services.mailer").addHandler(recorder)
    try:
        _burst(consumer, [_event("ReservationAccepted", f"r{i}", 1, correlation_id=f"req-{i}",
                                 email="ann@example.org" if i != 2 else "no address") for i in range(5)])
    finally:
        logging.getLogger("services.mailer").removeHandler(recorder)
    assert recorder.seen and all(correlation == "req-2" for _, correlation in recorder.seen), recorder.seen
