"""What a confirmation mail costs, on its own: the whole stack as `make bench` starts it, the mailer
workers stopped (SIGSTOP) while wrk makes reservations, then let go; the CPU every component uses
from then until the last confirmation is sent, per confirmation: the sum of the components (cobuy's
processes, PostgreSQL, RabbitMQ, the sink) and the whole machine's busy time (the hypervisor's steal
left out, and printed). B1's "until the last mail" mixes
this with the reservations themselves; here it is alone.

    .venv/bin/python bench/confirmations.py [--seconds 10] [--profile /tmp/mailer.txt]

--profile records both mailer workers with py-spy (`--gil`, by CPU, not wall time) while they drain,
as collapsed stacks.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import Bench, add_stack_arguments, machine_busy, steal_seconds, wrk  # noqa: E402
from tests.processes import descendants_matching  # noqa: E402


def scalar(engine, sql: str, **params) -> int:
    with engine.connect() as c:
        return c.execute(text(sql), params).scalar()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10, help="how long wrk makes reservations")
    add_stack_arguments(parser)
    parser.add_argument("--profile", help="write the mailer workers' py-spy profile (collapsed stacks) here")
    args = parser.parse_args()
    bench = Bench(args)
    bench.start()
    try:
        engine = bench.db()
        offer = bench.offer(bench.seller(), minimum_reservations=100000)
        path = f"/api/v1/offers/{offer['id']}/reservations"
        workers = descendants_matching(bench.process.pid, "services.mailer.worker")
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)
        try:
            result = wrk(bench.base, 64, args.seconds, "reserve.lua", path, f"c{bench.tag}")
            accepted = scalar(engine, "SELECT count(*) FROM reservation.reservations WHERE offer_id = :o", o=offer["id"])
            deadline = time.time() + 120
            while scalar(engine, "SELECT count(*) FROM reservation.outbox WHERE sent_at IS NULL") and time.time() < deadline:
                time.sleep(0.5)  # every event on the broker, waiting for the mailer
            time.sleep(2)
        finally:
            for pid in workers:
                os.kill(pid, signal.SIGCONT)
        before, machine_before, steal_before = bench.cpu_by_component(), machine_busy(), steal_seconds()
        spy = None
        if args.profile:
            spy = [subprocess.Popen([str(ROOT / ".venv/bin/py-spy"), "record", "--gil", "-f", "raw", "-r", "200",
                                     "-p", str(pid), "-o", f"{args.profile}.{pid}"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for pid in workers]
        deadline = time.time() + 300
        sent = 0
        while time.time() < deadline:
            sent = scalar(engine, "SELECT count(*) FROM mailer.deliveries WHERE template = 'reservation_accepted' "
                                  "AND state = 'sent'")
            if sent >= accepted:
                break
            time.sleep(0.2)
        drained = time.time() - machine_before[1]
        used, machine_after = bench.cpu_used(before, bench.cpu_by_component()), machine_busy()
        for p in spy or []:
            p.send_signal(signal.SIGINT)
            p.wait(timeout=30)
        received = len(bench.mail.arrivals)
        figures = {
            "reservations": accepted, "wrk_rps": round(result["rps"]), "confirmations_sent": sent,
            "mails_received": received, "drain_s": round(drained, 1),
            "machine_ms_per_confirmation": round((machine_after[0] - machine_before[0]) * 1000 / max(sent, 1), 3),
            "cpu_ms_per_confirmation": round(sum(used.values()) * 1000 / max(sent, 1), 3),
            "ms_per_confirmation": {k: round(v * 1000 / max(sent, 1), 3) for k, v in used.items() if v},
            "steal_s": round(steal_seconds() - steal_before, 1),
        }
        print(json.dumps(figures, indent=2))
        engine.dispose()
        return 0 if sent >= accepted else 1
    finally:
        bench.stop()


if __name__ == "__main__":
    sys.exit(main())
