"""CPU per reservation in the reservation web app itself, in-process (no gunicorn, no gateway):
`python bench/reserve_cpu.py [N] [--profile out.prof]`. Process CPU time, so a loaded machine
changes the figure little (wall-clock benches on a shared 2-core machine do not).

Process CPU time still follows the machine's speed, which on the shared machines here swings by
half within minutes (the same pure-Python work took 26 to 48 ms of CPU in one minute).
`--instructions` counts instead, under valgrind's callgrind: the same count whatever the machine's
speed and load, ~1 % apart between runs (3.222 and 3.189 M instructions a reservation), ~2.5
minutes for 300."""
from __future__ import annotations

import argparse
import cProfile
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import create_engine, make_url, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG = os.environ.get("COBUY_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", nargs="?", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile")
    parser.add_argument("--instructions", action="store_true",
                        help="count the instructions a reservation costs, under valgrind's callgrind (slow, "
                             "but the same count however fast or busy the machine is)")
    args = parser.parse_args()
    if args.instructions:
        return count_instructions(args.n)
    name = f"cobuy_rcpu_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    os.environ.update({"COBUY_DATABASE_URL": make_url(PG).set(database=name).render_as_string(hide_password=False),
                       "COBUY_RATE_LIMIT": "off",
                       "COBUY_LOG_LEVEL": "WARNING"})
    try:
        from services.reservation import reservations as use_cases
        from services.reservation.app import create_app
        from services.reservation.tables import MIGRATIONS

        app = create_app()
        runtime = app.extensions["cobuy.runtime"]
        runtime.migrate(MIGRATIONS)
        offer_id = str(uuid.uuid4())
        with runtime.sessions.begin() as session:
            use_cases.remember_offer(session, {
                "offer_id": offer_id, "title": "Bench", "currency": "usd",
                "closes_at": (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat(),
                "condition": {"seller_id": "s1", "seller_name": "Seller", "unit_price": 1000,
                              "minimum_reservations": 100000}})
        client = app.test_client()
        path = f"/api/v1/offers/{offer_id}/reservations"
        headers = {"X-Forwarded-For": "10.0.0.1", "X-Correlation-Id": "bench"}

        def post(i: int) -> None:
            r = client.post(path, json={"name": "Bench", "email": f"b-{i}@bench.example"}, headers=headers)
            assert r.status_code == 201, (r.status_code, r.data)

        for i in range(200):  # warm: compiled caches, prepared statements
            post(-i - 1)
        profiler = cProfile.Profile(time.process_time) if args.profile else None  # CPU, not waits
        if profiler:
            profiler.enable()
        rounds = []
        for r in range(args.rounds):
            cpu = time.process_time()
            for i in range(args.n):
                post(r * args.n + i)
            rounds.append((time.process_time() - cpu) / args.n * 1000)
        if profiler:
            profiler.disable()
            profiler.dump_stats(args.profile)
        print(f"{args.n} reservations x {args.rounds}: {min(rounds):.3f} ms CPU each at best "
              f"({', '.join(f'{r:.3f}' for r in rounds)})")
        runtime.engine.dispose()
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def count_instructions(n: int) -> None:
    """This script under callgrind twice, reserving n and then 2n times after the same start and
    warm-up: the difference over n is the app's instructions a reservation (the test client's
    request building included, as in the CPU figure; PostgreSQL's not)."""
    counts = []
    for reservations in (n, 2 * n):
        out = Path(f"/tmp/reserve_cpu.{os.getpid()}.callgrind")
        try:
            subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__,
                            str(reservations), "--rounds", "1"], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            totals = next(line for line in out.read_text().splitlines() if line.startswith(("totals:", "summary:")))
            counts.append(int(totals.split()[1]))
        finally:
            out.unlink(missing_ok=True)
    print(f"{n} reservations under callgrind: {(counts[1] - counts[0]) / n / 1e6:.3f} M instructions each")


if __name__ == "__main__":
    main()
