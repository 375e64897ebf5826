"""Transactional outbox and inbox.

`record_event` writes an event in the caller's transaction; `Relay` publishes unsent rows
with publisher confirms and marks them sent. Several relays may run: each claims rows with
FOR UPDATE SKIP LOCKED. A relay killed after publishing but before marking sent publishes
again later: consumers dedupe on (consumer, event id) in their inbox.

A row the relay cannot publish (unreadable, unroutable, unencodable) is quarantined with its
reason instead of blocking every later event; a broker outage is retried, never quarantined.
"""
from __future__ import annotations

import json
import logging
import math
import threading
import time
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Callable

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from shared import clock, logs, metrics
from shared.db import QUEUE_PLANS, UTCDateTime, db_now, insert_for, insert_ignore, is_postgres, queue_plans
from shared.envelope import Envelope
from shared.events import Event
from shared.failures import describe, is_transient

log = logging.getLogger(__name__)

ID = BigInteger().with_variant(Integer, "sqlite")


# What the relay walks, in seq order: the events still in line (and, for `status`, the set-aside
# ones), written once: the relay, its idle look, `status` and `retry` say these, and the indexes
# are built on them. Through the primary key, the plan PostgreSQL takes when its statistics were
# gathered while the table was young or busy, each poll read every published event the retention
# keeps before the first unsent one (~7 ms a poll behind 20,000 in bench/run.py's B1, and a week of
# a site's events in production). The predicates are literals, so a prepared statement's generic
# plan can use them.
WAITING = text("sent_at IS NULL AND quarantined_at IS NULL")
QUARANTINED = text("quarantined_at IS NOT NULL AND sent_at IS NULL")
# Built by migrations reservation 0008, catalog 0008 and auction 0003: a change here needs a new migration.
OUTBOX_INDEXES = {"ix_outbox_waiting": WAITING, "ix_outbox_quarantined": QUARANTINED}
# ...and read through it: shared.db.queue_plans.


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("seq", ID, primary_key=True, autoincrement=True),
        Column("event_id", String(36), nullable=False, unique=True),
        Column("type", String(64), nullable=False),
        Column("body", Text, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        Column("sent_at", UTCDateTime, nullable=True, index=True),
        Column("attempts", Integer, nullable=False, default=0),
        Column("last_error", Text, nullable=True),
        # Set aside: the relay could not publish this row (last_error says why) and skips it
        # until an operator runs `cobuy outbox retry`.
        Column("quarantined_at", UTCDateTime, nullable=True),
        *(Index(name, "seq", postgresql_where=where, sqlite_where=where) for name, where in OUTBOX_INDEXES.items()),
    )


def create_outbox_indexes() -> None:
    """The migration that adds OUTBOX_INDEXES (reservation 0008, catalog 0008, auction 0003), the same in
    each service. Built blocking; on a large outbox an operator builds them CONCURRENTLY first
    (docs/operations.md), and this finds them."""
    from shared.migrations import create_partial_index

    for name, where in OUTBOX_INDEXES.items():
        create_partial_index(name, "outbox", ["seq"], where)


def drop_outbox_indexes() -> None:
    from alembic import op

    for name in OUTBOX_INDEXES:
        op.drop_index(name, table_name="outbox")


def inbox_table(metadata: MetaData) -> Table:
    return Table(
        "inbox",
        metadata,
        Column("consumer", String(120), primary_key=True),
        Column("event_id", String(36), primary_key=True),
        Column("processed_at", UTCDateTime, nullable=False),
    )


def _correlation_id() -> str | None:
    """The request's correlation id, if it can travel as an AMQP property; else a fresh one."""
    value = logs.correlation_id()
    if value is None or logs.can_travel(value):
        return value
    return logs.new_correlation_id()


def record_event(session: Session, outbox: Table, producer: str, event: Event | str, data: dict | None = None
                 ) -> Envelope:
    """Write an event in the same transaction as the change that caused it. `event` is one of the
    producer's events (services/<producer>/events.py); a bare type and data serve the plumbing's tests."""
    envelope, row = outbox_row(producer, event, data)
    session.execute(outbox.insert().values(**row))
    return envelope


def outbox_row(producer: str, event: Event | str, data: dict | None = None) -> tuple[Envelope, dict]:
    """The envelope of an event and the outbox row that carries it (event_id, type, body, created_at,
    attempts): what `record_event` inserts, for a caller that writes it in a statement of its own."""
    if isinstance(event, Event):
        type_, data, version = event.type_name(), event.to_data(), event.VERSION
    else:
        type_, data, version = event, data or {}, 1
    envelope = Envelope(type=type_, data=data, producer=producer, version=version, correlation_id=_correlation_id())
    return envelope, {"event_id": envelope.id, "type": type_, "body": json.dumps(envelope.to_dict()),
                      "created_at": clock.now(), "attempts": 0}


def first_delivery(session: Session, inbox: Table, consumer: str, event_id: str) -> bool:
    """Claim (consumer, event) in the caller's transaction; False when already processed."""
    return insert_ignore(
        session,
        inbox,
        {"consumer": consumer, "event_id": event_id, "processed_at": clock.now()},
        ["consumer", "event_id"],
    )


def first_deliveries(session: Session, inbox: Table, keys: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """first_delivery for many (consumer, event) pairs in one statement: the pairs claimed now, that
    is neither processed before nor named twice in `keys` (the second naming is the duplicate)."""
    now = clock.now()
    rows = [{"consumer": consumer, "event_id": event_id, "processed_at": now} for consumer, event_id in keys]
    return {(r[0], r[1]) for r in session.execute(_claiming(is_postgres(session), inbox), rows)}


@lru_cache(maxsize=16)
def _claiming(postgres: bool, inbox: Table):
    return (insert_for(postgres, inbox).on_conflict_do_nothing(index_elements=["consumer", "event_id"])
            .returning(inbox.c.consumer, inbox.c.event_id))


class IdleLook:
    """Is anything in the outbox's line? The question an idle relay asks ten times a second, asked
    in one round trip: one simple-protocol query (BEGIN, the queue's plans, the look, COMMIT) on
    the driver's connection, ~40 µs of the relay's CPU against ~1 ms for relay_once's transaction
    through the ORM session, which found nothing the same way. The look reads through the line's
    partial index as relay_once does (QUEUE_PLANS, docs/adr/0015). It only ever says "empty" when
    it saw the line empty: a failure, or a database that is not PostgreSQL, says "look properly"."""

    def __init__(self, engine, outbox: Table):
        self.engine = engine
        table = engine.dialect.identifier_preparer.quote(outbox.name)
        self.sql = (f"BEGIN; {QUEUE_PLANS}; SELECT EXISTS (SELECT 1 FROM {table} WHERE {WAITING.text}); COMMIT"
                    if engine.dialect.name == "postgresql" else None)

    def empty(self) -> bool:
        if self.sql is None:
            return False
        try:
            with self.engine.connect() as connection:
                raw = connection.connection.dbapi_connection
                raw.autocommit = True  # the query brings its own BEGIN and COMMIT
                try:
                    with raw.cursor() as cursor:
                        cursor.execute(self.sql)
                        cursor.nextset()  # the plans' settings
                        cursor.nextset()
                        return cursor.fetchone()[0] is False
                except Exception:
                    connection.invalidate()  # whatever state it is in, it is not given out again
                    raise
                finally:
                    if not connection.invalidated:
                        raw.autocommit = False
        except Exception as exc:
            log.debug("the idle look failed (%s); looking properly", describe(exc))
            return False


class Relay:
    """Publishes the outbox, oldest first, with confirms; marks rows sent in the same transaction.

    on_sent(session, envelopes) runs in that transaction too: work that must follow the
    publication is recorded there, durably. follow_up() then does it, after the commit; it runs
    on start, after each batch, and again with backoff while it fails (reservation's recount).
    A follow-up that returns a number of seconds has work it put off (coalescing): it runs again
    that much later, and batches sent meanwhile do not bring it forward.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        outbox: Table,
        publisher,
        poll_seconds: float = 0.05,
        batch_size: int = 200,
        on_sent: Callable[[Session, list[Envelope]], None] | None = None,
        follow_up: Callable[[], float | None] | None = None,
        retention: timedelta = timedelta(days=7),
    ):
        self.sessions = sessions
        self.outbox = outbox
        self.publisher = publisher
        self.poll_seconds = poll_seconds
        self.batch_size = batch_size
        self.on_sent = on_sent
        self.follow_up = follow_up
        self.retention = retention
        self._follow_up_at = 0.0  # due at once: a relay that died may have left work behind
        self._idle_look = IdleLook(sessions.kw["bind"], outbox)
        self._follow_up_backoff = 0.5
        self._follow_up_put_off = False  # _follow_up_at is when the work it put off is due

    def relay_once(self) -> int:
        """Publish one batch; returns how many rows it settled (sent or quarantined)."""
        c = self.outbox.c
        with self.sessions.begin() as session:
            queue_plans(session)
            rows = session.execute(
                select(c.seq, c.event_id, c.body)
                .where(WAITING)
                .order_by(c.seq)
                .limit(self.batch_size)
                .with_for_update(skip_locked=True)
            ).all()
            if not rows:
                return 0
            envelopes, poisoned = _read(rows)
            poisoned.update(self._publish(envelopes))
            sent = {seq: e for seq, e in envelopes.items() if seq not in poisoned}
            if sent:
                session.execute(update(self.outbox).where(c.seq.in_(list(sent))).values(sent_at=clock.now()))
                if self.on_sent:
                    self.on_sent(session, list(sent.values()))
            for seq, reason in poisoned.items():
                session.execute(update(self.outbox).where(c.seq == seq).values(
                    quarantined_at=clock.now(), last_error=reason, attempts=c.attempts + 1))
        metrics.EVENTS_PUBLISHED.inc(len(sent))
        if sent and self.follow_up and not self._follow_up_put_off:
            self._follow_up_at = 0.0
        return len(rows)

    def _publish(self, envelopes: dict[int, Envelope]) -> dict[int, str]:
        """Publish the batch; returns the rows that cannot be published, with their reasons.
        A transient failure (the broker) propagates: the whole batch is tried again later."""
        if not envelopes:
            return {}
        try:
            self.publisher.publish_many(list(envelopes.values()))
            metrics.BROKER_CONNECTED.set(1)
            return {}
        except Exception as exc:
            if is_transient(exc):
                raise
            log.warning("a batch of %d events failed (%s); publishing them one at a time to find the poison",
                        len(envelopes), describe(exc))
        poisoned = {}
        self.publisher.reset()  # whatever state the failed publish left the channel in
        for seq, envelope in envelopes.items():
            try:
                self.publisher.publish_many([envelope])  # the good ones again: inboxes absorb repeats
            except Exception as exc:
                if is_transient(exc):
                    raise
                poisoned[seq] = describe(exc)
                log.error("outbox event %s (%s) cannot be published; quarantined: %s",
                          envelope.id, envelope.type, poisoned[seq])
                self.publisher.reset()
        return poisoned

    def run(self, stop: threading.Event) -> None:
        """Poll every `poll_seconds` while events flow; an idle relay stretches its wait to twice
        that, so a quiet service costs ten queries a second, not twenty."""
        backoff = self.poll_seconds
        idle = self.poll_seconds
        next_report = 0.0
        while not stop.is_set():
            try:
                if time.monotonic() >= next_report:  # outbox lag for operators, every few seconds
                    report = self.status(rows=0)
                    metrics.OUTBOX_PENDING.set(report["pending"])
                    metrics.OUTBOX_LAG.set(report["oldest_age_seconds"])
                    metrics.OUTBOX_QUARANTINED.set(report["quarantined"])
                    self.prune()
                    next_report = time.monotonic() + 5
                # idle, a relay first looks whether anything is in line at all: one round trip
                published = 0 if idle > self.poll_seconds and self._idle_look.empty() else self.relay_once()
                backoff = self.poll_seconds
                followed_up = self._run_follow_up()
                if published or followed_up:  # what the follow-up recorded (a count) goes out at once
                    idle = self.poll_seconds
                else:
                    self.publisher.heartbeat()  # an idle connection must still answer the broker
                    metrics.BROKER_CONNECTED.set(1)
                    stop.wait(self._idle_wait(idle))
                    idle = min(idle * 1.5, self.poll_seconds * 2)
            except Exception as exc:
                if is_transient(exc):  # the broker or the database: expected, and retried
                    log.warning("outbox relay: %s; retrying in %.1fs", describe(exc), backoff)
                    metrics.BROKER_CONNECTED.set(0)  # or the database: the outbox lag tells which matters
                else:
                    log.exception("outbox relay failed; retrying in %.1fs", backoff)
                self.publisher.reset()
                stop.wait(backoff)
                backoff = min(backoff * 2 or 0.1, 5.0)

    def _idle_wait(self, idle: float) -> float:
        """The idle poll, cut short when the follow-up's put-off work falls due before it ends."""
        if self.follow_up is None:
            return idle
        return max(0.0, min(idle, self._follow_up_at - time.monotonic()))

    def _run_follow_up(self) -> bool:
        """True when the follow-up was due and did its work."""
        if self.follow_up is None or time.monotonic() < self._follow_up_at:
            return False
        try:
            put_off = self.follow_up()
        except Exception as exc:
            log.error("after-publish work failed (%s); retrying in %.1fs", describe(exc), self._follow_up_backoff)
            self._follow_up_at = time.monotonic() + self._follow_up_backoff
            self._follow_up_backoff = min(self._follow_up_backoff * 2, 30.0)
            self._follow_up_put_off = False
            return False
        self._follow_up_backoff = 0.5
        self._follow_up_put_off = put_off is not None
        # nothing to do until the next batch, or until the work it put off is due
        self._follow_up_at = math.inf if put_off is None else time.monotonic() + put_off
        return True

    def prune(self, limit: int = 1000) -> int:
        """Forget events published longer ago than the retention, a bounded bite at a time, so the
        outbox stays the size of a week's traffic. Unsent events are never touched."""
        with self.sessions.begin() as session:
            cutoff = db_now(session) - self.retention
            # in ix_outbox_sent_at's order: by seq, PostgreSQL may walk every kept event to find none
            old = (select(self.outbox.c.seq).where(self.outbox.c.sent_at < cutoff)
                   .order_by(self.outbox.c.sent_at).limit(limit))
            return session.execute(delete(self.outbox).where(self.outbox.c.seq.in_(old.scalar_subquery()))).rowcount

    def status(self, rows: int = 100) -> dict:
        """Pending (unsent, in line), the oldest one's age, and the quarantined rows with reasons."""
        c = self.outbox.c
        with self.sessions() as session:
            queue_plans(session)
            pending = session.execute(select(func.count()).select_from(self.outbox).where(WAITING)).scalar_one()
            oldest: datetime | None = session.execute(
                select(func.min(c.created_at)).select_from(self.outbox).where(WAITING)).scalar()
            quarantined = session.execute(select(func.count()).select_from(self.outbox)
                                          .where(QUARANTINED)).scalar_one()
            listed = session.execute(
                select(c.event_id, c.type, c.last_error, c.attempts, c.quarantined_at)
                .where(QUARANTINED).order_by(c.seq).limit(rows)
            ).all() if quarantined and rows else []
            now = db_now(session)
        return {
            "pending": pending,
            "oldest_age_seconds": (now - oldest).total_seconds() if oldest else 0.0,
            "quarantined": quarantined,
            "quarantined_rows": [{"id": r.event_id, "type": r.type, "reason": r.last_error, "attempts": r.attempts,
                                  "quarantined_at": r.quarantined_at.isoformat()} for r in listed],
        }

    def retry(self, event_ids: list[str]) -> int:
        """Put quarantined events back in line (after a fix); returns how many."""
        c = self.outbox.c
        with self.sessions.begin() as session:
            return session.execute(update(self.outbox).where(
                c.event_id.in_(event_ids), QUARANTINED).values(quarantined_at=None)).rowcount


def _read(rows) -> tuple[dict[int, Envelope], dict[int, str]]:
    """Parse each row's envelope; a row that is not one can never be published."""
    envelopes, poisoned = {}, {}
    for row in rows:
        try:
            envelopes[row.seq] = Envelope.from_dict(json.loads(row.body))
        except (ValueError, TypeError) as exc:  # JSONDecodeError and MalformedEnvelope are ValueErrors
            poisoned[row.seq] = f"unreadable: {describe(exc)}"
            log.error("outbox event %s is unreadable; quarantined: %s", row.event_id, poisoned[row.seq])
    return envelopes, poisoned
