"""Mailer CPU per mail, without the rest of cobuy: a database of its own, N purchasers of one offer,
one price-drop window (or an invitation fan-out) expanded and sent through Sender to a sink in a
child process. Reports the mailer's CPU seconds (this process) and the sink's, and wall time.

    .venv/bin/python bench/mail_micro.py --mails 2000 --kind price_drop [--profile out.prof]

CPU seconds are what to compare on a shared machine; wall time is noisy there.
"""
from __future__ import annotations

import argparse
import cProfile
import multiprocessing
import os
import resource
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

from sqlalchemy import create_engine, func, make_url, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.mailer import price_drops as pd  # noqa: E402
from services.mailer.delivery import Sender  # noqa: E402
from services.mailer.planning import plan  # noqa: E402
from services.mailer.rendering import Renderer  # noqa: E402
from services.mailer.tables import MIGRATIONS, deliveries, price_conditions, price_drops, purchasers  # noqa: E402
from shared import clock, db, migrations  # noqa: E402

PG = os.environ.get("COBUY_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _sink(port_q, count):
    from shared.smtpsink import SmtpSink, parse_subject

    seen = count

    def on_message(message, recipients):
        with seen.get_lock():
            seen.value += 1

    port = 26000 + os.getpid() % 2000
    SmtpSink("127.0.0.1", port, on_message=on_message, parse=parse_subject).start()
    port_q.put(port)
    threading.Event().wait()


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--kind", choices=["price_drop", "invitation", "confirmation"], default="price_drop")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--profile")
    args = parser.parse_args()

    name = f"cobuy_micro_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG).set(database=name).render_as_string(hide_password=False)
    count = multiprocessing.Value("i", 0)
    port_q = multiprocessing.Queue()
    sink = multiprocessing.Process(target=_sink, args=(port_q, count), daemon=True)
    sink.start()
    port = port_q.get()
    engine = db.make_engine(url, "mailer", pool_size=args.concurrency + 5)
    try:
        migrations.upgrade(engine, MIGRATIONS, "mailer")
        sessions = db.session_factory(engine)
        offer = str(uuid.uuid4())
        with sessions.begin() as s:
            s.execute(purchasers.insert(), [
                {"reservation_id": str(uuid.uuid4()), "offer_id": offer, "email": f"p{i}@bench.example",
                 "name": f"Purchaser {i}", "active": True, "revision": 1, "lang": "en"} for i in range(args.mails)])
            s.execute(price_conditions.insert().values(
                offer_id=offer, version=1, closed=False,
                context='{"offer_id": "%s", "title": "Chair", "currency": "usd", '
                        '"closes_at": "2030-01-01T00:00:00+00:00", "condition": {"seller_name": "Rival", '
                        '"unit_price": 9000, "minimum_reservations": 1}}' % offer))
            s.execute(price_drops.insert().values(offer_id=offer, seq=1, due_at=clock.now() - timedelta(seconds=1),
                                                  was_price=10000))
        profile = cProfile.Profile() if args.profile else None
        if profile:
            profile.enable()
        t0, c0 = time.monotonic(), cpu()
        if args.kind == "price_drop":
            assert pd.PriceDrops("cobuy.example").expand_one(sessions)
        elif args.kind == "confirmation":  # one batch per mail, as B1's reservations make them
            from types import SimpleNamespace
            with sessions.begin() as s:
                for i in range(args.mails):
                    plan(s, SimpleNamespace(id=str(uuid.uuid4()), correlation_id=None), "reservation_accepted",
                         {"offer_id": offer, "title": "Chair", "currency": "usd", "unit_price": 10000,
                          "minimum_reservations": 3, "closes_at": "2030-01-01T00:00:00+00:00",
                          "holder_name": "Holder"},
                         [(f"p{i}@bench.example", f"Purchaser {i}",
                           {"reservation_id": str(uuid.uuid4()), "cancel_token": "t" * 43, "lang": "en"})],
                         "cobuy.example")
        else:
            from types import SimpleNamespace
            with sessions.begin() as s:
                plan(s, SimpleNamespace(id=str(uuid.uuid4()), correlation_id=None), "invitation",
                     {"offer_id": offer, "title": "Chair", "currency": "usd", "unit_price": 10000,
                      "minimum_reservations": 3, "min_decrement": 100, "closes_at": "2030-01-01T00:00:00+00:00",
                      "invite_at": "2029-01-01T00:00:00+00:00", "holder_id": "h", "holder_name": "Holder",
                      "description": "A chair", "reservation_count": 3},
                     [(f"p{i}@bench.example", f"Seller {i}", {"lang": "en"}) for i in range(args.mails)],
                     "cobuy.example")
        t1, c1 = time.monotonic(), cpu()
        sender = Sender(sessions, Renderer("cobuy <no-reply@cobuy.example>", "https://cobuy.example"),
                        ("127.0.0.1", port), concurrency=args.concurrency, lease_seconds=30)
        stop = threading.Event()
        runner = threading.Thread(target=sender.run, args=(stop,), daemon=True)
        runner.start()
        while count.value < args.mails:
            time.sleep(0.02)
            if time.monotonic() - t1 > 120:
                print("not all mails arrived within 120 s")
                break
        t2, c2 = time.monotonic(), cpu()
        if profile:
            profile.disable()
            profile.dump_stats(args.profile)
        stop.set()
        runner.join(timeout=15)
        with engine.connect() as c:
            states = dict(c.execute(select(deliveries.c.state, func.count()).group_by(deliveries.c.state)).all())
        print(f"{args.kind} x{args.mails}: plan {t1 - t0:.2f} s wall, {c1 - c0:.2f} CPU-s; "
              f"send {t2 - t1:.2f} s wall, {c2 - c1:.2f} CPU-s = {1000 * (c2 - c1) / args.mails:.2f} ms/mail; "
              f"sink got {count.value}; states {states}")
    finally:
        sink.kill()
        engine.dispose()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return 0


if __name__ == "__main__":
    sys.exit(main())
