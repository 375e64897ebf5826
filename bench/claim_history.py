"""What one mail claim costs behind a history of sent mail: the mailer's delivery log keeps every
mail ever sent, and a claim must not read them. A database of its own, migrated like the mailer's;
for each history size, that many `sent` rows and a 10,000-mail fan-out `pending` after them, then
the fan-out claimed to the end by the real `Sender.claim` (20 at a time), each batch marked sent.

    .venv/bin/python bench/claim_history.py [--history 0 200000] [--pending 10000] [--without-index]

Reports the claims' wall time (the mailer waits for each one) and PostgreSQL's share is most of it.
`--without-index` drops ix_deliveries_pending first: the claim as it was before migration 0006.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text, update

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.mailer.delivery import Sender  # noqa: E402
from services.mailer.rendering import Renderer  # noqa: E402
from services.mailer.tables import MIGRATIONS, deliveries  # noqa: E402
from shared import db, migrations  # noqa: E402

PG = os.environ.get("COBUY_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
FILL = ("INSERT INTO deliveries (event_id, template, recipient, recipient_name, batch_id, extra, message_id, state, "
        "attempts, next_attempt_at, created_at) SELECT e, 'invitation', e || '-' || g || '@x.io', 'R', e, '{}', "
        "e || '-' || g, :state, 0, now(), now() FROM generate_series(1, :count) AS g, CAST(:event AS text) AS e")


def seed(connection, event: str, state: str, count: int) -> None:
    """`count` invitations of one event (its batch too) in `state`, to `<event>-1@x.io` and on, in id
    order; the claim-plan test seeds with it as well."""
    connection.execute(text(FILL), {"event": event, "state": state, "count": count})
    connection.execute(text("INSERT INTO batches (id, template, context, created_at) VALUES (:id, 'invitation', "
                            "'{}', now())"), {"id": event})


def run(url: str, history: int, pending: int, without_index: bool) -> dict:
    schema = f"claims_{uuid.uuid4().hex[:8]}"
    engine = db.make_engine(url, schema)
    try:
        migrations.upgrade(engine, MIGRATIONS, schema)
        with engine.begin() as c:
            if without_index:
                c.execute(text("DROP INDEX ix_deliveries_pending"))
            seed(c, "old", "sent", history)
            seed(c, "new", "pending", pending)
            c.execute(text("ANALYZE deliveries"))
        sender = Sender(db.session_factory(engine), Renderer("b <b@x.io>", "https://x.io"), ("127.0.0.1", 1))
        times, claimed = [], 0
        while True:
            started = time.perf_counter()
            rows = sender.claim()
            times.append(time.perf_counter() - started)
            if not rows:
                break
            claimed += len(rows)
            with engine.begin() as c:  # what the senders do to them, in short
                c.execute(update(deliveries).where(deliveries.c.id.in_([r["id"] for r in rows])).values(state="sent"))
        return {"history": history, "claimed": claimed, "claims": len(times), "total_s": round(sum(times), 2),
                "p50_ms": round(statistics.median(times) * 1000, 2), "last_ms": round(times[-2] * 1000, 2)}
    finally:
        with engine.begin() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--history", type=int, nargs="+", default=[0, 200000])
    parser.add_argument("--pending", type=int, default=10000)
    parser.add_argument("--without-index", action="store_true")
    args = parser.parse_args()
    url = PG.replace("postgresql://", "postgresql+psycopg://", 1)
    create_engine(url).dispose()
    for history in args.history:
        print(run(url, history, args.pending, args.without_index))


if __name__ == "__main__":
    main()
