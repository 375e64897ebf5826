"""Webhook delivery latency on loopback: planned (a message row committed) → arrived at the receiver.

The mailer's deliverer as the worker runs it (its claim loop and thread pool) on this machine's
PostgreSQL, a database of its own, and sellers' systems on loopback (the ALLOW flags set, as in the
tests). Messages are planned at a steady rate across many endpoints, one endpoint of which hangs,
so the figure includes the per-endpoint isolation. Prints p50/p99/max and writes
bench/webhooks-results.json.

    COBUY_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/webhooks.py
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert, select  # noqa: E402

from services.mailer.tables import MIGRATIONS  # noqa: E402
from services.mailer.webhooks.delivery import Deliverer, Settings  # noqa: E402
from services.mailer.webhooks.planning import document, message_id  # noqa: E402
from services.mailer.webhooks.tables import endpoints, messages  # noqa: E402
from shared import clock, db  # noqa: E402
from shared.migrations import upgrade  # noqa: E402
from tests import infra  # noqa: E402
from tests.webhook_receiver import Receiver, Script  # noqa: E402

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="messages planned per second")
    parser.add_argument("--endpoints", type=int, default=20)
    args = parser.parse_args()

    with infra.postgres_database() as url, Receiver() as receiver:
        if url is None:
            print("set COBUY_DATABASE_URL", file=sys.stderr)
            return 2
        engine = db.make_engine(url, "mailer", pool_size=16)
        upgrade(engine, MIGRATIONS, "mailer")
        sessions = db.session_factory(engine)
        receiver.scripts["/hang"] = Script(hang_seconds=600)
        with sessions.begin() as session:
            for i in range(args.endpoints):
                path = "/hang" if i == 0 else f"/e{i}"
                session.execute(insert(endpoints).values(
                    id=f"e{i}", seller_id=f"s{i}", seller_name="S", seller_email=f"s{i}@example.org",
                    url=receiver.url(path), events="offer.count_changed", secret=SECRET, created_at=clock.now()))
        deliverer = Deliverer(sessions, Settings(allow_http=True, allow_private=True, timeout_seconds=5,
                                                 backoff_seconds=5, concurrency=8))
        stop = threading.Event()
        runner = threading.Thread(target=deliverer.run, args=(stop,), daemon=True)
        runner.start()

        started = time.monotonic()
        for n in range(args.messages):
            time.sleep(max(0.0, started + n / args.rate - time.monotonic()))
            endpoint_id = f"e{n % args.endpoints}"
            now = clock.now()
            with sessions.begin() as session:
                session.execute(insert(messages).values(
                    endpoint_id=endpoint_id, message_id=message_id(f"bench:{n}", endpoint_id),
                    event_type="offer.count_changed",
                    payload=document("offer.count_changed", clock.iso(now), {"offer_id": f"o{n}", "count": n}),
                    state="pending", attempts=0, next_attempt_at=now, created_at=now))
        expected = args.messages - len(range(0, args.messages, args.endpoints))  # all but the hanging one's
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len([a for a in receiver.arrivals if a.path != "/hang"]) < expected:
            time.sleep(0.1)
        stop.set()
        receiver.release.set()
        with sessions() as session:
            planned = {(r.endpoint_id, r.message_id): r.created_at.timestamp()
                       for r in session.execute(select(messages.c.endpoint_id, messages.c.message_id,
                                                       messages.c.created_at)).all()}
        runner.join(timeout=15)
        engine.dispose()

    lags = sorted(a.at - planned[(f"e{a.path.lstrip('/e')}", a.headers["webhook-id"])]
                  for a in receiver.arrivals if a.path != "/hang")
    result = {"messages": args.messages, "rate": args.rate, "endpoints": args.endpoints, "delivered": len(lags),
              "expected": expected, "p50_ms": round(statistics.median(lags) * 1000, 1),
              "p99_ms": round(lags[min(len(lags) - 1, int(0.99 * len(lags)))] * 1000, 1),
              "max_ms": round(lags[-1] * 1000, 1)}
    print(json.dumps(result, indent=2))
    (ROOT / "bench" / "webhooks-results.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0 if len(lags) == expected else 1


if __name__ == "__main__":
    sys.exit(main())
