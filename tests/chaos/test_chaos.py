"""Chaos: the production shape under faults, then a check of the whole history.

Runs `cobuy up --scale reservation=2,auction=3 --restart` on this run's PostgreSQL and RabbitMQ.
While 32 clients reserve and sellers counter-offer on offers whose invitation and close fall
inside the run, it SIGKILLs a consumer, an outbox relay, an auction replica and a gateway worker,
restarts RabbitMQ's app and terminates the services' PostgreSQL connections.

The embedded run (SQLite, the embedded broker: no server, also under CI) SIGKILLs a consumer, a
relay, then every process of `cobuy up` at once, as a power cut would, and starts it again on
the same data, with an invitation falling due while nothing runs.

The last offer asks for verified e-mails (SPEC §10): a verifier opens the links of most of its
confirmation mails as they arrive, so confirmations race the faults and the close. Counter-offers
start price-drop mails (a 10 s delay, a 20 s interval here, so several windows fall in the run).

Every operation is recorded as ok / failed / unknown; the same checks hold for every history
the faults allow. Bounded: every loop by count and time, traffic to loopback only, each run
well under two minutes (RabbitMQ) or one and a half (embedded).
"""
from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, func, select, text

from tests.processes import descendants
from tests.conftest import own_system
from tests.support import Cobuy, RunningSystem, instant, wait_for

CLIENTS = 32
OFFERS = 3
VERIFIED = OFFERS - 1  # the offer with verify_emails
PRICE_DROPS = {"COBUY_PRICE_DROP_DELAY_SECONDS": "10", "COBUY_PRICE_DROP_INTERVAL_SECONDS": "20"}
VERIFY_LINK = re.compile(r"/reservations/([0-9a-f-]+)/verify\?token=([0-9a-f]+)")


@dataclass
class History:
    ops: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, outcome: str, **facts) -> None:
        with self.lock:
            self.ops.append({"kind": kind, "outcome": outcome, "at": time.time(), **facts})

    def of(self, kind: str, outcome: str | None = None) -> list[dict]:
        return [o for o in self.ops if o["kind"] == kind and (outcome is None or o["outcome"] == outcome)]


def classify(reply: requests.Response | None, error: Exception | None) -> str:
    if error is not None or reply is None:
        return "unknown"  # the request may or may not have been applied
    if reply.status_code in (200, 201, 204):
        return "ok"
    if reply.status_code >= 500:
        return "unknown"
    return "failed"


@pytest.fixture
def chaos_system(servers, mailbox, output_dir, tmp_path):
    database_url, amqp_url, _ = servers
    if database_url is None or amqp_url is None or not shutil.which("rabbitmqctl"):
        pytest.skip("chaos needs this run's PostgreSQL and RabbitMQ (and rabbitmqctl) — CI has them")
    with own_system(servers, mailbox, tmp_path, output_dir / "cobuy-up-chaos.log",
                    ["--scale", "reservation=2,auction=3", "--web-workers", "2", "--restart"],
                    COBUY_MAIL_LEASE_SECONDS="3", **PRICE_DROPS) as running:
        yield running


@pytest.fixture
def embedded_chaos_system(servers, mailbox, output_dir, tmp_path):
    """Embedded whatever servers this run has (CI has them: this run must not use them)."""
    _, _, prefix = servers
    with own_system((None, None, prefix), mailbox, tmp_path, output_dir / "cobuy-up-chaos-embedded.log",
                    ["--scale", "reservation=2,auction=2", "--web-workers", "1", "--restart"],
                    COBUY_MAIL_LEASE_SECONDS="3", **PRICE_DROPS) as running:
        yield running


@dataclass
class Scenario:
    """The offers, the sellers and what the clients did."""

    system: RunningSystem
    cobuy: Cobuy
    tag: str
    holder: dict
    rivals: list[dict]
    offers: list[dict]
    history: History = field(default_factory=History)

    @classmethod
    def start(cls, system: RunningSystem, invite_in: float, close_in: float) -> "Scenario":
        cobuy = Cobuy(system.base_url)
        tag = uuid.uuid4().hex[:6]
        holder = cobuy.register_seller(name="Chaos Holder")
        rivals = [cobuy.register_seller(name=f"Chaos Rival {i}") for i in range(3)]
        offers = [cobuy.create_offer(holder, title=f"Chaos{tag} {i}", unit_price=100_000, minimum_reservations=50,
                                     min_decrement=10, invite_at=instant(invite_in + 5 * i),
                                     closes_at=instant(close_in + 5 * i), verify_emails=i == VERIFIED)
                  for i in range(OFFERS)]
        return cls(system, cobuy, tag, holder, rivals, offers)


def test_nothing_is_lost_or_doubled_under_faults(chaos_system, mailbox, output_dir):
    system = chaos_system
    steps = [
        (6, "SIGKILL catalog worker (consumer + relay)", lambda: _kill(system, "services.catalog.worker")),
        (12, "SIGKILL a reservation worker (outbox relay)", lambda: _kill(system, "services.reservation.worker")),
        (18, "SIGKILL a gateway worker", lambda: _kill_gateway_worker(system)),
        (24, "rabbitmqctl stop_app", lambda: subprocess.run(["rabbitmqctl", "-q", "stop_app"], timeout=120)),
        (28, "rabbitmqctl start_app", lambda: subprocess.run(["rabbitmqctl", "-q", "start_app"], timeout=120)),
        (33, "SIGKILL an auction replica", lambda: _kill(system, "services.auction.worker")),
        (38, "pg_terminate_backend of the services", lambda: _terminate_backends(system.database_url)),
    ]
    scenario = Scenario.start(system, invite_in=25, close_in=50)
    _run_clients_and_faults(scenario, steps, mailbox)
    subprocess.run(["rabbitmqctl", "-q", "await_startup"], timeout=120)
    _check_history(scenario, mailbox, output_dir / "chaos-report.json", faults=len(steps))


def test_embedded_mode_loses_nothing_when_every_process_is_killed(embedded_chaos_system, mailbox, output_dir):
    system = embedded_chaos_system
    steps = [
        (4, "SIGKILL catalog worker (consumer + relay)", lambda: _kill(system, "services.catalog.worker")),
        (7, "SIGKILL a reservation worker (outbox relay)", lambda: _kill(system, "services.reservation.worker")),
        (10, "SIGKILL every process of cobuy up, then start it again", lambda: _power_cut_and_restart(system)),
    ]
    # The first invitation falls due while nothing runs; the closes come after the restart.
    scenario = Scenario.start(system, invite_in=11, close_in=30)
    _run_clients_and_faults(scenario, steps, mailbox)
    _check_history(scenario, mailbox, output_dir / "chaos-report-embedded.json", faults=len(steps))


def _run_clients_and_faults(scenario: Scenario, steps: list, mailbox) -> None:
    """32 purchasers and three rival sellers until every offer has closed, the faults meanwhile; a
    verifier confirms most reservations of the verified offer from their mails."""
    cobuy, history, offers, tag = scenario.cobuy, scenario.history, scenario.offers, scenario.tag
    closes = [datetime.fromisoformat(o["closes_at"]).timestamp() for o in offers]
    stop_at = max(closes) + 2  # clients keep going across every deadline
    stop = threading.Event()

    def purchaser(n: int) -> None:
        session = requests.Session()
        rng = random.Random(n)
        for i in range(15):  # ~480 reservations over the run: enough to race every fault
            if stop.is_set() or time.time() > stop_at:
                return
            offer = offers[rng.randrange(OFFERS)]
            email = f"c{n}-{i}-{tag}@chaos.example"
            for attempt in range(2 if rng.random() < 0.1 else 1):  # some purchasers press twice
                reply, error = None, None
                try:
                    reply = session.post(cobuy.url(f"/api/v1/offers/{offer['id']}/reservations"),
                                         json={"name": f"Buyer {n}", "email": email}, timeout=15)
                except requests.RequestException as exc:
                    error = exc
                    session = requests.Session()
                history.record("reserve", classify(reply, error), offer=offer["id"], email=email,
                               status=reply.status_code if reply is not None else None)
            time.sleep(rng.uniform(1.0, 4.0))

    def seller(rival: dict, n: int) -> None:
        rng = random.Random(100 + n)
        for i in range(200):
            if stop.is_set() or time.time() > stop_at:
                return
            offer = offers[rng.randrange(OFFERS)]
            price = 100_000 - 10 * rng.randrange(1, 2000)
            reply, error = None, None
            try:
                reply = requests.post(cobuy.url(f"/api/v1/offers/{offer['id']}/counter-offers"),
                                      json={"unit_price": price, "minimum_reservations": 50},
                                      headers=cobuy.auth(rival), timeout=15)
            except requests.RequestException as exc:
                error = exc
            history.record("counter", classify(reply, error), offer=offer["id"], seller=rival["id"], price=price,
                           status=reply.status_code if reply is not None else None)
            time.sleep(rng.uniform(0.3, 1.0))

    def verifier() -> None:
        rng, seen = random.Random(7), set()
        verified_title = f"Reserved: {offers[VERIFIED]['title']} "
        while not stop.is_set() and time.time() < stop_at:
            for mail in mailbox.matching(subject=verified_title):
                found = VERIFY_LINK.search(mail.text)
                if found is None or found.group(1) in seen:
                    continue
                seen.add(found.group(1))
                if rng.random() < 0.2:
                    history.record("unverified", "ok", offer=offers[VERIFIED]["id"], email=mail.to)
                    continue  # some never confirm: they must lapse
                reply, error = None, None
                try:
                    reply = requests.post(cobuy.url(f"/api/v1/reservations/{found.group(1)}/verify"),
                                          json={"token": found.group(2)}, timeout=15)
                except requests.RequestException as exc:
                    error = exc
                history.record("verify", classify(reply, error), offer=offers[VERIFIED]["id"], email=mail.to,
                               status=reply.status_code if reply is not None else None)
            time.sleep(0.3)

    def faults() -> None:
        started = time.time()
        for at, name, action in steps:
            while time.time() - started < at and not stop.is_set():
                time.sleep(0.1)
            history.record("fault", "ok", name=name)
            action()

    threads = [threading.Thread(target=purchaser, args=(n,)) for n in range(CLIENTS)]
    threads += [threading.Thread(target=seller, args=(r, n)) for n, r in enumerate(scenario.rivals)]
    threads.append(threading.Thread(target=verifier))
    threads.append(threading.Thread(target=faults))
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join(timeout=max(stop_at - time.time(), 0) + 150)
    finally:
        stop.set()


def _check_history(scenario: Scenario, mailbox, report_path, faults: int) -> None:
    """Every offer closes, the mail settles; then the history is checked against the databases."""
    system, cobuy, history, offers = scenario.system, scenario.cobuy, scenario.history, scenario.offers
    tag, holder, rivals = scenario.tag, scenario.holder, scenario.rivals
    timings = {"clients_done": time.time()}
    for offer in offers:
        cobuy.wait_offer(offer["id"], lambda o: o["status"] == "closed", timeout=90, what="every offer closed")
    timings["closed"] = time.time()
    truth = _reservations_in_db(system, [o["id"] for o in offers])
    expected_mails = sum(len(v) for v in truth.values()) * 2 + OFFERS
    try:
        wait_for(lambda: len(mailbox.matching(text=f"Chaos{tag}")) >= expected_mails
                 and not any(k.endswith((":pending", ":claimed", ":sending")) for k in _delivery_states(system)),
                 90, interval=1, what="the confirmation and close mails")
    except AssertionError:
        pass  # the checks below say which mails are missing
    timings["mail_settled"] = time.time()
    time.sleep(3)

    report = {"ops": Counter(f"{o['kind']}:{o['outcome']}" for o in history.ops), "faults": history.of("fault"),
              "delivery_log": _delivery_states(system), "timings": timings}
    problems: list[str] = []
    ok_by_offer, unknown_by_offer = defaultdict(set), defaultdict(set)
    for op in history.of("reserve"):
        if op["outcome"] == "ok":
            ok_by_offer[op["offer"]].add(op["email"])
        elif op["outcome"] == "unknown":
            unknown_by_offer[op["offer"]].add(op["email"])
    reserved_by_offer = {o: set(e) for o, e in ok_by_offer.items()}
    # On the verified offer a reservation counts once confirmed: a 200 to the verify (or an unknown)
    # is what the purchaser knows of it; a 409 is a confirmation that came after the close cut.
    verified = offers[VERIFIED]["id"]
    ok_by_offer[verified] = {op["email"] for op in history.of("verify", "ok")}
    unknown_by_offer[verified] = {op["email"] for op in history.of("verify", "unknown")}
    for op in history.of("verify", "failed"):
        if op["status"] != 409:
            problems.append(f"unexpected verify refusal {op}")
    for op in history.of("reserve", "failed"):
        if op["status"] not in (409, 429):
            problems.append(f"unexpected refusal {op}")
    for offer in offers:
        final = cobuy.offer(offer["id"])
        in_db = truth[offer["id"]]
        ok, unknown = ok_by_offer[offer["id"]], unknown_by_offer[offer["id"]]
        if not ok <= in_db:
            problems.append(f"{offer['title']}: {len(ok - in_db)} reservations that got a 2xx are missing")
        if not in_db <= ok | unknown:
            problems.append(f"{offer['title']}: {len(in_db - ok - unknown)} reservations nobody was told about")
        if final["reservation_count"] != len(in_db):
            problems.append(f"{offer['title']}: count {final['reservation_count']} but {len(in_db)} reservations")
        accepted = [op["price"] for op in history.of("counter", "ok") if op["offer"] == offer["id"]]
        if accepted and final["condition"]["unit_price"] != min(accepted):
            problems.append(f"{offer['title']}: holder at {final['condition']['unit_price']}, best 201 was {min(accepted)}")
        prices = [h["unit_price"] for h in final["history"]]
        if any(b >= a for a, b in zip(prices, prices[1:])):
            problems.append(f"{offer['title']}: history not strictly better: {prices}")
        if not final["invited"]:
            problems.append(f"{offer['title']}: never invited")
        title = offer["title"]
        for kind, subject, recipients in (
            ("confirmation", f"Reserved: {title} ", in_db),
            ("close", f"Concluded: {title} at " if final["outcome"] == "concluded" else f"Not concluded: {title}", in_db),
        ):
            for email in recipients:
                mails = [m for m in mailbox.matching(to=email) if subject in m.subject]
                ids = {m.message["Message-ID"] for m in mails}
                if len(ids) != 1:
                    problems.append(f"{kind} to {email}: {len(ids)} distinct mails")
                elif len(mails) > 1:
                    report.setdefault("resent_same_message_id", []).append(email)  # the documented window
        if offer["id"] == verified:
            lapsed = reserved_by_offer.get(verified, set()) - in_db
            told = [e for e in lapsed if any(title in m.subject and "oncluded" in m.subject
                                             for m in mailbox.matching(to=e))]
            if told:
                problems.append(f"{title}: {len(told)} unconfirmed purchasers were told of the close")
            if not lapsed or not in_db:
                problems.append(f"{title}: {len(in_db)} confirmed and {len(lapsed)} lapsed: the run proved nothing")
        windows = _price_drop_windows(system, offer["id"])
        drops = defaultdict(set)
        for mail in mailbox.matching(subject=f"Price drop: {title} "):
            drops[mail.to].add(mail.message["Message-ID"])
        if not set(drops) <= in_db:
            problems.append(f"{title}: price drops to {len(set(drops) - in_db)} purchasers without a counted reservation")
        if any(len(ids) > windows for ids in drops.values()):
            problems.append(f"{title}: a purchaser got more price-drop mails than the {windows} windows")
        report.setdefault("price_drop_mails", {})[title] = sum(len(ids) for ids in drops.values())
        invitations = Counter(m.to for m in mailbox.matching(subject=f"on {title}") if m.subject.startswith("Invitation"))
        holder_at_invite = {holder["email"]} | {r["email"] for r in rivals}
        if not invitations or max(invitations.values()) != 1 or not set(invitations) <= holder_at_invite:
            problems.append(f"{title}: invitations {dict(invitations)}")
        outcome_mails_to_holder = [m for m in mailbox.matching(text=title)
                                   if m.to in holder_at_invite and ("purchasers for" in m.subject or "Not concluded" in m.subject)]
        if len({m.message["Message-ID"] for m in outcome_mails_to_holder}) != 1:
            problems.append(f"{title}: {len(outcome_mails_to_holder)} close mails to the holder")
    dead = _dead_letters(system)
    if dead:
        problems.append(f"{dead} message(s) in the dead-letter queue")
    report["problems"] = problems
    report["reservations_in_db"] = {o["title"]: len(truth[o["id"]]) for o in offers}
    report_path.write_text(json.dumps(report, indent=2, default=str))
    assert len(history.of("fault")) == faults
    assert sum(len(v) for v in reserved_by_offer.values()) > 150, report["ops"]
    assert sum(report["price_drop_mails"].values()) > 0, "no price-drop traffic in the run"
    assert not problems, "\n".join(problems[:30])


def _kill(system: RunningSystem, pattern: str) -> None:
    pids = system.pids(pattern)
    assert pids, f"no process matches {pattern}"
    os.kill(pids[0], signal.SIGKILL)


def _kill_gateway_worker(system: RunningSystem) -> None:
    masters = system.pids("gateway.app:create_app")
    children = [p for p in masters if open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1] in {str(m) for m in masters}]
    assert children, "no gateway worker found"
    os.kill(children[0], signal.SIGKILL)


def _terminate_backends(database_url: str) -> None:
    name = database_url.rsplit("/", 1)[1]
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://").rsplit("/", 1)[0] + "/postgres",
                           isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :d "
                          "AND pid <> pg_backend_pid()"), {"d": name})
    engine.dispose()


def _reservations_in_db(system: RunningSystem, offer_ids: list[str]) -> dict[str, set[str]]:
    from services.reservation.tables import reservations as r

    runtime = system.runtime("reservation")
    try:
        with runtime.sessions() as session:
            rows = session.execute(select(r.c.offer_id, r.c.email).where(r.c.status == "active",
                                                                        r.c.offer_id.in_(offer_ids))).all()
    finally:
        runtime.engine.dispose()
    found: dict[str, set[str]] = {o: set() for o in offer_ids}
    for row in rows:
        found[row.offer_id].add(row.email)
    return found


def _price_drop_windows(system: RunningSystem, offer_id: str) -> int:
    """How many of the offer's price-drop windows have left."""
    from services.mailer.tables import price_drops as p

    runtime = system.runtime("mailer")
    try:
        with runtime.sessions() as session:
            return session.execute(select(func.count()).select_from(p).where(
                p.c.offer_id == offer_id, p.c.sent_at.is_not(None))).scalar_one()
    finally:
        runtime.engine.dispose()


def _delivery_states(system: RunningSystem) -> dict:
    from services.mailer.tables import deliveries as d

    runtime = system.runtime("mailer")
    try:
        with runtime.sessions() as session:
            rows = session.execute(select(d.c.template, d.c.state, func.count().label("n"),
                                          func.max(d.c.last_error).label("error"))
                                   .group_by(d.c.template, d.c.state)).all()
    finally:
        runtime.engine.dispose()
    return {f"{r.template}:{r.state}": [r.n, r.error] for r in rows}


def _power_cut_and_restart(system: RunningSystem) -> None:
    """Every process stopped at once (SIGSTOP, so none restarts another or stops cleanly on its
    parent's death), then SIGKILLed; then `cobuy up` again on the same data and ports."""
    supervisor = system.process.pid
    everyone = [supervisor, *descendants(supervisor)]
    for pid in everyone:
        os.kill(pid, signal.SIGSTOP)
    for pid in everyone:
        os.kill(pid, signal.SIGKILL)
    system.process.wait(timeout=30)
    wait_for(lambda: not any(Path(f"/proc/{pid}").exists() and _state(pid) != "Z" for pid in everyone), 30,
             interval=0.1, what="every process of cobuy up gone")
    system.log_path = system.log_path.with_name(system.log_path.stem + "-restarted.log")
    system.start()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def _dead_letters(system: RunningSystem) -> int:
    from shared.messaging import Bus

    bus = Bus(system.config())
    with bus.connect() as connection:
        _, count, _ = bus.dead_queue(connection.channel()).queue_declare(passive=True)
    return count
