"""Delivery: claim a few → per mail: commit `sending` → SMTP → commit `sent`.

Temporary failures (4xx, refused connection, time-outs) go back to `pending` with backoff;
permanent ones (5xx) are `failed` without blocking the rest. A row left in `sending` by a
crashed sender is the one ambiguous window (the server may have accepted it and its 250
never reached us, RFC 1047): after the lease it is sent again, with the same Message-ID.
A live sender renews the lease of the mail it is sending, however slow the server, and every
write after the claim is fenced by the claim's token. See docs/mail-delivery.md.
"""
from __future__ import annotations

import functools
import json
import logging
import queue
import secrets
import smtplib
import socket
import threading
import time
from datetime import timedelta

from sqlalchemy import Connection, and_, bindparam, case, func, literal_column, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from shared import clock, doorbell
from shared.config import SmtpSettings
from shared.db import db_now, driver_rows, driver_sql, is_postgres, queue_plans

from . import metrics, transport
from .rendering import WIRE, Renderer  # noqa: F401 (WIRE: what tests read mails back with)
from .tables import batches, deliveries

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 12
IDLE_CLAIM_SECONDS = 1.0  # an idle claimer's look for mails its bell did not announce
RUNG_CLAIM_SECONDS = 0.1  # its looks when rung come no closer than this (a crowd's events ring each)
# Written into the claim's SQL, not bound: ix_deliveries_pending is for state = 'pending', and a
# prepared statement's generic plan cannot match `state = $1` to that (tables.py)
PENDING = literal_column("'pending'")


class TemporaryFailure(Exception):
    pass


class PermanentFailure(Exception):
    pass


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(0.5 * 2 ** max(attempts - 1, 0), 60))


class Sender:
    # The earliest retry this process set (time.monotonic()), for the idle claimer to look then, and
    # its lock. Class defaults: one Sender a process, and tests build one without __init__.
    _retry_due: float | None = None
    _retry_lock = threading.Lock()
    _bell: threading.Event | None = None  # the claimer's, rung when a retry is set

    def __init__(self, sessions: sessionmaker[Session], renderer: Renderer, relay: SmtpSettings | tuple[str, int],
                 concurrency: int = 4, lease_seconds: float = 30.0, batch_size: int = 20):
        self.sessions = sessions
        self.engine = sessions.kw["bind"]
        self.renderer = renderer
        self.relay = relay if isinstance(relay, SmtpSettings) else SmtpSettings(*relay)
        self.concurrency = concurrency
        self.lease = timedelta(seconds=lease_seconds)
        self.batch_size = batch_size
        self._contexts: dict[str, dict] = {}  # batch id -> what the event says; never changes
        self._contexts_lock = threading.Lock()
        self._sending: set[str] = set()  # claim tokens of the batches sender threads are working on
        self._sending_lock = threading.Lock()

    # -- claiming --------------------------------------------------------------------------------

    def claim(self) -> list[dict]:
        """Mark up to `batch_size` due mails `claimed` in one statement (not sent yet, so a crash
        here costs nothing but the lease); each becomes `sending` only right before its SMTP."""
        token = secrets.token_hex(16)
        with self.sessions.begin() as session:
            queue_plans(session)  # ix_deliveries_pending, in id order
            now = db_now(session)
            due = (select(deliveries.c.id)
                   .where(deliveries.c.state == PENDING, deliveries.c.next_attempt_at <= now)
                   .order_by(deliveries.c.id).limit(self.batch_size).with_for_update(skip_locked=True))
            rows = session.execute(
                update(deliveries).where(deliveries.c.id.in_(due.scalar_subquery()))
                .values(state="claimed", claimed_at=now, claim_token=token).returning(*deliveries.c)
            ).all()
            if not rows:
                return []
            contexts = self._batch_contexts(session, {r.batch_id for r in rows})
        return [{**r._mapping, "attempts": r.attempts + 1, "context": contexts[r.batch_id]}
                for r in sorted(rows, key=lambda r: r.id)]

    def _batch_contexts(self, session: Session, batch_ids: set[str]) -> dict[str, dict]:
        with self._contexts_lock:
            known = {b: self._contexts[b] for b in batch_ids if b in self._contexts}
        missing = batch_ids - known.keys()
        if missing:
            fetched = {b.id: json.loads(b.context) for b in session.execute(
                select(batches.c.id, batches.c.context).where(batches.c.id.in_(missing))).all()}
            with self._contexts_lock:
                if len(self._contexts) > 1000:
                    self._contexts.clear()
                self._contexts.update(fetched)
            known.update(fetched)
        return known

    def reclaim_abandoned(self) -> int:
        """Rows whose lease ran out go out again, with the same Message-ID: `claimed` ones were
        never sent; `sending` ones were perhaps sent, by a sender that stopped renewing its lease
        (dead, or cut off from the database for a whole lease)."""
        with self.sessions.begin() as session:
            queue_plans(session)  # the leases in ix_deliveries_due, not every mail sent since VACUUM
            now = db_now(session)
            stale = deliveries.c.claimed_at < now - self.lease
            claimed = session.execute(
                update(deliveries).where(deliveries.c.state == "claimed", stale)
                .values(state="pending", next_attempt_at=now)
            ).rowcount
            sending = session.execute(
                update(deliveries).where(deliveries.c.state == "sending", stale)
                .values(state="pending", next_attempt_at=now,
                        last_error="abandoned while sending: the server may have accepted it; sent again")
            ).rowcount
        if sending:
            log.warning("re-sending %d mails abandoned mid-delivery (ambiguous window)", sending)
        return claimed + sending

    # -- sending ---------------------------------------------------------------------------------

    def _connect(self) -> smtplib.SMTP:
        try:
            return transport.connect(self.relay)
        except transport.RelayRefused as exc:  # the operator's to fix: every mail waits, none is lost
            log.error("%s", exc)
            raise TemporaryFailure(str(exc)) from None

    def _render(self, row: dict) -> bytes:
        try:
            return self.renderer.render_wire(row["template"], row["context"], row["recipient"],
                                             row["recipient_name"], json.loads(row["extra"]), row["message_id"],
                                             batch=row["batch_id"])
        except Exception as exc:  # the same row renders the same way next time: never retry it
            raise PermanentFailure(f"cannot render: {type(exc).__name__}: {exc}") from None

    def _send(self, smtp: smtplib.SMTP | None, row: dict) -> smtplib.SMTP:
        message = self._render(row)
        try:
            smtp = smtp or self._connect()
            smtp.sendmail(self.renderer.envelope_from, [row["recipient"]], message)
            return smtp
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            raise (PermanentFailure if code >= 500 else TemporaryFailure)(f"{code} {text!r}") from None
        except smtplib.SMTPResponseException as exc:
            raise (PermanentFailure if exc.smtp_code >= 500 else TemporaryFailure)(
                f"{exc.smtp_code} {exc.smtp_error!r}") from None
        except (smtplib.SMTPException, OSError, socket.timeout) as exc:
            raise TemporaryFailure(repr(exc)) from None

    def _connection(self) -> Connection:
        """One connection per sender thread; on PostgreSQL in autocommit, so each state change
        is one round trip and durable at once."""
        connection = self.engine.connect()
        if is_postgres(connection):
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        return connection

    @staticmethod
    def _write(connection: Connection, statement) -> int:
        changed = len(connection.execute(statement.returning(deliveries.c.id)).all())
        connection.commit()
        return changed

    @staticmethod
    def _now(connection: Connection):
        """The database's clock, as reclaim_abandoned reads it, within the same statement."""
        return func.clock_timestamp() if is_postgres(connection) else clock.now()

    @staticmethod
    def _ours(rows: list[dict], *states: str):
        """Rows of this claim in one of `states`: only a new claim changes the token, so this fences
        off a sender whose lease ran out and whose rows were taken over since."""
        return (deliveries.c.id.in_([r["id"] for r in rows]), deliveries.c.claim_token == rows[0]["claim_token"],
                deliveries.c.state.in_(states))

    def _step(self, connection: Connection, done: tuple[dict, str, str | None] | None,
              start: dict | None) -> tuple[bool, bool]:
        """Record the outcome of the mail just sent (`done`: row, `sent` | `failed` | `pending`, error)
        and start the next (`start`: `claimed` → `sending`, committed before SMTP: from then on it is in
        the ambiguous window, and its lease counts from then) in one statement, one commit: so a thread
        never has two mails `sending`, and each mail costs one round trip, not two. Each row is fenced
        by the claim's token on its own: (recorded, started)."""
        outcome = done[1] if done else None
        postgres = is_postgres(connection)
        params: dict = {"token": (done[0] if done else start)["claim_token"]}
        if done:
            row, state, error = done
            params.update(done=row["id"], error=error)
            if state in ("sent", "pending"):
                wait = backoff(row["attempts"]) if state == "pending" else timedelta()
                params["at"] = clock.now() + wait
        if start:
            params["start"] = start["id"]
            if not postgres:
                params["now"] = clock.now()
        if postgres:  # on the driver's cursor (ADR 14): ~0.07 ms of the sender's CPU a mail less, measured
            sql, literals = self._driver_statement(outcome, start is not None, connection.dialect)
            changed = {row.id for row in driver_rows(connection, sql, {**literals, **params})}
        else:
            changed = set(connection.execute(self._statement(False, outcome, start is not None), params)
                          .scalars().all())
        connection.commit()
        recorded = started = False
        if done:
            row, state, _ = done
            recorded = row["id"] in changed
            if recorded:
                metrics.MAILS.labels({"pending": "retry"}.get(state, state)).inc()
                if state == "pending":
                    self._retry_at(time.monotonic() + wait.total_seconds())
            else:
                log.warning("mail %s to %s lost its claim while sending (lease ran out); not recording it %s",
                            row["template"], row["recipient"], state)
        if start:
            started = start["id"] in changed
            if not started:
                log.info("mail %s to %s lost its claim before sending; left to whoever holds it now",
                         start["template"], start["recipient"])
        return recorded, started

    @functools.lru_cache(maxsize=16)  # noqa: B019 (a handful of statements per Sender, built once)
    def _driver_statement(self, outcome: str | None, starting: bool, dialect) -> tuple[str, dict]:
        return driver_sql(self._statement(True, outcome, starting), dialect)

    @functools.lru_cache(maxsize=16)  # noqa: B019 (a handful of statements per Sender, built once)
    def _statement(self, postgres: bool, outcome: str | None, starting: bool):
        """The UPDATE of _step, built once per shape: executing the same statement object again
        skips SQLAlchemy's compilation and cache-key work, a quarter of a mail's CPU before."""
        d = deliveries.c
        is_done = d.id == bindparam("done")
        now = func.clock_timestamp() if postgres else bindparam("now", type_=d.claimed_at.type)

        def done_else(value, otherwise):  # the recorded row gets `value`, the started one `otherwise`
            return case((is_done, value), else_=otherwise) if starting else value

        def start_else(value, otherwise):
            return (case((is_done, otherwise), else_=value) if outcome else value) if starting else otherwise

        # Still `pending` with our token: the lease ran out but nobody took the mail over yet, and what
        # we know (sent, or why not) is the truth; recording it saves a needless second send.
        fences = []
        values: dict = {}
        if outcome:
            fences.append(and_(is_done, or_(d.state == "sending", d.state == "pending")))
            values["last_error"] = done_else(bindparam("error", type_=d.last_error.type), d.last_error)
            if outcome == "sent":
                values["sent_at"] = done_else(bindparam("at", type_=d.sent_at.type), d.sent_at)
            elif outcome == "pending":
                values["next_attempt_at"] = done_else(bindparam("at", type_=d.next_attempt_at.type),
                                                      d.next_attempt_at)
        if starting:
            fences.append(and_(d.id == bindparam("start"), d.state == "claimed"))
            values["attempts"] = start_else(d.attempts + 1, d.attempts)
            values["claimed_at"] = start_else(now, d.claimed_at)
        values["state"] = case((is_done, outcome), else_="sending") if outcome and starting \
            else (outcome or "sending")
        return (update(deliveries).where(d.claim_token == bindparam("token"), or_(*fences))
                .values(**values).returning(d.id))

    def _release(self, connection: Connection, rows: list[dict]) -> None:
        """Claimed rows this thread will not get to in time go back for anyone to take."""
        released = self._write(connection, update(deliveries).where(*self._ours(rows, "claimed"))
                               .values(state="pending"))
        if released < len(rows):
            log.info("%d of %d mails to release had lost their claim already", len(rows) - released, len(rows))

    def renew(self, connection: Connection) -> int:
        """Push back the lease of every mail this process is sending: a slow server is not a
        dead sender. Only a sender that stops renewing (dead, or cut off) loses its mail."""
        with self._sending_lock:
            tokens = list(self._sending)
        if not tokens:
            return 0
        return self._write(connection, update(deliveries)
                           .where(deliveries.c.state == "sending", deliveries.c.claim_token.in_(tokens))
                           .values(claimed_at=self._now(connection)))

    def deliver(self, rows: list[dict], smtp: smtplib.SMTP | None, connection: Connection | None = None,
                claimed: float | None = None) -> smtplib.SMTP | None:
        """Send claimed rows in turn; `claimed` is when (time.monotonic()) they were claimed."""
        own = connection is None
        connection = connection or self._connection()
        started = claimed or time.monotonic()
        token = rows[0]["claim_token"] if rows else None
        with self._sending_lock:
            self._sending.add(token)
        done = None  # the outcome of the mail just sent, recorded with the start of the next
        try:
            for i, row in enumerate(rows):
                if time.monotonic() - started > self.lease.total_seconds() / 4:
                    if done:
                        self._step(connection, done, None)
                        done = None
                    self._release(connection, rows[i:])  # a slow server: stay well inside the lease
                    break
                _, begun = self._step(connection, done, row)
                done = None
                if not begun:
                    continue
                try:
                    smtp = self._send(smtp, row)
                    done = (row, "sent", None)
                except PermanentFailure as exc:
                    log.error("mail %s to %s failed for good: %s", row["template"], row["recipient"], exc)
                    done = (row, "failed", str(exc))
                    smtp = _reset(smtp)
                except TemporaryFailure as exc:
                    final = row["attempts"] >= MAX_ATTEMPTS
                    log.warning("mail %s to %s: temporary failure (%s)%s", row["template"], row["recipient"], exc,
                                "; giving up" if final else "; will retry")
                    done = (row, "failed" if final else "pending", str(exc))
                    smtp = _reset(smtp)
            if done:
                self._step(connection, done, None)
        finally:
            with self._sending_lock:
                self._sending.discard(token)
            if own:
                connection.close()
        return smtp

    def _retry_at(self, due: float) -> None:
        with self._retry_lock:
            if self._retry_due is None or due < self._retry_due:
                self._retry_due = due
        if self._bell is not None:
            self._bell.set()  # an idle claimer may be waiting longer than that: it looks again, and waits less

    def _idle_wait(self, looked: float) -> float:
        """How long an idle claimer that looked at `looked` may wait unrung: IDLE_CLAIM_SECONDS, or
        less when a retry this process set falls due sooner (a 421's backoff is half a second)."""
        with self._retry_lock:
            due = self._retry_due
            if due is not None and due <= looked:  # that look was after it fell due: it is claimed
                self._retry_due = due = None
        if due is None:
            return IDLE_CLAIM_SECONDS
        return min(IDLE_CLAIM_SECONDS, max(due - time.monotonic(), 0.0) + 0.01)  # just past it: the database's clock

    def _claim_loop(self, stop: threading.Event, work: queue.Queue) -> None:
        """One thread claims for all. Idle, it waits on its bell (shared/doorbell.py): this process
        rings it once it planned mails, and a look every IDLE_CLAIM_SECONDS finds what others planned,
        retries falling due and leases running out. The bounded queue is the back-pressure: it claims
        no faster than the senders send."""
        bell = self._bell = doorbell.bell()
        while not stop.is_set():
            bell.clear()  # before the look: a ring during it makes the wait below return at once
            looked = time.monotonic()
            try:
                rows = self.claim()
            except Exception:
                log.exception("claiming mails failed; retrying")
                stop.wait(1.0)
                continue
            if not rows:
                doorbell.wait(bell, stop, self._idle_wait(looked), looked, RUNG_CLAIM_SECONDS)
                continue
            batch = (time.monotonic(), rows)
            while not stop.is_set():
                try:
                    work.put(batch, timeout=0.5)
                    break
                except queue.Full:
                    continue

    def _send_loop(self, stop: threading.Event, work: queue.Queue) -> None:
        smtp, connection = None, None
        while not stop.is_set():
            try:
                claimed, rows = work.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                connection = connection or self._connection()
                smtp = self.deliver(rows, smtp, connection, claimed)
            except Exception:  # what was not recorded stays claimed or sending: the lease returns it
                log.exception("sender failed; retrying")
                smtp = _reset(smtp)
                if connection is not None:
                    connection.invalidate()
                    connection.close()
                    connection = None
                stop.wait(1.0)
        _reset(smtp)
        if connection is not None:
            connection.close()

    def _renew_loop(self, stop: threading.Event) -> None:
        """Four renewals a lease: three in a row may fail (a database restart) before it runs out."""
        connection = None
        while not stop.wait(self.lease.total_seconds() / 4):
            try:
                connection = connection or self._connection()
                self.renew(connection)
            except Exception:
                log.exception("renewing the leases of mails being sent failed; retrying")
                if connection is not None:
                    connection.invalidate()
                    connection.close()
                    connection = None
        if connection is not None:
            connection.close()

    def run(self, stop: threading.Event) -> None:
        work: queue.Queue = queue.Queue(maxsize=self.concurrency)
        threads = [threading.Thread(target=self._send_loop, args=(stop, work), daemon=True, name=f"smtp-{i}")
                   for i in range(self.concurrency)]
        threads.append(threading.Thread(target=self._claim_loop, args=(stop, work), daemon=True, name="claim"))
        renewing = threading.Event()  # outlives `stop`: the sends still finishing keep their leases
        renewer = threading.Thread(target=self._renew_loop, args=(renewing,), daemon=True, name="renew")
        for thread in [*threads, renewer]:
            thread.start()
        while not stop.wait(min(self.lease.total_seconds() / 2, 5.0)):
            try:
                self.reclaim_abandoned()
            except Exception:
                log.exception("reclaiming abandoned mails failed")
        for thread in threads:
            thread.join(timeout=10)
        renewing.set()
        renewer.join(timeout=10)


def _reset(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        try:
            smtp.quit()
        except Exception:  # the connection is gone either way
            smtp.close()
    return None
