"""The event contract: every producer's events, as they travel, are read by every handler the
topology subscribes to them, and the JSON on the wire keeps its keys (a running older consumer
must keep working). Tests may import across services; the services never do."""
from __future__ import annotations

import json
from email.header import decode_header, make_header
from datetime import timedelta

import pytest
from sqlalchemy import select

from services.auction import events as auction_events
from services.catalog import events as catalog_events
from services.reservation import events as reservation_events
from shared import clock, db, lookup
from shared.envelope import Envelope
from shared.events import Event
from shared.migrations import upgrade
from shared.topology import SUBSCRIPTIONS

NOW = clock.now()
OFFER_ID = "6b1f0d4e-0000-4000-8000-000000000001"
HOLDER = dict(seller_id="s-holder", seller_name="Holder GmbH")
RIVAL = dict(seller_id="s-rival", seller_name="Rival AG")
PURCHASER = dict(id="r-1", name="Ann", email="ann@example.org", lang="ja")  # she reserved from a Japanese page


def _examples() -> list[tuple[str, Event]]:
    """One of each event, in the order a life of an offer produces them."""
    a, c, r = auction_events, catalog_events, reservation_events
    closes_at, invite_at = NOW + timedelta(minutes=10), NOW + timedelta(minutes=8)
    holding = a.HoldingCondition(**RIVAL, unit_price=4900, minimum_reservations=3, since=NOW)
    return [
        ("catalog", c.SellerRegistered(seller_id="s-bystander", name="Bystander", email="bystander@example.org",
                                       registered_at=NOW, lang="ja")),  # invited, as the holder is not
        ("catalog", c.SignInLinkRequested(seller_id="s-bystander", name="Bystander", email="bystander@example.org",
                                          token="t0k3n", expires_at=NOW + timedelta(minutes=15))),
        ("catalog", c.OfferPublished(
            offer_id=OFFER_ID, title="Kettle", currency="usd", opens_at=NOW, invite_at=invite_at, closes_at=closes_at,
            min_decrement=1, condition=c.InitialCondition(**HOLDER, seller_email="holder@example.org",
                                                          unit_price=5000, minimum_reservations=3, since=NOW),
            verify_emails=True)),
        ("reservation", r.ReservationAccepted(
            reservation_id="r-1", offer_id=OFFER_ID, name="Ann", email="ann@example.org", cancel_token="tok", lang="ja",
            offer=r.ReservedOffer(title="Kettle", currency="usd", closes_at=closes_at, unit_price=5000,
                                  minimum_reservations=3, holder_name="Holder GmbH"),
            status="pending", verify_token="vtok", revision=1)),
        ("reservation", r.ReservationVerified(reservation_id="r-1", offer_id=OFFER_ID, name="Ann",
                                              email="ann@example.org", revision=2)),
        ("reservation", r.ReservationCountChanged(offer_id=OFFER_ID, count=1, version=1)),
        ("auction", a.OfferIntercepted(
            offer_id=OFFER_ID, version=1, kind="voluntary", condition=holding,
            intercepted=a.InterceptedCondition(**HOLDER, seller_email="holder@example.org", unit_price=5000,
                                               minimum_reservations=3),
            offer=a.InterceptedOffer(title="Kettle", currency="usd", closes_at=closes_at, min_decrement=1,
                                     reservation_count=1))),
        ("auction", a.OfferInvited(
            offer_id=OFFER_ID, title="Kettle", currency="usd", invite_at=invite_at, closes_at=closes_at,
            holder_id="s-rival", holder_name="Rival AG", unit_price=4900, minimum_reservations=3, min_decrement=1,
            reservation_count=1)),
        ("reservation", r.ReservationCancelled(
            reservation_id="r-1", offer_id=OFFER_ID, name="Ann", email="ann@example.org", lang="ja",
            offer=r.CancelledOffer(title="Kettle", currency="usd", closes_at=closes_at), revision=3)),
        ("auction", a.OfferDeadlineReached(offer_id=OFFER_ID, offer=a.OfferSnapshot(
            offer_id=OFFER_ID, title="Kettle", currency="usd", closes_at=closes_at, condition=holding))),
        ("reservation", r.ReservationsFinalised(offer_id=OFFER_ID, final_count=1,
                                                reservations=[r.Purchaser(**PURCHASER)])),
        ("auction", a.OfferClosed(
            offer_id=OFFER_ID, title="Kettle", currency="usd", outcome="failed", final_count=1,
            closed_at=closes_at, closes_at=closes_at,
            condition=a.ClosingCondition(**RIVAL, unit_price=4900, minimum_reservations=3, since=NOW,
                                         seller_email="rival@example.org"),
            purchasers=[a.Purchaser(**PURCHASER)])),
    ]


# The key paths each event has always had on the wire (docs/architecture.md, the event catalogue).
# Changing one breaks a running consumer: add an optional field instead, or a new VERSION.
_CONDITION = "seller_id seller_name unit_price minimum_reservations"
WIRE_KEYS = {
    "SellerRegistered": "seller_id name email registered_at lang",
    "SignInLinkRequested": "seller_id name email token expires_at",
    "OfferPublished": "offer_id title currency opens_at invite_at closes_at min_decrement condition "
                      f"condition.{{{_CONDITION} seller_email since}} verify_emails",
    "ReservationAccepted": "reservation_id offer_id name email cancel_token lang offer "
                           "offer.{title currency closes_at unit_price minimum_reservations holder_name} "
                           "status verify_token revision",
    "ReservationCancelled": "reservation_id offer_id name email lang offer offer.{title currency closes_at} revision",
    "ReservationVerified": "reservation_id offer_id name email revision",
    "ReservationCountChanged": "offer_id count version",
    "ReservationsFinalised": "offer_id final_count reservations reservations[].{id name email lang}",
    "OfferIntercepted": f"offer_id version kind condition condition.{{{_CONDITION} since}} intercepted "
                        f"intercepted.{{{_CONDITION} seller_email}} offer "
                        "offer.{title currency closes_at min_decrement reservation_count}",
    "OfferInvited": "offer_id title currency invite_at closes_at holder_id holder_name unit_price "
                    "minimum_reservations min_decrement reservation_count",
    "OfferDeadlineReached": "offer_id offer offer.{offer_id title currency closes_at condition} "
                            f"offer.condition.{{{_CONDITION} since}}",
    "OfferClosed": "offer_id title currency outcome final_count closed_at closes_at condition "
                   f"condition.{{{_CONDITION} since seller_email}} purchasers purchasers[].{{id name email lang}}",
}


def _paths(spec: str) -> set[str]:
    """'a b.{c d}' -> {'a', 'b.c', 'b.d'}."""
    paths, group = set(), None
    for word in spec.split():
        if "{" in word:
            group, word = word.split("{")
        closing = word.endswith("}")
        paths.add((group or "") + word.rstrip("}"))
        if closing:
            group = None
    return paths


def _flatten(value, prefix: str = "") -> set[str]:
    """Every key path of a JSON value: 'condition.since', 'purchasers[].id'."""
    if isinstance(value, list):
        return set().union(*(_flatten(item, prefix + "[].") for item in value))
    paths = set()
    for key, item in value.items():
        paths.add(f"{prefix}{key}")
        if isinstance(item, dict):
            paths |= _flatten(item, f"{prefix}{key}.")
        elif isinstance(item, list):
            paths |= _flatten(item, f"{prefix}{key}")
    return paths


def _wire(producer: str, event: Event, **added) -> Envelope:
    """The event as a consumer receives it: an envelope through JSON (with fields a newer producer added)."""
    envelope = Envelope(type=event.type_name(), data={**event.to_data(), **added}, producer=producer,
                        version=event.VERSION)
    return Envelope.from_dict(json.loads(json.dumps(envelope.to_dict())))


def test_every_subscribed_event_has_a_producer_and_an_example():
    produced = {event.type_name() for _, event in _examples()}
    subscribed = {t for types in SUBSCRIPTIONS.values() for t in types}
    assert subscribed <= produced and produced == set(WIRE_KEYS)


@pytest.mark.parametrize("producer, event", _examples(), ids=lambda v: getattr(v, "type_name", lambda: v)())
def test_an_event_keeps_its_keys_on_the_wire(producer, event):
    envelope = _wire(producer, event)
    assert _flatten(envelope.data) == _paths(WIRE_KEYS[event.type_name()])
    assert set(envelope.to_dict()) == {"id", "type", "version", "occurred_at", "producer", "correlation_id", "data"}
    assert envelope.version == 1


def _consumers(tmp_path):
    """Each subscribing service's handlers on a database of its own, migrated as in production."""
    from services.auction.tables import MIGRATIONS as AUCTION
    from services.auction.handlers import HANDLERS as AUCTION_HANDLERS
    from services.catalog.tables import MIGRATIONS as CATALOG
    from services.catalog.offers import HANDLERS as CATALOG_HANDLERS
    from services.mailer.tables import MIGRATIONS as MAILER
    from services.mailer.worker import handlers as mailer_handlers
    from services.reservation.tables import MIGRATIONS as RESERVATION
    from services.reservation.reservations import HANDLERS as RESERVATION_HANDLERS

    wiring = {"catalog": (CATALOG, CATALOG_HANDLERS), "reservation": (RESERVATION, RESERVATION_HANDLERS),
              "auction": (AUCTION, AUCTION_HANDLERS), "mailer": (MAILER, mailer_handlers("cobuy.example", "https://cobuy.example"))}
    consumers = {}
    for service, (migrations, handlers) in wiring.items():
        engine = db.make_engine(f"sqlite:///{tmp_path / service}.db", service)
        upgrade(engine, migrations, service)
        consumers[service] = (engine, db.session_factory(engine), handlers)
    return consumers


@pytest.fixture
def consumers(tmp_path, monkeypatch):
    published = next(e for _, e in _examples() if e.type_name() == "OfferPublished").to_data()
    monkeypatch.setattr(lookup, "published", lambda _config, _service, _path, _id: published)
    made = _consumers(tmp_path)
    yield made
    for engine, _, _ in made.values():
        engine.dispose()


def _feed(consumers, added: dict) -> None:
    for producer, event in _examples():
        envelope = _wire(producer, event, **added)
        subscribed = [s for s, types in SUBSCRIPTIONS.items() if envelope.type in types]
        for service in subscribed:
            _, sessions, handlers = consumers[service]
            assert envelope.type in handlers, f"{service} subscribes to {envelope.type} but has no handler"
            with sessions.begin() as session:
                handlers[envelope.type](session, envelope)


def _rendered_mails(consumers) -> list:
    from services.mailer.rendering import Renderer
    from services.mailer.tables import batches, deliveries

    renderer = Renderer("cobuy <no-reply@cobuy.example>", "https://cobuy.example")
    _, sessions, _ = consumers["mailer"]
    with sessions() as session:
        rows = session.execute(select(deliveries, batches.c.context).join(
            batches, batches.c.id == deliveries.c.batch_id)).all()
    return [(row.template, renderer.render(row.template, json.loads(row.context), row.recipient, row.recipient_name,
                                           json.loads(row.extra), row.message_id)) for row in rows]


@pytest.mark.parametrize("added", [{}, {"added_later": {"optional": True}}], ids=["as_sent", "with_a_new_field"])
def test_every_handler_reads_every_event_it_subscribes_to_and_the_mailer_renders_them(consumers, added):
    _feed(consumers, added)
    from services.auction.tables import offers as auction_offers
    from services.catalog.tables import history
    from services.reservation.tables import offers as reservation_offers

    def row(service, table):
        with consumers[service][1]() as session:
            return session.execute(select(table).where(table.c.id == OFFER_ID)).one()

    with consumers["catalog"][1]() as session:  # catalog's own offer row is not here: its history is
        assert session.execute(select(history.c.seller_name).where(history.c.seq == 1)).scalar_one() == "Rival AG"
    assert (row("reservation", reservation_offers).unit_price, row("reservation", reservation_offers).closed) == (
        4900, True)
    assert (row("auction", auction_offers).status, row("auction", auction_offers).outcome) == ("closed", "failed")
    templates = sorted(template for template, _ in _rendered_mails(consumers))
    assert templates == ["contract_failed", "failed_holder", "invitation", "offer_intercepted",
                         "reservation_accepted", "reservation_cancelled", "sign_in_link"]


def test_the_language_a_seller_registered_in_or_a_purchaser_reserved_in_reaches_their_mails(consumers):
    """`lang` travels: SellerRegistered to the invitation and the sign-in link, ReservationAccepted/-Cancelled
    to their mails, ReservationsFinalised through OfferClosed to the close mail; a seller who gave none
    reads English."""
    _feed(consumers, {})
    by_template = {template: str(make_header(decode_header(mail["Subject"])))
                   for template, mail in _rendered_mails(consumers)}
    assert by_template["invitation"].startswith("招待:")  # the bystander registered in Japanese
    assert by_template["sign_in_link"].startswith("cobuy の")
    assert by_template["reservation_accepted"].startswith("予約完了:")
    assert by_template["reservation_cancelled"].startswith("取り消し:")
    assert by_template["contract_failed"].startswith("不成立:")
    assert by_template["failed_holder"].startswith("Not concluded:")  # the holder's registration is not heard here
