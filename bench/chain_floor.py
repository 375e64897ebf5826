"""The floor of one accepted reservation as a whole chain: the cheapest design within the design card.

`python bench/chain_floor.py [--seconds 30] [--json PATH]` on a quiet machine. bench/floor.py prices
each piece of a reservation bare and on its own; this builds the whole chain the way cobuy's shape
requires it, with the design card's libraries (Flask under gunicorn, marshmallow, SQLAlchemy on
psycopg 3, PostgreSQL, kombu on RabbitMQ, an aiohttp gateway, smtplib) and only what SPEC makes
necessary; of cobuy's own code it imports only the reservation's two SQL statements. It answers:
what does an accepted reservation cost on this machine, end to end, at the least? The unit is
bench/run.py's B1 `machine_ms_per_reservation`: the whole machine's busy time (/proc/stat: every process, the kernel's loopback, PostgreSQL,
RabbitMQ, wrk), here from the start of the drive until every accepted reservation's mail has
reached the sink, the idle machine's own use subtracted, over the reservations in the table.

Each step is a process of its own, as in cobuy:

- web: Flask under gunicorn with the reservation service's 2 workers × 4 threads (gthread), a
  SQLAlchemy engine with a pool per worker. `POST /reserve/<offer>` {name, email}: a marshmallow
  schema checks the name's length, refuses control characters in the name and the address (SPEC §6),
  and checks the address's syntax with `email_validator` (no DNS look-up, only what any SMTP relay
  carries), as cobuy's shared/validation.py does; then one transaction of cobuy's two
  statements on the DBAPI cursor (services/reservation/reservations.py, `_reserve_at_once`): the
  offer's shared advisory lock with the offer itself (the close cut takes it exclusively, so no
  reservation slips past a close), then the reservation and its event's outbox row in one CTE,
  unique per (offer, lower-cased e-mail) (SPEC §2: one per offer and e-mail). The answer is SPEC's
  201 {id, offer_id, status, cancel_token}; the cancel token is an HMAC of the id, stored nowhere.
- gateway: bench/floor.py's bare aiohttp pass-through proxy (one process on uvloop): SPEC's one
  public door. wrk drives it.
- relay: the outbox, published (the reservation's commit and its event are one transaction, so no
  accepted reservation goes unannounced, SPEC §7): one loop deletes up to 100 rows in id order
  (`FOR UPDATE SKIP LOCKED`, so relays could run side by side), publishes each with kombu,
  persistent, to a durable exchange and queue, waits for the broker's confirms once for the batch,
  then commits; with nothing to send it sleeps 50 ms (cobuy's relay polls every 0.05 s as well).
- planner: the mailer's consumer (kombu, prefetch 100): per event one transaction, one statement,
  the inbox row (the event id, ON CONFLICT DO NOTHING: a redelivery plans nothing twice) and a
  pending delivery row, then the ack. SPEC §5 asks each mail once, none lost: a planned row survives
  a crash of the sender, the inbox a redelivery.
- sender: a loop claiming up to 20 pending deliveries (`UPDATE … SET state = 'sending'` over a
  `FOR UPDATE SKIP LOCKED` pick, a partial index on the pending rows), and for each one an f-string
  two-part (text and HTML) confirmation of ~2.6 KB with the purchaser's name, the offer, the price,
  the minimum, the deadline and the cancel link (SPEC §5), sent with smtplib over one kept
  connection, then marked `sent` in its own commit before the next goes (as cobuy's sender does):
  rows a dead sender left `sending` go back to `pending` when it starts again, so no mail is lost
  and only the one in flight at the crash can go twice, as in cobuy.
- sink: bench/floor.py's SMTP sink (aiosmtpd, headers read for the subject only), counting mails.

Left out, as near zero per reservation or outside an accepted reservation's path: the count (cobuy
recounts an offer a few times a second, coalesced, whatever the rate) and the auction and catalog
consumers that hear it; the repeat, the re-reservation after a cancel, Idempotency-Key and verified
offers (cobuy's general path: a request that is not new answers 409 here); metrics, logs, rate
limits, cobuy's leases and claim tokens on deliveries (with `--senders N` each sender has a number
instead, and takes back only its own when it starts),
the language of the mail, retries.

`--count` adds catalog's count and B2's probe (bench/run.py's `count_freshness`, beside wrk): catalog's
consumer on a second queue of the relay's exchange (below, `catalog`) and a catalog web, `GET
/offers/<id>` (one SELECT), behind the gateway, which routes by path prefix: the freshest count the
fixed shape allows, for B2's floor. `--senders N` runs N senders, each on its own SMTP connection, so
the mail keeps closer to wrk's rate and more of it falls in wrk's window.

Besides the figure: wrk's rate, p99 and errors; the machine's ms per reservation within wrk's window
alone (what B1's window sees, some mails still behind), also without the idle machine subtracted as
B1 reports it; how long the mails took to drain after wrk stopped; each part's own CPU per
reservation: the chain's processes, this database's PostgreSQL backends, PostgreSQL's and RabbitMQ's
shared processes, wrk and this driver (its polls). Their sum does not move with other users' load
as the machine's figure does (only the shared parts do), but leaves out what the kernel does outside
them. Mails received must equal reservations accepted.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import html
import json
import os
import re
import resource
import smtplib
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from email.header import Header
from email.utils import formatdate
from pathlib import Path

import requests
from email_validator import EmailNotValidError, validate_email
from flask import Flask, request
from kombu import Connection, Consumer, Exchange, Producer, Queue
from marshmallow import RAISE, Schema, ValidationError, fields, validate
from psycopg.rows import namedtuple_row
from sqlalchemy import create_engine, make_url, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.floor import PROXY, SINK, idle_rate  # noqa: E402
from bench.gateway_cpu import wait_for_port as wait_port  # noqa: E402
from bench.run import AMQP, PG, Bench, count_freshness, freshness_figures, machine_busy, wrk  # noqa: E402
from services.reservation import reservations  # noqa: E402
from tests.infra import free_port  # noqa: E402

SECRET = b"chain-floor"  # the cancel tokens' HMAC key
SENDER = "no-reply@cobuy.example"
SITE = "https://cobuy.example"
EVENT_TYPE = "ReservationAccepted"

SCHEMA = """
CREATE TABLE offers (
    id text PRIMARY KEY, title text NOT NULL, currency text NOT NULL, closes_at timestamptz NOT NULL,
    unit_price integer NOT NULL, minimum_reservations integer NOT NULL, holder_name text NOT NULL,
    closed boolean NOT NULL, verify_emails boolean NOT NULL);
CREATE TABLE reservations (
    id text PRIMARY KEY, offer_id text NOT NULL, name text NOT NULL, email text NOT NULL, email_key text NOT NULL,
    status text NOT NULL, revision integer NOT NULL, created_at timestamptz NOT NULL, lang text NOT NULL,
    UNIQUE (offer_id, email_key));
CREATE TABLE outbox (
    seq bigserial PRIMARY KEY, event_id text NOT NULL, type text NOT NULL, body text NOT NULL,
    created_at timestamptz NOT NULL, attempts integer NOT NULL);
CREATE TABLE inbox (event_id text PRIMARY KEY, processed_at timestamptz NOT NULL);
CREATE TABLE deliveries (
    id bigserial PRIMARY KEY, event_id text NOT NULL, recipient text NOT NULL, body text NOT NULL,
    state text NOT NULL, sent_at timestamptz, sender integer);
CREATE INDEX deliveries_pending ON deliveries (id) WHERE state = 'pending';
CREATE TABLE counts (offer_id text PRIMARY KEY, reservation_count integer NOT NULL);
CREATE TABLE catalog_inbox (event_id text PRIMARY KEY);
"""

# cobuy's two statements, the same strings: the one piece of cobuy this imports, so that the floor's
# database work cannot drift from the reservation's
LOCK_AND_OFFER, INSERT_WITH_EVENT = reservations._LOCK_AND_OFFER, reservations._INSERT_WITH_EVENT

TAKE_OUTBOX = ("DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT 100 FOR UPDATE SKIP LOCKED) "
               "RETURNING seq, event_id, type, body")
PLAN = ("WITH first AS (INSERT INTO inbox (event_id, processed_at) VALUES (%(event_id)s, now()) "
        "ON CONFLICT DO NOTHING RETURNING event_id) "
        "INSERT INTO deliveries (event_id, recipient, body, state) SELECT event_id, %(recipient)s, %(body)s, 'pending' "
        "FROM first")
# what this sender left when it died (each sender has its number, so one starting again does not
# take back the mails the others are sending)
RESUME = "UPDATE deliveries SET state = 'pending' WHERE state = 'sending' AND sender = %(me)s"
CLAIM = ("UPDATE deliveries SET state = 'sending', sender = %(me)s WHERE id IN (SELECT id FROM deliveries "
         "WHERE state = 'pending' ORDER BY id LIMIT 20 FOR UPDATE SKIP LOCKED) RETURNING id, event_id, recipient, body")
MARK_SENT = "UPDATE deliveries SET state = 'sent', sent_at = now() WHERE id = %(id)s"
COUNT_BATCH = ("WITH events AS (SELECT DISTINCT * FROM unnest(%(event_ids)s::text[], %(offer_ids)s::text[]) "
               "AS e (event_id, offer_id)), "  # DISTINCT: an event delivered twice in one batch counts once
               "new AS (INSERT INTO catalog_inbox (event_id) SELECT event_id FROM events ON CONFLICT DO NOTHING "
               "RETURNING event_id) "
               "UPDATE counts SET reservation_count = reservation_count + added.n "
               "FROM (SELECT offer_id, count(*) AS n FROM events JOIN new USING (event_id) GROUP BY offer_id) added "
               "WHERE counts.offer_id = added.offer_id")
SHOW_COUNT = "SELECT reservation_count FROM counts WHERE offer_id = %(offer_id)s"


def engine_for(url: str, **kwargs):
    return create_engine(url.replace("postgresql://", "postgresql+psycopg://"), **kwargs)


# ---- web -----------------------------------------------------------------------------------------

CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")  # cobuy's (shared/validation.py)


def no_control_characters(value: str) -> None:
    if CONTROL.search(value):
        raise ValidationError("Control characters (such as line breaks) are not allowed.")


class Email(fields.String):
    """As cobuy's (shared/validation.py): syntax only, no DNS look-up, an address SMTP can carry."""

    def _deserialize(self, value, attr, data, **kwargs):
        address = super()._deserialize(value, attr, data, **kwargs).strip()
        no_control_characters(address)
        try:
            checked = validate_email(address, check_deliverability=False, allow_smtputf8=False)
        except EmailNotValidError as exc:
            raise ValidationError(f"Not a valid e-mail address: {exc}") from None
        return checked.ascii_email or checked.normalized


class ReservationRequest(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(required=True, validate=[validate.Length(min=1, max=100), no_control_characters])
    email = Email(required=True)


def lock_key(offer_id: str) -> int:
    """cobuy's key for the offer's advisory lock (shared/db.py lock_key)."""
    return int.from_bytes(hashlib.blake2b(f"offer|{offer_id}".encode(), digest_size=8).digest(), "big", signed=True)


def cancel_token(reservation_id: str) -> str:
    return hmac.new(SECRET, f"cancel|{reservation_id}".encode(), hashlib.sha256).hexdigest()[:40]


def web_app() -> Flask:
    """gunicorn's `bench.chain_floor:web_app()`: called in each worker, so each has its own pool."""
    app = Flask(__name__)
    engine = engine_for(os.environ["CHAIN_DATABASE_URL"], pool_size=4, max_overflow=0)
    schema = ReservationRequest()

    @app.post("/reserve/<offer_id>")
    def reserve(offer_id):
        try:
            body = schema.load(request.get_json())
        except ValidationError as exc:
            return {"errors": exc.messages}, 422
        with engine.begin() as connection:
            with connection.connection.dbapi_connection.cursor(row_factory=namedtuple_row) as cursor:
                cursor.execute(LOCK_AND_OFFER, {"lock_key": lock_key(offer_id), "offer_id": offer_id})
                offer = cursor.fetchone()
                now = datetime.now(timezone.utc)
                if offer.id is None:
                    return {"error": "offer_not_found"}, 404
                if offer.closed or offer.closes_at <= now:
                    return {"error": "offer_closed"}, 409
                reservation_id, event_id = str(uuid.uuid4()), str(uuid.uuid4())
                token = cancel_token(reservation_id)
                event = {"id": event_id, "type": EVENT_TYPE, "occurred_at": now.isoformat(), "data": {
                    "reservation_id": reservation_id, "offer_id": offer.id, "name": body["name"],
                    "email": body["email"], "lang": "en", "status": "active", "cancel_token": token,
                    "offer": {"title": offer.title, "currency": offer.currency,
                              "closes_at": offer.closes_at.isoformat(), "unit_price": offer.unit_price,
                              "minimum_reservations": offer.minimum_reservations, "holder_name": offer.holder_name}}}
                cursor.execute(INSERT_WITH_EVENT, {
                    "id": reservation_id, "offer_id": offer.id, "name": body["name"], "email": body["email"],
                    "email_key": body["email"].lower(), "status": "active", "created_at": now, "lang": "en",
                    "verify_emails": False, "event_id": event_id, "event_type": EVENT_TYPE,
                    "body": json.dumps(event)})
                if not cursor.fetchone().inserted:  # a repeat, or an offer that asks for verification
                    return {"error": "not_new"}, 409
        return {"id": reservation_id, "offer_id": offer_id, "status": "active", "cancel_token": token}, 201

    return app


# ---- relay, planner, sender: each run as `python bench/chain_floor.py <role> ...` ---------------

def broker_queue(name: str, consumer: str = "") -> Queue:
    """The mailer's queue (the planner's), or with `consumer` another service's, bound to the same
    exchange: each gets every event."""
    return Queue(f"{name}-{consumer}" if consumer else name, Exchange(name, "direct", durable=True),
                 routing_key=EVENT_TYPE, durable=True)


def relay(database_url: str, amqp_url: str, queue_name: str) -> None:
    db = engine_for(database_url, pool_size=1).raw_connection()
    cursor = db.cursor()
    with Connection(amqp_url, transport_options={"confirm_publish": False}) as broker:
        channel = broker.channel()
        channel.confirm_select()
        published = confirmed = 0

        def stored(tag, multiple):
            nonlocal confirmed
            confirmed = max(confirmed, tag)

        def refused(tag, multiple):
            raise RuntimeError(f"the broker refused publish {tag}")  # the batch's rows stay, for a restart

        channel.events["basic_ack"].add(stored)
        channel.events["basic_nack"].add(refused)
        producer = Producer(channel, exchange=broker_queue(queue_name).exchange, routing_key=EVENT_TYPE)
        print("ready", flush=True)
        while True:
            cursor.execute(TAKE_OUTBOX)
            rows = sorted(cursor.fetchall())
            if not rows:
                db.rollback()
                time.sleep(0.05)
                continue
            for _, event_id, type_, body in rows:
                producer.publish(body, content_type="application/json", content_encoding="utf-8", delivery_mode=2,
                                 mandatory=True, message_id=event_id, type=type_)
            published += len(rows)
            while confirmed < published:
                broker.drain_events(timeout=10)
            db.commit()  # published and confirmed: only now are the rows gone


def planner(database_url: str, amqp_url: str, queue_name: str) -> None:
    db = engine_for(database_url, pool_size=1).raw_connection()
    cursor = db.cursor()

    def on_message(event, message):
        cursor.execute(PLAN, {"event_id": event["id"], "recipient": event["data"]["email"].lower(),
                              "body": message.body})
        db.commit()
        message.ack()

    with Connection(amqp_url) as broker:
        with Consumer(broker.channel(), queues=[broker_queue(queue_name)], callbacks=[on_message], accept=["json"],
                      prefetch_count=100):
            print("ready", flush=True)
            while True:
                broker.drain_events()


def catalog(database_url: str, amqp_url: str, queue_name: str) -> None:
    """With --count: catalog's consumer, keeping the offer's count in its read model from the
    reservation events themselves, with no recount and no count event of its own (cobuy recounts an
    offer a few times a second instead: its CPU a reservation for a wait). Whatever has arrived is
    applied at once in one transaction, one statement: the inbox rows (a redelivery counts nothing
    twice) and each offer's count plus its new events (a cancel would be minus one); then one ack for
    them all. One commit an event, tried first, fell behind under B1's load (p99 2.9 s)."""
    db = engine_for(database_url, pool_size=1).raw_connection()
    cursor = db.cursor()
    arrived = []

    with Connection(amqp_url) as broker:
        with Consumer(broker.channel(), queues=[broker_queue(queue_name, "catalog")],
                      callbacks=[lambda event, message: arrived.append((event, message))],
                      accept=["json"], prefetch_count=100):
            print("ready", flush=True)
            while True:
                broker.drain_events()
                try:
                    while len(arrived) < 100:
                        broker.drain_events(timeout=0)  # what else is already here
                except TimeoutError:
                    pass
                if not arrived:  # the broker said something else (a connection.blocked, say)
                    continue
                cursor.execute(COUNT_BATCH, {"event_ids": [event["id"] for event, _ in arrived],
                                             "offer_ids": [event["data"]["offer_id"] for event, _ in arrived]})
                db.commit()
                arrived[-1][1].ack(multiple=True)
                arrived.clear()


def catalog_app() -> Flask:
    """With --count, gunicorn's `bench.chain_floor:catalog_app()`: `GET /offers/<id>` answers the
    offer's count from catalog's read model (one SELECT), as B2's probe reads cobuy's."""
    app = Flask(__name__)
    engine = engine_for(os.environ["CHAIN_DATABASE_URL"], pool_size=4, max_overflow=0)

    @app.get("/offers/<offer_id>")
    def offer(offer_id):
        with engine.connect() as connection:
            with connection.connection.dbapi_connection.cursor() as cursor:
                cursor.execute(SHOW_COUNT, {"offer_id": offer_id})
                row = cursor.fetchone()
        if row is None:
            return {"error": "offer_not_found"}, 404
        return {"id": offer_id, "reservation_count": row[0]}

    return app


def confirmation(event_id: str, data: dict) -> bytes:
    """The purchaser's confirmation (SPEC §5: the offer, price, minimum, deadline and cancel link)."""
    offer = data["offer"]
    name, title, holder, minimum = data["name"], offer["title"], offer["holder_name"], offer["minimum_reservations"]
    price = f"{offer['currency'].upper()} {offer['unit_price'] / 100:.2f}"
    closes = datetime.fromisoformat(offer["closes_at"]).strftime("%d %B %Y, %H:%M UTC")
    cancel = f"{SITE}/reservations/{data['reservation_id']}/cancel?token={data['cancel_token']}"
    subject = f"Reservation recorded: {title} ({price})"
    if not subject.isascii():
        subject = Header(subject, "utf-8").encode()
    plain = (
        f"Dear {name},\n\nyour reservation of \"{title}\" is recorded.\n\n"
        f"  Offered by:          {holder}\n  Reservation:         {data['reservation_id']}\n"
        f"  Unit price:          {price}\n  Minimum:             {minimum} reservations\n"
        f"  Reservations close:  {closes}\n\n"
        f"If {minimum} or more people have reserved when the term ends, the joint purchase is concluded at this\n"
        f"price and we write to you again with the seller's contact. If fewer have, it fails and you owe\n"
        f"nothing. Until the term ends you may cancel your reservation with this link:\n\n{cancel}\n\n"
        f"Other sellers may offer a better condition before the term ends; if one does, we tell you the new\n"
        f"price and minimum, and your reservation carries over to it. You need not do anything.\n\n"
        f"-- \ncobuy, joint purchases at the price many buyers get\n")
    name, title, holder = html.escape(name), html.escape(title), html.escape(holder)
    rich = (
        f"<!doctype html>\n<html><body style=\"font-family: sans-serif\">\n<p>Dear {name},</p>\n"
        f"<p>your reservation of <strong>{title}</strong> is recorded.</p>\n<table>\n"
        f"<tr><th align=\"left\">Offered by</th><td>{holder}</td></tr>\n"
        f"<tr><th align=\"left\">Reservation</th><td>{data['reservation_id']}</td></tr>\n"
        f"<tr><th align=\"left\">Unit price</th><td>{price}</td></tr>\n"
        f"<tr><th align=\"left\">Minimum</th><td>{minimum} reservations</td></tr>\n"
        f"<tr><th align=\"left\">Reservations close</th><td>{closes}</td></tr>\n</table>\n"
        f"<p>If {minimum} or more people have reserved when the term ends, the joint purchase is concluded at\n"
        f"this price and we write to you again with the seller's contact. If fewer have, it fails and you\n"
        f"owe nothing. Until the term ends you may <a href=\"{cancel}\">cancel your reservation</a>.</p>\n"
        f"<p>Other sellers may offer a better condition before the term ends; if one does, we tell you the\n"
        f"new price and minimum, and your reservation carries over to it. You need not do anything.</p>\n"
        f"<p style=\"color: #666\">cobuy, joint purchases at the price many buyers get</p>\n</body></html>\n")
    return (
        f"From: cobuy <{SENDER}>\nTo: {data['email']}\nSubject: {subject}\nDate: {formatdate(usegmt=True)}\n"
        f"Message-ID: <{event_id}@cobuy.example>\nMIME-Version: 1.0\n"
        f"Content-Type: multipart/alternative; boundary=\"part\"\n\n"
        f"--part\nContent-Type: text/plain; charset=\"utf-8\"\nContent-Transfer-Encoding: 8bit\n\n{plain}\n"
        f"--part\nContent-Type: text/html; charset=\"utf-8\"\nContent-Transfer-Encoding: 8bit\n\n{rich}\n"
        f"--part--\n").replace("\n", "\r\n").encode()


def sender(database_url: str, smtp_port: str, me: str) -> None:
    db = engine_for(database_url, pool_size=1, isolation_level="AUTOCOMMIT").raw_connection()
    cursor = db.cursor()
    cursor.execute(RESUME, {"me": int(me)})
    with smtplib.SMTP("127.0.0.1", int(smtp_port)) as smtp:
        print("ready", flush=True)
        while True:
            cursor.execute(CLAIM, {"me": int(me)})
            rows = sorted(cursor.fetchall())
            if not rows:
                time.sleep(0.05)
                continue
            for delivery_id, event_id, recipient, body in rows:
                smtp.sendmail(SENDER, [recipient], confirmation(event_id, json.loads(body)["data"]))
                cursor.execute(MARK_SENT, {"id": delivery_id})


ROLES = {"relay": relay, "planner": planner, "sender": sender, "catalog": catalog}


# ---- the measurement ------------------------------------------------------------------------------

def server_cpu(database: str) -> dict[int, tuple[str, float]]:
    """{pid: (part, CPU seconds so far)} of this database's PostgreSQL backends, PostgreSQL's own
    processes (WAL writer, checkpointer…) and RabbitMQ: the last two shared with whoever else uses them."""
    tick, found = os.sysconf("SC_CLK_TCK"), {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
            if name == "beam.smp":
                part = "rabbitmq (shared)"
            elif name == "postgres":
                title = Path(f"/proc/{pid}/cmdline").read_text()
                if database in title:
                    part = "postgresql backends"
                elif "(" in title or "[local]" in title:
                    continue  # another database's backend
                else:
                    part = "postgresql (shared)"
            else:
                continue
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            found[int(pid)] = (part, (int(stat[11]) + int(stat[12])) / tick)
        except OSError:
            continue
    return found


def cpu_by_part(chain: Chain) -> dict:
    """CPU seconds so far of each part of the chain, as something `used_since` can subtract."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"own": {name: Bench.tree_cpu(process.pid) for name, process in chain.processes.items()},
            "servers": server_cpu(chain.db_name),
            # wrk is the only child that ends (and is counted in RUSAGE_CHILDREN) while measuring
            "wrk": children.ru_utime + children.ru_stime, "this driver": me.ru_utime + me.ru_stime}


def used_since(before: dict, after: dict) -> dict[str, float]:
    used = {name: cpu - before["own"][name] for name, cpu in after["own"].items()}
    for pid, (part, cpu) in after["servers"].items():
        used[part] = used.get(part, 0.0) + cpu - before["servers"].get(pid, (part, 0.0))[1]
    used.update({name: after[name] - before[name] for name in ("wrk", "this driver")})
    return used


class Chain:
    """A fresh database and queue, and the chain's processes; `close` undoes it all."""

    def __init__(self, count: bool = False, senders: int = 1):
        self.count, self.senders = count, senders
        self.consumers = ("", "catalog") if count else ("",)  # the broker queues: the mailer's, catalog's
        self.tag = tag = uuid.uuid4().hex[:8]
        self.admin = engine_for(PG, isolation_level="AUTOCOMMIT")
        self.db_name, self.queue_name = f"cobuy_chain_{tag}", f"cobuy-chain-{tag}"
        self.db_url = make_url(PG).set(database=self.db_name).render_as_string(hide_password=False)
        self.processes: dict[str, subprocess.Popen] = {}
        self.db = None
        self.port = free_port()

    def open(self) -> None:
        with self.admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{self.db_name}"'))
        self.db = engine_for(self.db_url, pool_size=1)
        with self.db.begin() as c:
            c.exec_driver_sql(SCHEMA)
        with Connection(AMQP) as broker:
            for consumer in self.consumers:
                broker_queue(self.queue_name, consumer)(broker.channel()).declare()
        web_port, smtp_port, catalog_port = free_port(), free_port(), free_port()
        self.start("sink", [sys.executable, "-c", SINK, str(smtp_port)], stdin=subprocess.PIPE)
        self.start_web("web", "web_app()", web_port)
        routes = [f"/reserve/=http://127.0.0.1:{web_port}"]
        if self.count:
            self.start_web("catalog web", "catalog_app()", catalog_port)
            routes.append(f"/offers/=http://127.0.0.1:{catalog_port}")
        self.start("gateway", [sys.executable, "-c", PROXY, str(self.port), *routes], stdout=subprocess.DEVNULL)
        me = [sys.executable, str(Path(__file__).resolve())]
        self.start("relay", [*me, "relay", self.db_url, AMQP, self.queue_name])
        self.start("planner", [*me, "planner", self.db_url, AMQP, self.queue_name])
        senders = [f"sender {n}" if self.senders > 1 else "sender" for n in range(self.senders)]
        for n, name in enumerate(senders):
            self.start(name, [*me, "sender", self.db_url, str(smtp_port), str(n)])
        if self.count:
            self.start("catalog", [*me, "catalog", self.db_url, AMQP, self.queue_name])
        for name in ["sink", "relay", "planner", *senders] + (["catalog"] if self.count else []):
            assert self.processes[name].stdout.readline().strip() == "ready", f"{name} did not start"
        wait_port(web_port)
        if self.count:
            wait_port(catalog_port)
        wait_port(self.port)

    def start_web(self, name: str, app: str, port: int) -> None:
        """A Flask app of this module under gunicorn, as cobuy runs its web processes: 2 workers × 4 threads."""
        self.start(name, [sys.executable, "-m", "gunicorn", "--no-control-socket", "-w", "2", "-k", "gthread",
                          "--threads", "4", "--log-level", "warning", "-b", f"127.0.0.1:{port}", f"bench.chain_floor:{app}"],
                   env={**os.environ, "CHAIN_DATABASE_URL": self.db_url}, stdout=subprocess.DEVNULL)

    def start(self, name: str, command: list[str], **kwargs) -> None:
        self.processes[name] = subprocess.Popen(command, cwd=ROOT, text=True, **{"stdout": subprocess.PIPE, **kwargs})

    def offer(self, title: str, minimum: int) -> str:
        offer_id = str(uuid.uuid4())
        with self.db.begin() as c:
            c.execute(text("INSERT INTO offers VALUES (:id, :title, 'eur', :closes_at, 98000, :minimum, "
                           "'Bench Seller', false, false)"),
                      {"id": offer_id, "title": title, "closes_at": datetime.now(timezone.utc) + timedelta(days=1),
                       "minimum": minimum})
            c.execute(text("INSERT INTO counts VALUES (:id, 0)"), {"id": offer_id})
        return offer_id

    def value(self, sql: str, **params) -> int:
        with self.db.connect() as c:
            return c.execute(text(sql), params).scalar_one()

    def drained(self, limit: float = 300.0) -> float:
        """Wait until every reservation so far has its mail sent (the sink took it); when that was."""
        deadline = time.time() + limit
        while time.time() < deadline:
            if self.value("SELECT count(*) FROM deliveries WHERE state = 'sent'") == \
                    self.value("SELECT count(*) FROM reservations"):
                return time.time()
            dead = [name for name, process in self.processes.items() if process.poll() is not None]
            assert not dead, f"{', '.join(dead)} stopped"
            time.sleep(0.1)
        raise TimeoutError(f"mails not all sent after {limit} s")

    def mails_received(self) -> int:
        sink = self.processes["sink"]
        sink.stdin.close()
        return int(sink.stdout.readline())

    def close(self) -> None:
        for process in reversed(self.processes.values()):
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.db is not None:
            self.db.dispose()
        with self.admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'))
        self.admin.dispose()
        with Connection(AMQP) as broker:
            for consumer in self.consumers:
                queue = broker_queue(self.queue_name, consumer)(broker.channel())
                queue.delete()
            queue.exchange.delete()


def measure(chain: Chain, seconds: int, idle: float) -> dict:
    base = f"http://127.0.0.1:{chain.port}"
    warm = chain.offer("Warm-up kettle", 10)
    wrk(base, 16, 2, "reserve.lua", f"/reserve/{warm}", f"warm{chain.tag}")
    chain.drained()
    offer = chain.offer("Electric bike, 20 inch", 40)
    stop, taken, gets, probe = threading.Event(), [], [], None
    if chain.count:  # B2's probe, as bench/run.py runs it beside B1
        http = requests.Session()
        probe = threading.Thread(target=lambda: taken.extend(count_freshness(
            f"{base}/reserve/{offer}", f"{chain.tag}@bench.example",
            lambda: chain.value("SELECT count(*) FROM reservations WHERE offer_id = :o", o=offer),
            lambda: http.get(f"{base}/offers/{offer}").json()["reservation_count"], stop, gets)))
        probe.start()
    cpu = cpu_by_part(chain)
    busy, at = machine_busy()
    result = wrk(base, 64, seconds, "reserve.lua", f"/reserve/{offer}", f"chain{chain.tag}")
    window_busy, window_at = machine_busy()
    stop.set()
    if probe:
        probe.join()
    done_at = chain.drained()
    end_busy, end_at = machine_busy()
    cpu = used_since(cpu, cpu_by_part(chain))
    accepted = chain.value("SELECT count(*) FROM reservations WHERE offer_id = :o", o=offer)
    total = chain.value("SELECT count(*) FROM reservations")
    received = chain.mails_received()
    assert received == total, f"{received} mails received for {total} reservations"
    if chain.count:
        shown = chain.value("SELECT reservation_count FROM counts WHERE offer_id = :o", o=offer)
        assert shown == accepted, f"catalog counts {shown} of {accepted} reservations"
    per = 1000 / accepted
    machine = end_busy - busy
    return {
        "idle_cpu_per_s": round(idle, 3),
        "chain_ms": round((machine - idle * (end_at - at)) * per, 3),
        "window_ms": round((window_busy - busy - idle * (window_at - at)) * per, 3),
        "window_ms_raw": round((window_busy - busy) * per, 3),
        "accepted": accepted, "wrk_requests": result["requests"], "rps": round(result["rps"]),
        "p99_ms": round(result["p99_ms"], 1), "errors": result["errors"],
        "drain_s": round(done_at - window_at, 2),
        "mails": {"received": received, "for_warm_up": total - accepted},
        "processes_ms": round(sum(cpu.values()) * per, 3),
        "own_ms": {name: round(used * per, 3) for name, used in sorted(cpu.items(), key=lambda kv: -kv[1])},
        "rest_ms": round((machine - sum(cpu.values())) * per, 3),
        **({"B2": freshness_figures(taken, gets)} if chain.count else {}),
    }


def report(row: dict, seconds: int) -> None:
    print(f"wrk {seconds} s at 64 connections through the gateway: {row['rps']} /s, p99 {row['p99_ms']} ms, "
          f"{row['errors']} errors; {row['accepted']} reservations accepted (wrk counted {row['wrk_requests']})")
    if "B2" in row:
        print(f"B2, 201 to the count shown through the gateway, beside wrk: p99 {row['B2']['value']} ms, "
              f"p50 {row['B2']['p50_ms']} ms, {row['B2']['samples']} probes; the count GETs alone "
              f"{row['B2'].get('count_get_ms')}")
    print(f"mails drained {row['drain_s']} s after wrk stopped; {row['mails']['received']} received "
          f"({row['mails']['for_warm_up']} of them for the warm-up), one for each reservation")
    print(f"\n{'machine ms per reservation':<44} {'ms':>7}")
    print(f"{'  the whole chain, until the last mail':<44} {row['chain_ms']:7.3f}")
    print(f"{'  within the wrk window alone':<44} {row['window_ms']:7.3f}   (B1's way, idle not subtracted: "
          f"{row['window_ms_raw']:.3f})")
    print(f"{'  its processes, summed (below)':<44} {row['processes_ms']:7.3f}")
    print(f"\n{'own CPU per reservation, until the last mail':<44} {'ms':>7}")
    for name, ms in row["own_ms"].items():
        print(f"  {name:<42} {ms:7.3f}")
    print(f"  {'the machine besides (kernel, other users)':<42} {row['rest_ms']:7.3f}")
    print(f"\n(idle machine {row['idle_cpu_per_s']:.3f} CPU-s/s subtracted from the machine's figures; "
          f"\"shared\": other users' work included)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=30, help="the wrk drive")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--count", action="store_true",
                        help="with catalog's count (a consumer and a web) and B2's probe beside wrk")
    parser.add_argument("--senders", type=int, default=1,
                        help="sender processes, each on its own SMTP connection (one falls behind wrk's rate)")
    args = parser.parse_args()
    idle = idle_rate()
    chain = Chain(args.count, args.senders)
    try:
        chain.open()
        row = measure(chain, args.seconds, idle)
    finally:
        chain.close()
    report(row, args.seconds)
    if args.json:
        args.json.write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    if sys.argv[1:2] and sys.argv[1] in ROLES:
        ROLES[sys.argv[1]](*sys.argv[2:])
    else:
        main()
