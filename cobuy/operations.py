"""The operator's tools, each over a service's own database or the broker."""
from __future__ import annotations

import json
from contextlib import contextmanager
from importlib import import_module

from sqlalchemy import select, update

from shared.config import SERVICES, Config
from shared.failures import redact, without_secrets
from shared.messaging import Bus, Publisher
from shared.runtime import Runtime


def _tables(name: str):
    return import_module(f"services.{name}.tables")


def schema_directory(name: str):
    return _tables(name).MIGRATIONS


def migrate_all(config: Config, services: tuple[str, ...] = SERVICES) -> None:
    for name in services:
        runtime = Runtime.create(name, config)
        try:
            runtime.migrate(_tables(name).MIGRATIONS)
        finally:
            runtime.engine.dispose()


def _outboxes(config: Config):
    """(service, a status-only Relay over its outbox) for each service that has one."""
    from shared.outbox import Relay

    for name in SERVICES:
        tables = _tables(name)
        if not hasattr(tables, "outbox"):
            continue
        runtime = Runtime.create(name, config)
        try:
            yield name, Relay(runtime.sessions, tables.outbox, publisher=None)
        finally:
            runtime.engine.dispose()


def outbox_status(config: Config) -> dict[str, dict]:
    """Per service: events waiting, the oldest one's age, and the quarantined ones with reasons."""
    return {name: relay.status() for name, relay in _outboxes(config)}


def outbox_retry(config: Config, event_ids: list[str]) -> int:
    """Quarantined events (by event id) back in line for their relay, after a fix."""
    return sum(relay.retry(event_ids) for _, relay in _outboxes(config))


def mail_list(config: Config, to: str | None = None, offer: str | None = None, state: str | None = None,
              limit: int = 200) -> list[dict]:
    from services.mailer.tables import deliveries

    runtime = Runtime.create("mailer", config)
    try:
        query = select(deliveries).order_by(deliveries.c.id.desc()).limit(limit)
        if to:
            query = query.where(deliveries.c.recipient == to.lower())
        if offer:
            query = query.where(deliveries.c.offer_id == offer)
        if state:
            query = query.where(deliveries.c.state == state)
        with runtime.sessions() as session:
            return [
                {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row._mapping.items()
                 if k in ("id", "template", "recipient", "state", "attempts", "last_error", "offer_id",
                          "event_id", "message_id", "correlation_id", "sent_at", "created_at")}
                for row in session.execute(query).all()
            ]
    finally:
        runtime.engine.dispose()


def mail_retry(config: Config, ids: list[int] | None = None) -> int:
    """Failed deliveries go back to the queue (all of them, or the ids given)."""
    from shared import clock
    from services.mailer.tables import deliveries

    runtime = Runtime.create("mailer", config)
    try:
        stmt = update(deliveries).where(deliveries.c.state == "failed")
        if ids:
            stmt = stmt.where(deliveries.c.id.in_(ids))
        with runtime.sessions.begin() as session:
            return session.execute(stmt.values(state="pending", attempts=0, next_attempt_at=clock.now())).rowcount
    finally:
        runtime.engine.dispose()


@contextmanager
def _service_session(config: Config, service: str, write: bool = False):
    """A session on one service's database, in a transaction when `write`, its engine disposed after."""
    runtime = Runtime.create(service, config)
    try:
        with (runtime.sessions.begin() if write else runtime.sessions()) as session:
            yield session
    finally:
        runtime.engine.dispose()


def webhooks_list(config: Config, seller: str | None = None, disabled: bool = False) -> list[dict]:
    from services.mailer.webhooks.operations import endpoint_list

    with _service_session(config, "mailer") as session:
        return endpoint_list(session, seller, disabled)


def webhooks_retry(config: Config, endpoint_ids: list[str]) -> tuple[int, int]:
    from services.mailer.webhooks.operations import retry

    with _service_session(config, "mailer", write=True) as session:
        return retry(session, endpoint_ids)


def offers_list(config: Config, status: str | None = None) -> list[dict]:
    from services.catalog.offers import list_offers

    runtime = Runtime.create("catalog", config)
    try:
        with runtime.sessions() as session:
            items, _ = list_offers(session, status, 1, 100, with_history=False)
        return [{"id": o["id"], "title": o["title"], "status": o["status"], "outcome": o["outcome"],
                 "holder": o["condition"]["seller_name"], "unit_price": o["condition"]["unit_price"],
                 "currency": o["currency"], "reservations": o["reservation_count"],
                 "minimum": o["condition"]["minimum_reservations"], "closes_at": o["closes_at"].isoformat()}
                for o in items]
    finally:
        runtime.engine.dispose()


def rotate_seller_key(config: Config, email: str) -> str | None:
    from services.catalog.sellers import rotate_key

    runtime = Runtime.create("catalog", config)
    try:
        with runtime.sessions.begin() as session:
            return rotate_key(session, email)
    finally:
        runtime.engine.dispose()


def dlq_list(config: Config, limit: int = 100) -> list[dict]:
    """Peek at dead-lettered messages: read them, then put them all back untouched."""
    bus = Bus(config)
    items = []
    with bus.connect() as connection:
        bus.declare(connection)
        queue = bus.dead_queue(connection.channel())
        held = []
        for _ in range(limit):
            message = queue.get(no_ack=False, accept=["json", "application/octet-stream", "text/plain"])
            if message is None:
                break
            held.append(message)
            headers = message.headers or {}
            items.append({
                "routing_key": message.delivery_info.get("routing_key"),
                "error": headers.get("x-cobuy-error"),
                "consumer": headers.get("x-cobuy-consumer"),
                "body": _shown(message.body),
            })
        for message in held:
            message.requeue()
    return items


def _shown(body) -> str:
    """A dead letter's body for the operator's console: secrets (cancel tokens…) redacted."""
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
    try:
        return json.dumps(without_secrets(json.loads(text)))
    except ValueError:
        return redact(text)


def dlq_replay(config: Config, limit: int = 1000) -> int:
    """Send dead-lettered events back through the exchange, to the queue they failed in."""
    bus = Bus(config)
    publisher = Publisher(bus)
    replayed = 0
    try:
        with bus.connect() as connection:
            bus.declare(connection)
            queue = bus.dead_queue(connection.channel())
            # Only what is dead now: an event that fails again lands at the back of this queue and
            # must wait for the next replay, not loop until the limit.
            waiting = queue.queue_declare(passive=True).message_count
            for _ in range(min(waiting, limit)):
                message = queue.get(no_ack=False, accept=["json", "application/octet-stream", "text/plain"])
                if message is None:
                    break
                headers = {k: v for k, v in (message.headers or {}).items() if not k.startswith("x-cobuy-")}
                publisher.publish_raw(bus.exchange, message.delivery_info.get("routing_key", ""), message.body,
                                      message.content_type, message.content_encoding, headers)
                message.ack()
                replayed += 1
    finally:
        publisher.reset()
    return replayed


def dumps(value) -> str:
    return json.dumps(value, indent=2, default=str)
