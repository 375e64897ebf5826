"""The mailer against a real SMTP sink (aiosmtpd), its own database, and the real broker:
every kind renders, nothing is sent twice, 4xx retried, 5xx failed alone, a send slower than
the lease goes once, a SIGKILL mid fan-out loses nothing."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select, update

from services.mailer.delivery import Sender
from services.mailer.planning import Planner
from services.mailer.rendering import Renderer
from services.mailer.tables import deliveries, sellers
from shared import clock, config as config_module, doorbell
from shared.db import is_postgres
from shared.envelope import Envelope
from shared.messaging import Bus, Publisher
from shared.runtime import Runtime
from shared.smtpsink import parse_headers
from tests import infra
from tests.plans import MODES, Statements, blocks_read, executed_plan, rows_read
from tests.support import ROOT, MailBox, wait_for

PUBLIC = "https://cobuy.example"


@pytest.fixture
def database(servers, tmp_path):
    if servers[0] is None:
        yield None
        return
    with infra.postgres_database() as url:
        yield url


@pytest.fixture
def env(servers, database, tmp_path, mailbox):
    _, amqp_url, prefix = servers
    values = {k: v for k, v in os.environ.items() if not k.startswith("COBUY_")}
    values.update({"COBUY_DATA_DIR": str(tmp_path), "COBUY_EXCHANGE_PREFIX": f"{prefix}-m{uuid.uuid4().hex[:6]}",
                   "COBUY_SMTP_URL": f"smtp://127.0.0.1:{mailbox.sink.port}", "COBUY_MAIL_LEASE_SECONDS": "2",
                   "COBUY_PUBLIC_URL": PUBLIC, "COBUY_LOG_LEVEL": "WARNING",
                   "COBUY_MAIL_FROM": "cobuy <no-reply@cobuy.example>"})
    if database:
        values["COBUY_DATABASE_URL"] = database
    if amqp_url:
        values["COBUY_AMQP_URL"] = amqp_url
    return values


@pytest.fixture
def mailer(env, monkeypatch):
    for key, value in env.items():
        if key.startswith("COBUY_"):
            monkeypatch.setenv(key, value)
    runtime = Runtime.create("mailer", config_module.load())
    from services.mailer.tables import MIGRATIONS

    runtime.migrate(MIGRATIONS)
    yield runtime
    runtime.engine.dispose()


def _sender(runtime, mailbox: MailBox, concurrency=2) -> Sender:
    return Sender(runtime.sessions, Renderer("cobuy <no-reply@cobuy.example>", PUBLIC),
                  ("127.0.0.1", mailbox.sink.port), concurrency=concurrency, lease_seconds=2)


def _plan(runtime, event: Envelope):
    handler = Planner("cobuy.example").handlers()[event.type]
    with runtime.sessions.begin() as session:
        handler(session, event)


def _drain(runtime, sender: Sender, timeout=30):
    def done():
        with runtime.sessions() as session:
            left = session.execute(select(func.count()).select_from(deliveries)
                                   .where(deliveries.c.state.in_(["pending", "claimed", "sending"]))).scalar_one()
        if left:
            rows = sender.claim()
            if rows:
                sender.deliver(rows, None)
        return left == 0
    wait_for(done, timeout, interval=0.05, what="every delivery settled")


def _states(runtime) -> Counter:
    with runtime.sessions() as session:
        return Counter(r.state for r in session.execute(select(deliveries.c.state)).all())


OFFER = {"offer_id": "off-1", "title": "Garden chair", "currency": "eur", "closes_at": "2030-05-01T12:00:00+00:00"}


def _events(tag: str) -> list[tuple[Envelope, str, list[str]]]:
    """(event, recipient, facts the mail must state) for every kind."""
    holder = {"seller_id": "s-h", "seller_name": "Holder Ltd", "seller_email": f"holder-{tag}@x.io",
              "unit_price": 4200, "minimum_reservations": 5, "since": "2030-04-01T00:00:00+00:00"}
    purchasers = [{"id": "r1", "name": "Ann", "email": f"ann-{tag}@x.io"}, {"id": "r2", "name": "=cmd", "email": f"bo-{tag}@x.io"}]
    closed = {**OFFER, "final_count": 2, "closed_at": "2030-05-01T12:00:01+00:00", "condition": holder,
              "purchasers": purchasers}
    return [
        (Envelope("ReservationAccepted", {"reservation_id": "r1", "offer_id": "off-1", "name": "Ann",
                                           "email": f"ann-{tag}@x.io", "cancel_token": "tok",
                                           "offer": {**OFFER, "unit_price": 4200, "minimum_reservations": 5,
                                                     "holder_name": "Holder Ltd"}}, "reservation"),
         f"ann-{tag}@x.io", ["€42.00", "5 reservations", "May 1, 2030, 12:00:00\u202fPM UTC",
                             f"{PUBLIC}/reservations/r1/cancel?token=tok"]),
        (Envelope("ReservationCancelled", {"reservation_id": "r1", "offer_id": "off-1", "name": "Ann",
                                            "email": f"ann-{tag}@x.io", "offer": OFFER}, "reservation"),
         f"ann-{tag}@x.io", ["is cancelled", "owe nothing"]),
        (Envelope("OfferIntercepted", {"offer_id": "off-1", "version": 1, "kind": "voluntary",
                                        "condition": {**holder, "seller_name": "Rival"},
                                        "intercepted": {**holder, "seller_email": f"lost-{tag}@x.io",
                                                        "unit_price": 4500},
                                        "offer": {**OFFER, "min_decrement": 100, "reservation_count": 3}}, "auction"),
         f"lost-{tag}@x.io", ["Rival", "€45.00", "€42.00", '"unit_price": 4100', "/counter-offers"]),
        (Envelope("OfferClosed", {**closed, "outcome": "concluded"}, "auction"), f"bo-{tag}@x.io",
         ["concluded", "Holder Ltd", "€42.00"]),
        (Envelope("OfferClosed", {**closed, "outcome": "failed", "final_count": 2}, "auction"), f"holder-{tag}@x.io",
         ["2 of 5 reservations", "nothing is owed"]),
    ]


def test_every_kind_renders_text_and_html_with_the_facts(mailer, mailbox):
    tag = uuid.uuid4().hex[:6]
    with mailer.sessions.begin() as session:
        session.execute(sellers.insert(), [{"id": f"s{i}", "name": f"S{i}", "email": f"inv{i}-{tag}@x.io",
                                            "registered_at": clock.now()} for i in range(2)])
    invite = Envelope("OfferInvited", {**OFFER, "invite_at": "2030-04-20T00:00:00+00:00", "holder_id": "s0",
                                       "holder_name": "S0", "unit_price": 4200, "minimum_reservations": 5,
                                       "min_decrement": 100, "reservation_count": 3}, "auction")
    cases = _events(tag) + [(invite, f"inv1-{tag}@x.io", ["Reservations so far:  3", "€42.00", "€1.00 lower"])]
    for event, _, _ in cases:
        _plan(mailer, event)
    _drain(mailer, _sender(mailer, mailbox))
    for event, recipient, facts in cases:
        mails = [m for m in mailbox.matching(to=recipient) if m.message["Message-ID"] and all(f in m.text for f in facts)]
        assert len(mails) == 1, (event.type, recipient, [m.subject for m in mailbox.matching(to=recipient)])
        mail = mails[0]
        assert mail.message["From"] == "cobuy <no-reply@cobuy.example>"
        assert mail.html.startswith("<!doctype html>") and "cobuy" in mail.html
    assert mailbox.matching(to=f"inv0-{tag}@x.io") == []  # the holder is not invited
    holder_mail = mailbox.matching(to=f"holder-{tag}@x.io", subject="Concluded")[0]
    attachment = next(holder_mail.message.iter_attachments()).get_content()
    assert f"ann-{tag}@x.io" in attachment and "'=cmd" in attachment  # spreadsheet formulas neutralised


def test_the_same_event_twice_gives_one_mail(mailer, mailbox):
    event, recipient, _ = _events(uuid.uuid4().hex[:6])[0]
    _plan(mailer, event)
    _plan(mailer, event)
    _drain(mailer, _sender(mailer, mailbox))
    assert len(mailbox.matching(to=recipient)) == 1


def test_a_sink_answering_421_for_a_while_ends_with_every_mail_delivered(mailer, mailbox):
    tag = uuid.uuid4().hex[:6]
    until = time.monotonic() + 2.0
    refused = Counter()

    def busy(message, recipients):
        if time.monotonic() < until and tag in recipients[0]:
            refused[recipients[0]] += 1
            return "421 4.3.2 Service busy, try later"
        return None

    mailbox.respond = busy
    try:
        for event, _, _ in _events(tag):
            _plan(mailer, event)
        _drain(mailer, _sender(mailer, mailbox), timeout=40)
    finally:
        mailbox.respond = None
    assert refused and _states(mailer) == Counter({"sent": sum(_states(mailer).values())})
    assert {m.to for m in mailbox.matching() if tag in m.to} >= set(refused)


def test_a_550_for_one_recipient_leaves_the_others_delivered(mailer, mailbox):
    tag = uuid.uuid4().hex[:6]
    bad = f"bo-{tag}@x.io"
    mailbox.respond = lambda message, recipients: "550 5.1.1 No such user" if recipients[0] == bad else None
    try:
        concluded = next(e for e, _, _ in _events(tag) if e.type == "OfferClosed")
        _plan(mailer, concluded)
        _drain(mailer, _sender(mailer, mailbox))
    finally:
        mailbox.respond = None
    with mailer.sessions() as session:
        rows = {r.recipient: r for r in session.execute(select(deliveries)).all()}
    assert rows[bad].state == "failed" and "550" in rows[bad].last_error and rows[bad].attempts == 1
    assert rows[f"ann-{tag}@x.io"].state == "sent" and rows[f"holder-{tag}@x.io"].state == "sent"
    assert len(mailbox.matching(to=f"ann-{tag}@x.io")) == 1 and mailbox.matching(to=bad) == []


def test_mailer_killed_mid_fan_out_of_1000_ends_with_each_mail_once(mailer, mailbox, env):
    tag = uuid.uuid4().hex[:6]
    with mailer.sessions.begin() as session:
        session.execute(sellers.insert(), [{"id": f"{tag}-{i}", "name": f"Seller {i}", "email": f"fan{i}-{tag}@x.io",
                                            "registered_at": clock.now()} for i in range(1001)])
    invite = Envelope("OfferInvited", {**OFFER, "invite_at": "2030-04-20T00:00:00+00:00", "holder_id": f"{tag}-0",
                                       "holder_name": "Seller 0", "unit_price": 4200, "minimum_reservations": 5,
                                       "min_decrement": 100, "reservation_count": 3}, "auction")
    config = config_module.load()
    Bus(config).declare(Bus(config).connect())  # queues exist before the event is published
    publisher = Publisher(Bus(config))
    publisher.publish_many([invite])
    publisher.reset()
    mine = lambda: [m for m in mailbox.matching() if m.to.endswith(f"-{tag}@x.io")]
    worker = subprocess.Popen([sys.executable, "-m", "services.mailer.worker"], cwd=ROOT, env=env)
    try:
        wait_for(lambda: len(mine()) >= 250, 60, what="the fan-out to be under way")
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=10)
        cut = len(mine())
        assert cut < 1000, "the kill came too late to test anything"
        with mailer.sessions() as session:
            in_flight = session.execute(select(func.count()).select_from(deliveries)
                                        .where(deliveries.c.state == "sending")).scalar_one()
        worker = subprocess.Popen([sys.executable, "-m", "services.mailer.worker"], cwd=ROOT, env=env)
        wait_for(lambda: _states(mailer).get("sent", 0) == 1000, 120, interval=0.2, what="1000 mails sent")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    per_recipient = Counter(m.to for m in mine())
    assert len(per_recipient) == 1000
    doubled = {to for to, n in per_recipient.items() if n > 1}
    # The documented ambiguous window: only mails that were `sending` at the kill may arrive twice,
    # and then with the same Message-ID, so mail clients fold them into one.
    assert in_flight <= config.mail_concurrency  # one per sender thread at most
    assert len(doubled) <= in_flight and max(per_recipient.values()) <= 2
    for to in doubled:
        assert len({m.message["Message-ID"] for m in mine() if m.to == to}) == 1
    with mailer.sessions() as session:
        log = session.execute(select(deliveries.c.state, deliveries.c.message_id)).all()
    assert Counter(r.state for r in log) == Counter({"sent": 1000})
    print(json.dumps({"delivered_before_kill": cut, "in_flight_at_kill": in_flight, "sent_twice": len(doubled)}))


class SlowSink:
    """An SMTP server that takes `delay` seconds to accept each message; asyncio.sleep, so it
    serves other connections meanwhile (a second sender is not held up behind the first)."""

    def __init__(self, delay: float):
        self.delay = delay
        self.received: list[tuple[str, str]] = []  # (recipient, Message-ID)
        self.controller = Controller(self, hostname="127.0.0.1", port=infra.free_port())

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.delay)
        self.received.append((envelope.rcpt_tos[0], parse_headers(envelope.content)["Message-ID"]))
        return "250 Message accepted for delivery"


@pytest.fixture
def slow_sink():
    sink = SlowSink(delay=4.0)  # twice the tests' 2 s lease
    sink.controller.start()
    yield sink
    sink.controller.stop()


def test_a_send_slower_than_the_lease_is_delivered_once_and_ends_sent(mailer, slow_sink):
    event, recipient, _ = _events(uuid.uuid4().hex[:6])[0]
    _plan(mailer, event)
    sender = Sender(mailer.sessions, Renderer("cobuy <no-reply@cobuy.example>", PUBLIC),
                    ("127.0.0.1", slow_sink.controller.port), concurrency=2, lease_seconds=2)
    stop = threading.Event()
    runner = threading.Thread(target=sender.run, args=(stop,))
    runner.start()
    try:
        wait_for(lambda: _states(mailer) == Counter({"sent": 1}), 30, interval=0.1, what="the slow mail sent")
    finally:
        stop.set()
        runner.join(timeout=30)  # a second sender, if any, finishes its send before this returns
    assert [to for to, _ in slow_sink.received] == [recipient]
    with mailer.sessions() as session:
        row = session.execute(select(deliveries)).one()
    assert row.state == "sent" and row.attempts == 1 and row.last_error is None


def _expire_leases(runtime) -> None:
    with runtime.sessions.begin() as session:
        session.execute(update(deliveries).values(claimed_at=clock.now() - timedelta(hours=1)))


def test_a_stale_senders_writes_after_its_claim_was_taken_over_change_nothing(mailer, mailbox, caplog):
    caplog.set_level(logging.INFO, logger="services.mailer.delivery")
    event, _, _ = _events(uuid.uuid4().hex[:6])[0]
    _plan(mailer, event)
    sender = _sender(mailer, mailbox)
    stale, fresh = sender._connection(), sender._connection()
    try:
        [old] = sender.claim()
        assert sender._step(stale, None, old)[1]
        _expire_leases(mailer)  # the stale sender stalls past its lease ...
        assert sender.reclaim_abandoned() == 1
        [new] = sender.claim()  # ... and another takes the mail over
        assert sender._step(fresh, None, new)[1]
        sender._step(stale, (old, "sent", None), None)
        sender._step(stale, (old, "pending", "451 too late"), None)
        sender._release(stale, [old])
        assert not sender._step(stale, None, old)[1]
        with mailer.sessions() as session:
            row = session.execute(select(deliveries)).one()
        assert row.state == "sending" and row.sent_at is None and "451" not in row.last_error
        assert "lost its claim" in caplog.text
        sender._step(fresh, (new, "sent", None), None)
        with mailer.sessions() as session:
            assert session.execute(select(deliveries.c.state)).scalar_one() == "sent"
    finally:
        stale.close()
        fresh.close()


def test_a_stale_sender_that_finishes_before_anyone_took_its_mail_over_records_it_sent(mailer, mailbox):
    event, _, _ = _events(uuid.uuid4().hex[:6])[0]
    _plan(mailer, event)
    sender = _sender(mailer, mailbox)
    connection = sender._connection()
    try:
        [row] = sender.claim()
        assert sender._step(connection, None, row)[1]
        _expire_leases(mailer)
        assert sender.reclaim_abandoned() == 1  # back to pending, not claimed by anyone yet
        sender._step(connection, (row, "sent", None), None)
    finally:
        connection.close()
    assert _states(mailer) == Counter({"sent": 1}) and sender.claim() == []


def test_each_mail_costs_one_state_change_and_a_lost_claim_fences_only_its_own_row(mailer, mailbox, caplog,
                                                                                   monkeypatch):
    """Recording a mail `sent` and starting the next is one UPDATE (one commit), and a thread never has
    two mails `sending`; each row of that UPDATE is fenced by the token on its own. On PostgreSQL that
    UPDATE runs on the driver's cursor (ADR 14), past SQLAlchemy's execution: the count of UPDATEs
    takes both ways in."""
    from sqlalchemy import event as sa_event

    from services.mailer import delivery

    caplog.set_level(logging.INFO, logger="services.mailer.delivery")
    tag = uuid.uuid4().hex[:6]
    with mailer.sessions.begin() as session:
        session.execute(sellers.insert(), [{"id": f"s{i}", "name": f"S{i}", "email": f"one{i}-{tag}@x.io",
                                            "registered_at": clock.now()} for i in range(4)])
    _plan(mailer, Envelope("OfferInvited", {"offer_id": "o1", "title": "Chair", "currency": "eur", "holder_id": "x",
                                            "holder_name": "H", "unit_price": 100, "minimum_reservations": 1,
                                            "min_decrement": 1, "reservation_count": 0, "invite_at": "2030-04-01T12:00:00+00:00",
                                            "closes_at": "2030-05-01T12:00:00+00:00"}, "auction"))
    # a lease long enough that a loaded machine never makes the thread give the rest of its claim back
    sender = Sender(mailer.sessions, Renderer("cobuy <no-reply@cobuy.example>", PUBLIC),
                    ("127.0.0.1", mailbox.sink.port), concurrency=2, lease_seconds=120)
    updates, on_driver, sending_at_once = [], [], []

    def seen(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("UPDATE DELIVERIES"):
            updates.append(statement)
            with mailer.engine.connect() as c:
                sending_at_once.append(c.execute(select(func.count()).select_from(deliveries)
                                                 .where(deliveries.c.state == "sending")).scalar_one())

    def driver_rows(connection, statement, parameters):
        rows = delivery_driver_rows(connection, statement, parameters)
        on_driver.append(statement)
        seen(None, None, statement, parameters, None, False)
        return rows

    delivery_driver_rows = delivery.driver_rows
    monkeypatch.setattr(delivery, "driver_rows", driver_rows)

    rows = sender.claim()
    assert len(rows) == 4
    sa_event.listen(mailer.engine, "after_cursor_execute", seen)
    try:
        sender.deliver(rows, None)
    finally:
        sa_event.remove(mailer.engine, "after_cursor_execute", seen)
    assert len(updates) == 5  # start the first; four times: record one and start the next (or nothing)
    assert len(on_driver) == (5 if is_postgres(mailer.engine) else 0)
    assert max(sending_at_once) == 1
    assert _states(mailer) == Counter({"sent": 4})
    for i in range(4):
        assert len(mailbox.wait(1, to=f"one{i}-{tag}@x.io")) == 1

    # A stale sender's combined write changes neither row it no longer holds; the fresh holder's does.
    _plan(mailer, Envelope("OfferInvited", {"offer_id": "o2", "title": "Table", "currency": "eur", "holder_id": "x",
                                            "holder_name": "H", "unit_price": 100, "minimum_reservations": 1,
                                            "min_decrement": 1, "reservation_count": 0, "invite_at": "2030-04-01T12:00:00+00:00",
                                            "closes_at": "2030-05-01T12:00:00+00:00"}, "auction"))
    stale, fresh = sender._connection(), sender._connection()
    try:
        first, second, *_ = sender.claim()
        assert sender._step(stale, None, first)[1]
        _expire_leases(mailer)
        assert sender.reclaim_abandoned() == 4
        taken = {r["id"]: r for r in sender.claim()}  # another sender takes all four over
        assert sender._step(stale, (first, "sent", None), second) == (False, False)
        with mailer.sessions() as session:
            states = dict(session.execute(select(deliveries.c.id, deliveries.c.state)
                                          .where(deliveries.c.id.in_([first["id"], second["id"]]))).all())
        assert states == {first["id"]: "claimed", second["id"]: "claimed"}
        assert "lost its claim" in caplog.text
        assert sender._step(fresh, None, taken[first["id"]]) == (False, True)
        assert sender._step(fresh, (taken[first["id"]], "sent", None), taken[second["id"]]) == (True, True)
        with mailer.sessions() as session:
            row = session.execute(select(deliveries).where(deliveries.c.id == first["id"])).one()
            nxt = session.execute(select(deliveries).where(deliveries.c.id == second["id"])).one()
        assert (row.state, row.attempts, row.last_error) == ("sent", 2, None) and row.sent_at is not None
        assert (nxt.state, nxt.attempts, nxt.sent_at) == ("sending", 1, None)
    finally:
        stale.close()
        fresh.close()


def test_a_retry_goes_when_its_backoff_is_over_not_at_the_claimers_next_idle_look(mailer, mailbox):
    """A 421 puts the mail back with half a second of backoff: the idle claimer (which looks only
    once a second unless rung) must look when that retry falls due, not up to a second later."""
    tag = uuid.uuid4().hex[:6]
    refused_at: list[float] = []
    accepted_at: list[float] = []

    def once_busy(message, recipients):
        if tag not in recipients[0]:
            return None
        if not refused_at:
            refused_at.append(time.monotonic())
            return "421 4.3.2 Service busy, try later"
        accepted_at.append(time.monotonic())
        return None

    mailbox.respond = once_busy
    stop = threading.Event()
    sender = _sender(mailer, mailbox, concurrency=1)
    thread = threading.Thread(target=sender.run, args=(stop,), daemon=True)
    thread.start()
    try:
        event, recipient, _ = _events(tag)[1]  # one mail, to one purchaser
        _plan(mailer, event)
        wait_for(lambda: accepted_at, 15, interval=0.01, what="the retried mail accepted")
    finally:
        stop.set()
        doorbell.ring()
        thread.join(timeout=15)
        mailbox.respond = None
    assert accepted_at[0] - refused_at[0] < 0.85  # its backoff is 0.5 s


@pytest.mark.parametrize("statistics", ["fresh", "none"])
def test_a_claim_reads_the_pending_mails_not_the_history_of_sent_ones(mailer, mailbox, servers, statistics):
    """The delivery log keeps every mail ever sent. Through the primary key a claim read all of them
    before the first pending one (~35 ms a claim of 20 behind 200,000); ix_deliveries_pending walks the
    pending rows only, whatever the history, also in a prepared statement's generic plan. Without
    statistics (a log that grew in a burst before autovacuum came: B4's fan-out) PostgreSQL sorted every
    pending mail to claim 20, until the claim's transaction ruled out the plans that do not walk it."""
    from sqlalchemy import text

    from bench.claim_history import seed

    if servers[0] is None:
        pytest.skip("the claim's plan is PostgreSQL's")
    with mailer.engine.begin() as connection:
        connection.execute(text("ALTER TABLE deliveries SET (autovacuum_enabled = false)"))
        seed(connection, "old", "pending", 30000)
        connection.execute(text("UPDATE deliveries SET state = 'sent'"))  # sent: dead rows behind, until VACUUM
        seed(connection, "new", "pending", 3000)
        if statistics == "fresh":
            connection.execute(text("ANALYZE deliveries"))
    sender = _sender(mailer, mailbox)
    with Statements(mailer.engine, lambda s: s.lstrip().startswith("UPDATE deliveries") and "claim_token" in s) as run:
        claimed = sender.claim() + sender.claim()  # the first may step over what died since; the second must not
    assert [r["recipient"] for r in claimed] == [f"new-{i}@x.io" for i in range(1, 41)]  # the oldest pending ones
    statement, parameters, settings = run.kept[-1]  # the second claim, with the settings its transaction sent
    # psycopg prepares a statement run often; PostgreSQL may then plan it once for any values (generic)
    for mode in MODES:
        plan = executed_plan(mailer.engine, statement, parameters, mode, settings)
        assert rows_read(plan) <= 100 and blocks_read(plan) <= 200, (mode, rows_read(plan), blocks_read(plan), plan)


def test_reclaiming_abandoned_mails_reads_the_leases_not_the_mails_sent_since_vacuum(mailer, mailbox, servers):
    """Every mail passes through `sending`; once sent, its `sending` version and that version's entry in
    ix_deliveries_due are dead until VACUUM. The look for abandoned leases (every 5 s in each mailer)
    took a bitmap scan over all of them (6.9 ms a look in a full bench run)."""
    from sqlalchemy import text

    from bench.claim_history import seed

    if servers[0] is None:
        pytest.skip("the plan is PostgreSQL's")
    with mailer.engine.begin() as connection:
        connection.execute(text("ALTER TABLE deliveries SET (autovacuum_enabled = false)"))
        seed(connection, "old", "pending", 30000)
        connection.execute(text("UPDATE deliveries SET state = 'sending', claimed_at = now()"))
        connection.execute(text("UPDATE deliveries SET state = 'sent', sent_at = now()"))
        seed(connection, "lost", "sending", 3)
        seed(connection, "left", "claimed", 2)
        connection.execute(text("UPDATE deliveries SET claimed_at = now() - interval '1 hour' "
                                "WHERE state IN ('sending', 'claimed')"))
    sender = _sender(mailer, mailbox)
    assert sender.reclaim_abandoned() == 5  # the first look may step over what died since; the second must not
    with Statements(mailer.engine, lambda s: s.lstrip().startswith("UPDATE deliveries") and "claimed_at <" in s) as run:
        assert sender.reclaim_abandoned() == 0
    assert len(run.kept) == 2  # the claimed ones and the sending ones
    for statement, parameters, settings in run.kept:
        for mode in MODES:
            plan = executed_plan(mailer.engine, statement, parameters, mode, settings)
            assert blocks_read(plan) <= 200, (mode, blocks_read(plan), plan)


def test_an_interrupted_concurrent_build_of_the_claimers_index_is_not_taken_for_the_index(servers):
    """docs/operations.md: on a large log the operator builds ix_deliveries_pending CONCURRENTLY first, and
    migration 0006 "finds it and does nothing". A CONCURRENTLY build that fails (a statement_timeout, a
    cancel, a deadlock) leaves an INVALID index behind, which the planner never uses: IF NOT EXISTS (the
    documented command run again, and the migration) skips it, 0006 is recorded, and the claim walks the
    whole history as before. After the migration the claimer's index must be usable."""
    from sqlalchemy import text

    from services.mailer.tables import MIGRATIONS
    from shared.migrations import upgrade
    from tests.infra import postgres_schema

    with postgres_schema(servers, "pending_ix", "CREATE INDEX CONCURRENTLY is PostgreSQL's") as (engine, schema):
        upgrade(engine, MIGRATIONS, schema, "0005")
        build = ("CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_deliveries_pending ON deliveries (id) "
                 "WHERE state = 'pending'")  # as docs/operations.md says, in the service's schema
        with engine.connect() as writer, engine.connect().execution_options(isolation_level="AUTOCOMMIT") as admin:
            writer.execute(text("LOCK TABLE deliveries IN ROW EXCLUSIVE MODE"))  # a sender's write in flight
            admin.execute(text("SET statement_timeout = '300ms'"))
            with pytest.raises(Exception, match="statement timeout"):
                admin.execute(text(build))  # waits for the writer, times out: the index is left INVALID
            writer.rollback()
            admin.execute(text("SET statement_timeout = 0"))
            admin.execute(text(build))  # the documented command, run again: "already exists, skipping"
        upgrade(engine, MIGRATIONS, schema)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0006"
            valid = connection.execute(text(
                "SELECT i.indisvalid FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid "
                "WHERE c.relname = 'ix_deliveries_pending' AND c.relnamespace = CAST(:schema AS regnamespace)"),
                {"schema": schema}).scalar_one()
        assert valid, "migration 0006 is recorded but ix_deliveries_pending is INVALID: the claim cannot use it"
