"""Transactional outbox and inbox.

`record_event` writes an event in the caller's transaction; `Relay` publishes unsent rows
with publisher confirms and marks them sent. Several relays may run: each claims rows with
FOR UPDATE SKIP LOCKED. A relay killed after publishing but before marking sent publishes
again later: consumers dedupe on (consumer, event id) in their inbox.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.orm import Session, sessionmaker

from shared import clock, logs, metrics
from shared.db import UTCDateTime, db_now, insert_ignore
from shared.envelope import Envelope

log = logging.getLogger(__name__)

ID = BigInteger().with_variant(Integer, "sqlite")


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
    )


def inbox_table(metadata: MetaData) -> Table:
    return Table(
        "inbox",
        metadata,
        Column("consumer", String(120), primary_key=True),
        Column("event_id", String(36), primary_key=True),
        Column("processed_at", UTCDateTime, nullable=False),
    )


def record_event(session: Session, outbox: Table, producer: str, type_: str, data: dict) -> Envelope:
    """Write an event in the same transaction as the change that caused it."""
    envelope = Envelope(type=type_, data=data, producer=producer, correlation_id=logs.correlation_id())
    session.execute(
        outbox.insert().values(
            event_id=envelope.id,
            type=type_,
            body=json.dumps(envelope.to_dict()),
            created_at=clock.now(),
            attempts=0,
        )
    )
    return envelope


def first_delivery(session: Session, inbox: Table, consumer: str, event_id: str) -> bool:
    """Claim (consumer, event) in the caller's transaction; False when already processed."""
    return insert_ignore(
        session,
        inbox,
        {"consumer": consumer, "event_id": event_id, "processed_at": clock.now()},
        ["consumer", "event_id"],
    )


class Relay:
    """Publishes the outbox, oldest first, with confirms; marks rows sent in the same transaction."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        outbox: Table,
        publisher,
        poll_seconds: float = 0.05,
        batch_size: int = 200,
        after_publish: Callable[[list[Envelope]], None] | None = None,
        retention: timedelta = timedelta(days=7),
    ):
        self.sessions = sessions
        self.outbox = outbox
        self.publisher = publisher
        self.poll_seconds = poll_seconds
        self.batch_size = batch_size
        self.after_publish = after_publish
        self.retention = retention

    def relay_once(self) -> int:
        """Publish one batch; returns how many events went out."""
        with self.sessions.begin() as session:
            rows = session.execute(
                select(self.outbox.c.seq, self.outbox.c.body, self.outbox.c.type)
                .where(self.outbox.c.sent_at.is_(None))
                .order_by(self.outbox.c.seq)
                .limit(self.batch_size)
                .with_for_update(skip_locked=True)
            ).all()
            if not rows:
                return 0
            envelopes = [Envelope.from_dict(json.loads(r.body)) for r in rows]
            self.publisher.publish_many(envelopes)
            session.execute(
                update(self.outbox)
                .where(self.outbox.c.seq.in_([r.seq for r in rows]))
                .values(sent_at=clock.now())
            )
        metrics.EVENTS_PUBLISHED.inc(len(rows))
        if self.after_publish:
            self.after_publish(envelopes)
        return len(rows)

    def run(self, stop: threading.Event) -> None:
        """Poll every `poll_seconds` while events flow; an idle relay stretches its wait to twice
        that, so a quiet service costs ten queries a second, not twenty."""
        backoff = self.poll_seconds
        idle = self.poll_seconds
        next_report = 0.0
        while not stop.is_set():
            try:
                if time.monotonic() >= next_report:  # outbox lag for operators, every few seconds
                    report = self.status()
                    metrics.OUTBOX_PENDING.set(report["pending"])
                    metrics.OUTBOX_LAG.set(report["oldest_age_seconds"])
                    self.prune()
                    next_report = time.monotonic() + 5
                published = self.relay_once()
                backoff = self.poll_seconds
                if published:
                    idle = self.poll_seconds
                else:
                    stop.wait(idle)
                    idle = min(idle * 1.5, self.poll_seconds * 2)
            except Exception:
                log.exception("outbox relay failed; retrying in %.1fs", backoff)
                self.publisher.reset()
                stop.wait(backoff)
                backoff = min(backoff * 2 or 0.1, 5.0)

    def prune(self, limit: int = 1000) -> int:
        """Forget events published longer ago than the retention, a bounded bite at a time, so the
        outbox stays the size of a week's traffic. Unsent events are never touched."""
        with self.sessions.begin() as session:
            cutoff = db_now(session) - self.retention
            old = (select(self.outbox.c.seq).where(self.outbox.c.sent_at < cutoff)
                   .order_by(self.outbox.c.seq).limit(limit))
            return session.execute(delete(self.outbox).where(self.outbox.c.seq.in_(old.scalar_subquery()))).rowcount

    def status(self) -> dict:
        unsent = self.outbox.c.sent_at.is_(None)
        with self.sessions() as session:
            pending = session.execute(select(func.count()).select_from(self.outbox).where(unsent)).scalar_one()
            oldest: datetime | None = session.execute(select(func.min(self.outbox.c.created_at)).where(unsent)).scalar()
            now = db_now(session)
        return {"pending": pending, "oldest_age_seconds": (now - oldest).total_seconds() if oldest else 0.0}
