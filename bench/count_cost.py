"""CPU per reservation per component at a fixed offered rate, for before/after pairs on a shared machine.

`bench/run.py`'s B1 saturates the cores with wrk: on a machine other work shares, the rate it reaches
(and with it the relay's batch sizes and so the cost per reservation) moves with the neighbours'
load. Here reservations arrive at a fixed rate the machine sustains even when loaded, so two
versions run back to back do the same work, and CPU seconds (not wall time) are compared:

    python bench/count_cost.py --rate 60 --seconds 20

It prints the CPU milliseconds per reservation of each component, how many
ReservationCountChanged the offer's reservations caused, and whether the count shown equals the
active reservations in the database once the system settles. Same `cobuy up` shape as bench/run.py.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from pathlib import Path

import requests
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import Bench, add_stack_arguments  # noqa: E402


def drive(bench: Bench, path: str, rate: float, seconds: float, threads: int) -> tuple[int, int]:
    """POST reservations at `rate` a second in total for `seconds`; returns (201s, other answers)."""
    ok, other = [0], [0]
    lock = threading.Lock()
    start = time.monotonic()
    tag = uuid.uuid4().hex[:6]

    def worker(n: int):
        session = requests.Session()
        i = 0
        while True:
            due = start + (i * threads + n) / rate
            if due - start >= seconds:
                return
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                r = session.post(bench.base + path, json={"name": "Cost", "email": f"c-{tag}-{n}-{i}@bench.example"},
                                 timeout=10)
                good = r.status_code == 201
            except requests.RequestException:
                good = False
            with lock:
                (ok if good else other)[0] += 1
            i += 1

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return ok[0], other[0]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=60.0, help="reservations a second, offered")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=16)
    add_stack_arguments(parser)
    parser.add_argument("--out", help="write the result as JSON here too")
    args = parser.parse_args()
    bench = Bench(args)
    bench.start()
    try:
        offer = bench.offer(bench.seller(), minimum_reservations=100000)
        path = f"/api/v1/offers/{offer['id']}/reservations"
        time.sleep(2)
        before = bench.cpu_by_component()
        driven = time.monotonic()
        ok, other = drive(bench, path, args.rate, args.seconds, args.threads)
        driven = time.monotonic() - driven
        engine = bench.db()
        with engine.connect() as c:
            in_db = c.execute(text("SELECT count(*) FROM reservation.reservations WHERE offer_id=:o "
                                   "AND status='active'"), {"o": offer["id"]}).scalar()
        deadline = time.time() + 30
        while bench.count(offer["id"]) != in_db and time.time() < deadline:  # the last count, settling
            time.sleep(0.05)
        settled = time.time() - (deadline - 30)
        time.sleep(max(0.0, 3 - settled))  # the consumers' last work counted, as B1 does
        cpu = bench.cpu_used(before, bench.cpu_by_component())
        with engine.connect() as c:
            events = c.execute(text("SELECT count(*) FROM reservation.outbox WHERE type='ReservationCountChanged' "
                                    "AND body LIKE :o"), {"o": f'%{offer["id"]}%'}).scalar()
        engine.dispose()
        shown = bench.count(offer["id"])
        result = {"rate": args.rate, "seconds": args.seconds, "accepted": ok, "other": other, "count_in_db": in_db,
                  "count_shown": shown, "count_exact": shown == in_db == ok, "settled_s": round(settled, 2),
                  "count_events": events, "driven_s": round(driven, 1),
                  "cpu_ms_per_reservation": {k: round(v * 1000 / max(ok, 1), 2) for k, v in cpu.items()
                                             if k not in ("postgresql", "rabbitmq", "bench (smtp sink)", "wrk")},
                  "servers_cpu_s_shared": {k: cpu.get(k) for k in ("postgresql", "rabbitmq")}}
    finally:
        bench.stop()
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
