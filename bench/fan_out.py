"""The live streams' fan-out alone: one gateway worker (in this process, on uvloop) with a fake catalog,
B8's crowd on one offer (bench/sse_clients.py, in its own processes), and `--changes` changes of the
offer a poll period apart. Prints what the gateway's CPU paid per event written, and how long each
change took to reach the clients. CPU seconds hold on a busy machine; the delays do not, so the
machine's load average is printed with them.

    .venv/bin/python bench/fan_out.py --clients 5000 --changes 20
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402

from bench.run import machine_busy, percentile  # noqa: E402
from gateway import streams  # noqa: E402
from gateway.app import create_app  # noqa: E402
from shared.config import SERVICES, Config  # noqa: E402
from tests.unit.test_live_streams import FakeCatalog  # noqa: E402


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(args) -> dict:
    catalog = FakeCatalog()
    catalog.change("hot", reservation_count=0)
    upstream = web.AppRunner(catalog.app())
    await upstream.setup()
    await web.TCPSite(upstream, "127.0.0.1", args.port + 1).start()
    config = Config(http_port=0, data_dir=Path("."), amqp_url=None, database_url=None, smtp_url=None,
                    mail_from="x", public_url="http://bench.example", rate_limit="off", internal_secret="bench",
                    service_urls={name: f"http://127.0.0.1:{args.port + 1}" for name in SERVICES}, trusted_proxies=())
    gateway = web.AppRunner(await create_app(config))
    await gateway.setup()
    await web.TCPSite(gateway, "127.0.0.1", args.port, backlog=4096).start()
    crowd = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bench" / "sse_clients.py"), "--port", str(args.port), "--clients",
        str(args.clients), "--procs", str(args.procs), "--path", "/api/v1/offers/hot/stream",
        "--seconds", str(args.changes * streams.POLL_SECONDS + 3), stdout=asyncio.subprocess.PIPE)
    opened = json.loads(await crowd.stdout.readline())
    before, (machine_before, _wall) = cpu(), machine_busy()
    changed: dict[int, float] = {}
    for count in range(1, args.changes + 1):
        catalog.change("hot", reservation_count=count)
        changed[count] = time.time()
        await asyncio.sleep(streams.POLL_SECONDS)
    await asyncio.sleep(1.5)
    spent, machine = cpu() - before, machine_busy()[0] - machine_before
    seen = json.loads((await crowd.stdout.read()).splitlines()[-1])
    await crowd.wait()
    receipts = [(count, t) for events in seen["seen"] for count, t in events if count >= 1]
    delays = sorted(t - changed[count] for count, t in receipts)
    await gateway.cleanup()
    await upstream.cleanup()
    return {"clients": args.clients, "open": opened["open"], "changes": args.changes, "events": len(receipts),
            "gateway_cpu_s": round(spent, 2), "gateway_cpu_us_per_event": round(spent / max(1, len(receipts)) * 1e6, 1),
            "machine_cpu_s": round(machine, 2), "machine_cpu_us_per_event": round(machine / max(1, len(receipts)) * 1e6, 1),
            "change_to_client_p50_s": percentile(delays, 0.5), "change_to_client_p99_s": percentile(delays, 0.99),
            "clients_with_final_count": sum(1 for events in seen["seen"] if events and events[-1][0] == args.changes),
            "crowd_cpu_s": round(sum(p["cpu_s"] for p in seen["procs"]), 2),
            "crowd_loop_lag_p99_s": max(p["loop_lag_p99_s"] or 0 for p in seen["procs"]),
            "loadavg_1m": round(os.getloadavg()[0], 1), "cores": os.cpu_count()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--port", type=int, default=23470 + os.getpid() % 100 * 2)
    args = parser.parse_args()
    logging.disable(logging.ERROR)
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(measure(args))))


if __name__ == "__main__":
    main()
