"""One odd event never stops a mail: whatever an event carries into a bounded column is bounded or
dropped (PostgreSQL enforces lengths, SQLite does not), and secrets never reach a log line."""
from __future__ import annotations

import json
import logging
import uuid

import pytest
from sqlalchemy import select, update

from services.mailer.planning import storable_correlation_id
from services.mailer.tables import batches, deliveries
from shared import clock
from shared.envelope import Envelope
from tests.integration.test_mailer import (OFFER, _drain, _events, _plan, _sender, database, env,  # noqa: F401
                                           mailer)


def _rows(runtime) -> dict:
    with runtime.sessions() as session:
        return {r.recipient: r for r in session.execute(select(deliveries)).all()}


@pytest.mark.parametrize("value, stored", [
    ("req-1.2:3_X", "req-1.2:3_X"), ("c" * 64, "c" * 64), ("c" * 65, None), ("c" * 300, None),
    ("", None), ("two words", None), ("line\nbreak", None), ("café", None), (None, None), (42, None),
])
def test_only_a_well_formed_correlation_id_is_stored(value, stored):
    assert storable_correlation_id(value) == stored


def test_an_event_with_a_300_character_correlation_id_and_name_still_gets_its_mail(mailer, mailbox):
    event, recipient, _ = _events(uuid.uuid4().hex[:6])[0]
    odd = Envelope(event.type, {**event.data, "name": "N" * 300}, event.producer, correlation_id="c" * 300)
    _plan(mailer, odd)
    _drain(mailer, _sender(mailer, mailbox))
    [mail] = mailbox.matching(to=recipient)
    assert "N" * 100 in mail.text
    row = _rows(mailer)[recipient]
    assert row.state == "sent" and row.correlation_id is None and len(row.recipient_name) <= 100


def test_a_name_with_a_line_break_gets_its_mail_and_injects_no_header(mailer, mailbox):
    event, recipient, _ = _events(uuid.uuid4().hex[:6])[0]
    odd = Envelope(event.type, {**event.data, "name": "Ann\r\nBcc: thief@x.io"}, event.producer)
    _plan(mailer, odd)
    _drain(mailer, _sender(mailer, mailbox))
    [mail] = mailbox.matching(to=recipient)
    assert mail.message["Bcc"] is None and "thief@x.io" in mail.message["To"]  # inside the name, harmless
    assert mailbox.matching(to="thief@x.io") == []


def test_a_mail_that_cannot_render_fails_alone_and_the_others_go(mailer, mailbox):
    tag = uuid.uuid4().hex[:6]
    (accepted, buyer, _), (cancelled, _, _) = _events(tag)[:2]
    _plan(mailer, accepted)
    _plan(mailer, cancelled)
    with mailer.sessions.begin() as session:  # a context its template cannot render (no title)
        session.execute(update(batches).where(batches.c.template == "reservation_accepted")
                        .values(context=json.dumps({"offer_id": "off-1"})))
    _drain(mailer, _sender(mailer, mailbox))
    with mailer.sessions() as session:
        rows = {r.template: r for r in session.execute(select(deliveries)).all()}
    assert rows["reservation_accepted"].state == "failed" and "cannot render" in rows["reservation_accepted"].last_error
    assert rows["reservation_cancelled"].state == "sent"
    [mail] = mailbox.matching(to=buyer)
    assert "cancelled" in mail.subject.lower()


def test_an_address_too_long_to_store_is_skipped_and_the_other_recipients_get_theirs(mailer, mailbox, caplog):
    tag = uuid.uuid4().hex[:6]
    closed = next(e for e, _, _ in _events(tag) if e.type == "OfferClosed")
    too_long = {"id": "r3", "name": "Long", "email": "x" * 300 + "@x.io"}
    odd = Envelope(closed.type, {**closed.data, "purchasers": [*closed.data["purchasers"], too_long]}, "auction")
    _plan(mailer, odd)
    _drain(mailer, _sender(mailer, mailbox))
    assert set(_rows(mailer)) == {f"ann-{tag}@x.io", f"bo-{tag}@x.io", f"holder-{tag}@x.io"}
    assert len(mailbox.matching(to=f"ann-{tag}@x.io")) == 1
    assert "not deliverable" in caplog.text


def test_a_seller_with_a_300_character_name_is_still_invited(mailer, mailbox):
    tag = uuid.uuid4().hex[:6]
    for i, name in enumerate(["Holder", "S" * 300]):
        _plan(mailer, Envelope("SellerRegistered", {"seller_id": f"{tag}-{i}", "name": name,
                                                    "email": f"inv{i}-{tag}@x.io",
                                                    "registered_at": clock.iso(clock.now())}, "catalog"))
    _plan(mailer, Envelope("OfferInvited", {**OFFER, "invite_at": "2030-04-20T00:00:00+00:00", "holder_id": f"{tag}-0",
                                            "holder_name": "Holder", "unit_price": 4200, "minimum_reservations": 5,
                                            "min_decrement": 100, "reservation_count": 3}, "auction"))
    _drain(mailer, _sender(mailer, mailbox))
    assert len(mailbox.matching(to=f"inv1-{tag}@x.io")) == 1


def test_a_failing_statement_never_shows_the_cancel_token_it_carried(mailer):
    """A failed insert's message reaches the logs and the dead-letter header (x-cobuy-error): the
    way issue 13's long correlation id leaked the token it travelled with."""
    token = "tok-" + uuid.uuid4().hex
    sqlite = mailer.engine.dialect.name == "sqlite"  # which enforces no length: a missing state instead
    row = {"event_id": str(uuid.uuid4()), "template": "reservation_accepted", "recipient": "a@x.io",
           "recipient_name": "N" * 300, "batch_id": "b", "extra": json.dumps({"cancel_token": token}),
           "message_id": "<m@x>", "state": None if sqlite else "pending", "attempts": 0,
           "next_attempt_at": clock.now(), "created_at": clock.now()}
    with pytest.raises(Exception) as failure:
        with mailer.sessions.begin() as session:
            session.execute(deliveries.insert(), row)
    assert token not in str(failure.value) and token not in repr(failure.value)


def test_delivery_logs_never_show_a_cancel_token(mailer, mailbox, caplog):
    caplog.set_level(logging.DEBUG)
    tag = uuid.uuid4().hex[:6]
    event, recipient, _ = _events(tag)[0]
    token = "tok-" + uuid.uuid4().hex
    _plan(mailer, Envelope(event.type, {**event.data, "cancel_token": token}, event.producer))
    answers = iter(["451 4.3.0 try later", "550 5.1.1 no such user"])
    mailbox.respond = lambda message, recipients: next(answers, None)
    try:
        _drain(mailer, _sender(mailer, mailbox))
    finally:
        mailbox.respond = None
    assert _rows(mailer)[recipient].state == "failed"
    ours = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records
                     if not r.name.startswith("mail.log"))  # aiosmtpd's own log is the sink's, not ours
    assert "will retry" in ours and "failed for good" in ours and token not in ours


def test_an_interception_naming_an_offer_id_no_column_holds_still_tells_the_seller_it_lost(mailer, mailbox):
    """The price-drop tables bound the offer id too: the loser's notice is not dead-lettered with it."""
    from services.mailer.tables import price_drops

    intercepted = next(e for e, _, _ in _events(uuid.uuid4().hex[:6]) if e.type == "OfferIntercepted")
    _plan(mailer, Envelope(intercepted.type, {**intercepted.data, "offer_id": "o" * 300}, intercepted.producer))
    with mailer.sessions() as session:
        assert [r.template for r in session.execute(select(deliveries)).all()] == ["offer_intercepted"]
        assert session.execute(select(price_drops)).all() == []
