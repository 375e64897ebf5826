"""SPEC §7 "headers that travel": every client value that reaches an envelope, a table column or an
AMQP property, sent at its longest and strangest through the gateway. Each request gets a clear
answer, and every event it causes still flows: the mails arrive, and so do the next ones."""
from __future__ import annotations

import uuid

import pytest

from tests.support import instant

# Four-byte UTF-8, right-to-left text, combining marks, a zero-width joiner, quotes and markup.
STRANGE = "𝔘𝔫𝔦😀ﷺ\u05d0\u05d1e\u0301\u200d<b>&\"'"
LONG_HEADERS = ["x" * 65, "y" * 300, "z" * 8000, "ä-ö-ü", "a b c", "{}/\\;,=", "0" * 64]


def strange(length: int) -> str:
    text = (STRANGE * (length // len(STRANGE) + 1))[:length]
    return text.strip() or "x" * length


def longest_email(tag: str) -> str:
    """254 characters: a 64-character local part and a domain of 63-character labels."""
    local = (tag + "." + "l" * 64)[:64]
    domain_labels, room = [], 254 - len(local) - 1 - len(".example")
    while room > 1:
        label = ("d" * 63)[: min(63, room - 1)]
        domain_labels.append(label)
        room -= len(label) + 1
    email = f"{local}@{'.'.join(domain_labels)}.example"
    assert len(email) <= 254, len(email)
    return email


@pytest.mark.parametrize("correlation", LONG_HEADERS, ids=["65", "300", "8000", "latin1", "spaces", "punct", "64"])
def test_a_strange_correlation_id_never_stops_a_reservation_or_its_mail(cobuy, mailbox, correlation):
    offer = cobuy.create_offer(cobuy.register_seller())
    email = f"corr-{uuid.uuid4().hex[:8]}@example.com"
    reply = cobuy.reserve(offer["id"], email, headers={"X-Correlation-Id": correlation})
    assert reply.status_code == 201, reply.text
    echoed = reply.headers["X-Correlation-Id"]
    assert 1 <= len(echoed) <= 64 and (echoed == correlation or correlation != "0" * 64)
    mailbox.wait(1, to=email, subject="Reserved")
    follower = f"next-{uuid.uuid4().hex[:8]}@example.com"
    assert cobuy.reserve(offer["id"], follower).status_code == 201
    mailbox.wait(1, to=follower, subject="Reserved")  # the service's event flow goes on


def test_the_longest_and_strangest_values_travel_from_request_to_mail(cobuy, mailbox):
    tag = uuid.uuid4().hex[:6]
    holder = cobuy.register_seller(name=strange(100), email=longest_email(f"h{tag}"))
    rival = cobuy.register_seller(name=strange(100), email=longest_email(f"r{tag}"))
    junk = {"X-Correlation-Id": "é" * 40 + "x" * 260}  # latin-1 bytes on the wire, not UTF-8
    title = f"{tag} {strange(193)}"
    reply = cobuy.post("/api/v1/offers", headers={**cobuy.auth(holder), **junk}, json={
        "title": title, "description": strange(5000), "currency": "jpy", "unit_price": 2_000_000_000,
        "minimum_reservations": 1_000_000, "closes_at": instant(3600)})
    assert reply.status_code == 201, reply.text
    offer = reply.json()
    assert offer["title"] == title.strip()

    purchaser = longest_email(f"p{tag}")
    reserved = cobuy.reserve(offer["id"], purchaser, name=strange(100),
                             headers={**junk, "Idempotency-Key": "~" * 255})
    assert reserved.status_code == 201, reserved.text
    [confirmation] = mailbox.wait(1, to=purchaser, subject="Reserved", timeout=20)
    assert strange(100) in confirmation.text

    beat = cobuy.post(f"/api/v1/offers/{offer['id']}/counter-offers", headers={**cobuy.auth(rival), **junk},
                      json={"unit_price": 1_999_999_000, "minimum_reservations": 999_999})
    assert beat.status_code == 201, beat.text
    mailbox.wait(1, to=holder["email"], subject="Intercepted", timeout=20)

    token = reserved.json()["cancel_token"]
    path = f"/api/v1/reservations/{reserved.json()['id']}"
    for wrong in ("t" * 8000, token + "x", token.upper(), "ä"):
        refused = cobuy.delete(path, headers={"X-Cancel-Token": wrong})
        assert refused.status_code in (400, 403, 431), (wrong[:20], refused.status_code, refused.text)
    assert cobuy.delete(path, headers={**junk, "X-Cancel-Token": token}).status_code == 204
    mailbox.wait(1, to=purchaser, subject="Cancelled", timeout=20)


@pytest.mark.parametrize("email, delivered_to", [
    ("ünïcode-{tag}@example.com", None),  # needs SMTPUTF8 end to end: refused, clearly
    ("{tag}@Bücher.example", "{tag}@xn--bcher-kva.example"),  # an IDN domain travels as punycode
    ("{tag}+tag@EXAMPLE.com", "{tag}+tag@example.com"),
], ids=["utf8-local", "idn-domain", "plus-and-case"])
def test_an_international_address_is_refused_clearly_or_mailed(cobuy, mailbox, email, delivered_to):
    """An address the SMTP path cannot carry must not be taken and then lost."""
    offer = cobuy.create_offer(cobuy.register_seller())
    tag = uuid.uuid4().hex[:8]
    reply = cobuy.reserve(offer["id"], email.format(tag=tag))
    if delivered_to is None:
        assert reply.status_code == 422 and "email" in reply.json()["errors"], reply.text
    else:
        assert reply.status_code == 201, reply.text
        mailbox.wait(1, to=delivered_to.format(tag=tag), subject="Reserved", timeout=20)
