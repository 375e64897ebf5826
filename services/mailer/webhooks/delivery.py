"""Delivering webhook messages: at least once, signed per Standard Webhooks, one at a time per endpoint.

A claim thread takes due messages (`FOR UPDATE SKIP LOCKED`, so workers never take the same one),
at most one per endpoint and never one of an endpoint with a message in flight anywhere, and hands
them to a pool of threads. A slow or dead endpoint therefore holds one thread for one time-out at
most, and every other seller's messages go on through the others.

A message is `sending` under a lease (claimed_at) and a fencing token, as mail is
(docs/mail-delivery.md): a worker killed mid-attempt leaves it `sending`; after the lease it is due
again, with the same webhook-id. Failures are retried with exponential backoff and jitter until
`retry_seconds` after it was planned; an endpoint failing that long is disabled and its seller mailed.
"""
from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker
from standardwebhooks.webhooks import Webhook

from shared import clock, doorbell
from shared.envelope import Envelope

from .. import planning as mail_planning
from . import metrics, network, rules
from .planning import tell_count, untold_counts
from .tables import attempts, endpoints, messages

log = logging.getLogger(__name__)
USER_AGENT = "cobuy-webhooks/1"
IDLE_CLAIM_SECONDS = 1.0  # an idle claimer's look for retries due and messages its bell did not announce
RUNG_CLAIM_SECONDS = 0.05  # its looks when rung come no closer than this (a crowd's events ring each)


@dataclass(frozen=True)
class Settings:
    allow_http: bool = False
    allow_private: bool = False
    timeout_seconds: float = 5.0
    backoff_seconds: float = 5.0
    retry_seconds: float = 86400.0
    concurrency: int = 8

    @classmethod
    def of(cls, config) -> "Settings":
        return cls(config.webhook_allow_http, config.webhook_allow_private, config.webhook_timeout_seconds,
                   config.webhook_backoff_seconds, config.webhook_retry_seconds, config.webhook_concurrency)

    @property
    def lease(self) -> timedelta:
        """Longer than the longest attempt (network.post gives up after twice the time-out)."""
        return timedelta(seconds=2 * self.timeout_seconds + 5)


def signed_headers(secret: str, message_id: str, payload: str) -> dict[str, str]:
    now = clock.now()
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, now, payload),
    }


def storable(body: bytes) -> str | None:
    """An answer's first bytes as text a column takes: PostgreSQL refuses NUL in text, and a hostile
    endpoint must not make its attempt unrecordable (it would be retried for ever, unlogged)."""
    return body.decode("utf-8", "replace").replace("\x00", "\ufffd") if body else None


class Deliverer:
    def __init__(self, sessions: sessionmaker[Session], settings: Settings, mail_domain: str = "cobuy.localhost"):
        self.sessions = sessions
        self.settings = settings
        self.mail_domain = mail_domain
        self._busy: set[str] = set()  # endpoints with a message in flight in this process
        self._busy_lock = threading.Lock()
        self._wake = doorbell.bell()  # a freed slot, or this process planned messages
        self._freed = threading.Event()  # a freed slot: the claimer looks at once, without the ring gap

    # -- claiming --------------------------------------------------------------------------------

    def claim(self, slots: int) -> list[dict]:
        """Up to `slots` due messages, one per endpoint, marked `sending` under a fresh token."""
        if slots <= 0:
            return []
        with self._busy_lock:
            busy = list(self._busy)
        token = secrets.token_hex(16)
        with self.sessions.begin() as session:
            now = clock.now()
            in_flight = select(messages.c.endpoint_id).where(messages.c.state == "sending")
            due = (select(messages.c.id, messages.c.endpoint_id)
                   .join(endpoints, endpoints.c.id == messages.c.endpoint_id)
                   .where(messages.c.state == "pending", messages.c.next_attempt_at <= now,
                          endpoints.c.disabled_at.is_(None), messages.c.endpoint_id.not_in(in_flight),
                          messages.c.endpoint_id.not_in(busy))
                   .order_by(messages.c.next_attempt_at, messages.c.id).limit(max(50, slots * 4))
                   .with_for_update(skip_locked=True, of=messages))
            chosen: dict[str, int] = {}
            for row in session.execute(due).all():
                if row.endpoint_id not in chosen and len(chosen) < slots:
                    chosen[row.endpoint_id] = row.id
            if not chosen:
                return []
            claimed = session.execute(
                update(messages).where(messages.c.id.in_(list(chosen.values())))
                .values(state="sending", claimed_at=now, claim_token=token).returning(*messages.c)).all()
            targets = {e.id: e for e in session.execute(
                select(endpoints.c.id, endpoints.c.url, endpoints.c.secret)
                .where(endpoints.c.id.in_(list(chosen)))).all()}
        with self._busy_lock:
            self._busy.update(chosen)
        return [{**row._mapping, "url": targets[row.endpoint_id].url, "secret": targets[row.endpoint_id].secret}
                for row in claimed]

    def reclaim_abandoned(self) -> int:
        """Messages left `sending` past the lease (their worker died) are due again."""
        with self.sessions.begin() as session:
            now = clock.now()
            return session.execute(
                update(messages).where(messages.c.state == "sending", messages.c.claimed_at < now - self.settings.lease)
                .values(state="pending", next_attempt_at=now)).rowcount

    def tell_counts(self) -> int:
        """The holder's count changes that waited out their minute."""
        told = 0
        with self.sessions() as session:
            offer_ids = untold_counts(session)
        for offer_id in offer_ids:
            with self.sessions.begin() as session:
                told += tell_count(session, offer_id)
        return told

    # -- delivering ------------------------------------------------------------------------------

    def attempt(self, row: dict) -> network.Answer:
        headers = signed_headers(row["secret"], row["message_id"], row["payload"])
        return network.post(row["url"], row["payload"].encode(), headers, self.settings.timeout_seconds,
                            self.settings.allow_http, self.settings.allow_private)

    def deliver(self, row: dict) -> None:
        try:
            answer = self.attempt(row)
            self.record(row, answer)
        finally:
            with self._busy_lock:
                self._busy.discard(row["endpoint_id"])
            self._freed.set()
            self._wake.set()

    def record(self, row: dict, answer: network.Answer) -> None:
        ok = rules.succeeded(answer.status)
        now = clock.now()
        error = answer.error or (None if ok else f"HTTP {answer.status}")
        metrics.ATTEMPT_SECONDS.observe(answer.seconds)
        with self.sessions.begin() as session:
            retry_for = timedelta(seconds=self.settings.retry_seconds)
            if ok:
                state, values = "delivered", {"delivered_at": now}
            elif rules.gives_up(row["created_at"], now, retry_for):
                state, values = "failed", {}
            else:
                state = "pending"
                values = {"next_attempt_at": now + rules.backoff(row["attempts"] + 1, self.settings.backoff_seconds)}
            fenced = session.execute(
                update(messages).where(messages.c.id == row["id"], messages.c.claim_token == row["claim_token"],
                                       messages.c.state == "sending")
                .values(state=state, attempts=messages.c.attempts + 1, **values).returning(messages.c.id)).first()
            if fenced is None:
                log.info("webhook %s lost its claim while being delivered; left to its new holder", row["message_id"])
                if session.execute(select(endpoints.c.id).where(endpoints.c.id == row["endpoint_id"])).first() is None:
                    return  # deleted meanwhile, with its log: nothing left to record
            session.execute(insert(attempts).values(
                endpoint_id=row["endpoint_id"], message_id=row["message_id"], event_type=row["event_type"],
                attempted_at=now, status=answer.status, latency_ms=round(answer.seconds * 1000), error=error,
                response=storable(answer.body)))
            mailed = self._endpoint_health(session, row["endpoint_id"], ok, now, retry_for)
        if mailed:
            doorbell.ring()  # the seller's mail is committed: the mail claimer looks now
        metrics.ATTEMPTS.labels("retry" if state == "pending" else state).inc()
        if ok:
            metrics.LAG.observe((now - row["created_at"]).total_seconds())

    def _endpoint_health(self, session: Session, endpoint_id: str, ok: bool, now, retry_for: timedelta) -> bool:
        """Notes the attempt's outcome in the endpoint's health; True when it disabled it and planned
        the seller's mail."""
        if ok:
            session.execute(update(endpoints).where(endpoints.c.id == endpoint_id, endpoints.c.failing_since.is_not(None))
                            .values(failing_since=None))
            return False
        session.execute(update(endpoints).where(endpoints.c.id == endpoint_id, endpoints.c.failing_since.is_(None))
                        .values(failing_since=now))
        disabled = session.execute(
            update(endpoints).where(endpoints.c.id == endpoint_id, endpoints.c.disabled_at.is_(None),
                                    endpoints.c.failing_since <= now - retry_for)
            .values(disabled_at=now).returning(*endpoints.c)).first()
        if disabled is not None:  # this statement disabled it: the one place that mails the seller
            log.warning("webhook endpoint %s failed for %s and is disabled", endpoint_id, retry_for)
            metrics.DISABLED.inc()
            notice = Envelope(type="WebhookEndpointDisabled", data={}, producer="mailer",
                              id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{endpoint_id}|{clock.iso(now)}")))
            mail_planning.plan(session, notice, "webhook_disabled",
                               {"endpoint_id": endpoint_id, "url": disabled.url, "failing_since": clock.iso(disabled.failing_since),
                                "hours": round(retry_for.total_seconds() / 3600, 2)},
                               [(disabled.seller_email, disabled.seller_name,
                                 {"lang": mail_planning.Planner.seller_language(session, disabled.seller_id)})],
                               self.mail_domain)
            return True
        return False

    # -- loops -----------------------------------------------------------------------------------

    def _claim_loop(self, stop: threading.Event, work: queue.Queue) -> None:
        chores = 0.0
        while not stop.is_set():
            try:
                if time.monotonic() >= chores:
                    self.reclaim_abandoned()
                    self.tell_counts()
                    chores = time.monotonic() + 1.0
                self._freed.clear()  # before counting the slots: one freed after it is not lost
                with self._busy_lock:
                    slots = self.settings.concurrency - len(self._busy)
                looked = time.monotonic()
                rows = self.claim(slots)
            except Exception:
                log.exception("claiming webhooks failed; retrying")
                stop.wait(1.0)
                continue
            for row in rows:
                work.put(row)
            if not rows:
                doorbell.wait(self._wake, stop, IDLE_CLAIM_SECONDS, looked, RUNG_CLAIM_SECONDS, urgent=self._freed)
                self._wake.clear()

    def _send_loop(self, stop: threading.Event, work: queue.Queue) -> None:
        while not stop.is_set():
            try:
                row = work.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self.deliver(row)
            except Exception:  # not recorded: the message stays `sending` and the lease returns it
                log.exception("delivering webhook %s failed", row.get("message_id"))

    def run(self, stop: threading.Event) -> None:
        work: queue.Queue = queue.Queue()
        threads = [threading.Thread(target=self._send_loop, args=(stop, work), daemon=True, name=f"webhook-{i}")
                   for i in range(self.settings.concurrency)]
        threads.append(threading.Thread(target=self._claim_loop, args=(stop, work), daemon=True, name="webhook-claim"))
        for thread in threads:
            thread.start()
        stop.wait()
        # Briefly: an attempt cut short leaves its message `sending`, due again after the lease (at
        # least once), while a slow stop makes the supervisor kill the whole worker.
        deadline = time.monotonic() + 3
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))


def lag_seconds(session: Session) -> float:
    """How long the oldest due message has waited (0 when none): the backlog an operator watches."""
    oldest = session.execute(select(func.min(messages.c.next_attempt_at)).where(messages.c.state == "pending")).scalar()
    return max(0.0, (clock.now() - oldest).total_seconds()) if oldest else 0.0
