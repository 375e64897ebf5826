"""Delivery: claim → commit `sending` → SMTP → commit `sent`.

Temporary failures (4xx, refused connection, time-outs) go back to `pending` with backoff;
permanent ones (5xx) are `failed` without blocking the rest. A row left in `sending` by a
crashed sender is the one ambiguous window (the server may have accepted it and its 250
never reached us, RFC 1047): after the lease it is sent again, with the same Message-ID.
See docs/mail-delivery.md.
"""
from __future__ import annotations

import json
import logging
import smtplib
import socket
import threading
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from shared import clock, metrics
from shared.db import db_now

from .rendering import Renderer
from .tables import batches, deliveries

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 12


class TemporaryFailure(Exception):
    pass


class PermanentFailure(Exception):
    pass


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(0.5 * 2 ** max(attempts - 1, 0), 60))


class Sender:
    def __init__(self, sessions: sessionmaker[Session], renderer: Renderer, smtp_address: tuple[str, int],
                 concurrency: int = 4, lease_seconds: float = 30.0, batch_size: int = 1):
        self.sessions = sessions
        self.renderer = renderer
        self.smtp_address = smtp_address
        self.concurrency = concurrency
        self.lease = timedelta(seconds=lease_seconds)
        self.batch_size = batch_size

    # -- claiming --------------------------------------------------------------------------------

    def claim(self) -> list[dict]:
        """Mark the next due mails `sending` and commit, before any SMTP. One at a time by default,
        so a crash leaves at most one ambiguous mail per sender thread."""
        with self.sessions.begin() as session:
            now = db_now(session)
            rows = session.execute(
                select(deliveries).where(deliveries.c.state == "pending", deliveries.c.next_attempt_at <= now)
                .order_by(deliveries.c.id).limit(self.batch_size).with_for_update(skip_locked=True)
            ).all()
            if not rows:
                return []
            ids = [r.id for r in rows]
            session.execute(update(deliveries).where(deliveries.c.id.in_(ids))
                            .values(state="sending", claimed_at=now, attempts=deliveries.c.attempts + 1))
            contexts = {b.id: json.loads(b.context) for b in session.execute(
                select(batches).where(batches.c.id.in_({r.batch_id for r in rows}))).all()}
        return [{**r._mapping, "attempts": r.attempts + 1, "context": contexts[r.batch_id]} for r in rows]

    def reclaim_abandoned(self) -> int:
        """Rows a dead sender left in `sending` past the lease go out again (same Message-ID)."""
        with self.sessions.begin() as session:
            now = db_now(session)
            result = session.execute(
                update(deliveries).where(deliveries.c.state == "sending", deliveries.c.claimed_at < now - self.lease)
                .values(state="pending", next_attempt_at=now,
                        last_error="abandoned while sending: the server may have accepted it; sent again")
            )
        if result.rowcount:
            log.warning("re-sending %d mails abandoned mid-delivery (ambiguous window)", result.rowcount)
        return result.rowcount

    # -- sending ---------------------------------------------------------------------------------

    def _connect(self) -> smtplib.SMTP:
        host, port = self.smtp_address
        return smtplib.SMTP(host, port, timeout=15)

    def _send(self, smtp: smtplib.SMTP | None, row: dict) -> smtplib.SMTP:
        message = self.renderer.render(row["template"], row["context"], row["recipient"], row["recipient_name"],
                                       json.loads(row["extra"]), row["message_id"])
        try:
            smtp = smtp or self._connect()
            smtp.send_message(message, to_addrs=[row["recipient"]])
            return smtp
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            raise (PermanentFailure if code >= 500 else TemporaryFailure)(f"{code} {text!r}") from None
        except smtplib.SMTPResponseException as exc:
            raise (PermanentFailure if exc.smtp_code >= 500 else TemporaryFailure)(
                f"{exc.smtp_code} {exc.smtp_error!r}") from None
        except (smtplib.SMTPException, OSError, socket.timeout) as exc:
            raise TemporaryFailure(repr(exc)) from None

    def _record(self, row: dict, state: str, error: str | None = None) -> None:
        values: dict = {"state": state, "last_error": error}
        if state == "sent":
            values["sent_at"] = clock.now()
        elif state == "pending":
            values["next_attempt_at"] = clock.now() + backoff(row["attempts"])
        with self.sessions.begin() as session:
            session.execute(update(deliveries).where(deliveries.c.id == row["id"]).values(**values))
        metrics.MAILS.labels({"pending": "retry"}.get(state, state)).inc()

    def deliver(self, rows: list[dict], smtp: smtplib.SMTP | None) -> smtplib.SMTP | None:
        for row in rows:
            try:
                smtp = self._send(smtp, row)
                self._record(row, "sent")
            except PermanentFailure as exc:
                log.error("mail %s to %s failed for good: %s", row["template"], row["recipient"], exc)
                self._record(row, "failed", str(exc))
                smtp = _reset(smtp)
            except TemporaryFailure as exc:
                final = row["attempts"] >= MAX_ATTEMPTS
                log.warning("mail %s to %s: temporary failure (%s)%s", row["template"], row["recipient"], exc,
                            "; giving up" if final else "; will retry")
                self._record(row, "failed" if final else "pending", str(exc))
                smtp = _reset(smtp)
        return smtp

    def _loop(self, stop: threading.Event) -> None:
        smtp = None
        while not stop.is_set():
            try:
                rows = self.claim()
                if not rows:
                    stop.wait(0.1)
                    continue
                smtp = self.deliver(rows, smtp)
            except Exception:
                log.exception("sender loop failed; retrying")
                smtp = _reset(smtp)
                stop.wait(1.0)
        _reset(smtp)

    def run(self, stop: threading.Event) -> None:
        threads = [threading.Thread(target=self._loop, args=(stop,), daemon=True, name=f"smtp-{i}")
                   for i in range(self.concurrency)]
        for thread in threads:
            thread.start()
        while not stop.wait(min(self.lease.total_seconds() / 2, 5.0)):
            try:
                self.reclaim_abandoned()
            except Exception:
                log.exception("reclaiming abandoned mails failed")
        for thread in threads:
            thread.join(timeout=10)


def _reset(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        try:
            smtp.quit()
        except Exception:  # the connection is gone either way
            smtp.close()
    return None
