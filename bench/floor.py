"""The floor under an accepted reservation: each piece of the chain done bare, in machine CPU.

`python bench/floor.py [--seconds 15] [--web-workers 2]` on a quiet machine. A reservation that
SPEC asks for is at least: an HTTP request that validates and INSERTs (with its event, in one
transaction), one hop through the public door, one broker message, and one mail over SMTP. Each
row below does one of those with nothing of cobuy around it — the design card's libraries at their
thinnest — and is read as the busy time of the whole machine (/proc/stat: every process, the
kernel's loopback, PostgreSQL, RabbitMQ, the load generator) over the operations done, minus what
the idle machine used in the same time. The sum is what two cores pay per reservation before any
of cobuy's own code runs; `bench/run.py`'s B1 divides the same machine time by what cobuy got
through, so the two compare directly.

- `request`: B1r's bare app (bench/bare_app.py: Flask under gunicorn, the reservation service's
  workers and threads, one INSERT through a psycopg pool), wrk at 64 connections with B1's script;
  `app_ms` is the app's own processes' CPU per request, comparable to B1's reservation web.
- `request+hop`: the same behind a bare aiohttp pass-through proxy (one worker on uvloop, as the
  gateway runs); the hop is the difference, `proxy_ms` the proxy's own CPU (B1's gateway, bare).
- `message`: kombu publishes an event-sized JSON body, persistent, to a durable queue, with publisher
  confirms awaited once per 50 (as the relay's batches are); a second process consumes and acks
  each one (prefetch 100).
- `mail`: smtplib sends a 3 KB two-part message over one kept connection to aiosmtpd (the bench's
  sink, parsing headers only, in a process of its own), one mail per transaction.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.gateway_cpu import wait_for_port as wait_port  # noqa: E402
from bench.run import AMQP, PG, Bench, machine_busy, start_bare_app, wrk  # noqa: E402
from tests.infra import free_port  # noqa: E402

PROXY = '''
import sys, asyncio, uvloop
import aiohttp
from aiohttp import web
# the upstreams: a URL, or PREFIX=URL (the first whose prefix starts the path)
ROUTES = [tuple(a.split("=", 1)) if "=" in a else ("/", a) for a in sys.argv[2:]]
DROP = {"host", "content-length", "transfer-encoding", "connection"}
async def forward(request):
    session = request.app["session"]
    headers = {k: v for k, v in request.headers.items() if k.lower() not in DROP}
    path = request.rel_url.raw_path_qs
    upstream = next(url for prefix, url in ROUTES if path.startswith(prefix))
    async with session.request(request.method, upstream + path, headers=headers,
                               data=await request.read()) as reply:
        body = await reply.read()
        return web.Response(body=body, status=reply.status, content_type=reply.content_type)
async def start(app):
    app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=512))  # as cobuy's gateway
async def stop(app):
    await app["session"].close()
app = web.Application()
app.on_startup.append(start)
app.on_cleanup.append(stop)
app.router.add_route("*", "/{tail:.*}", forward)
asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
'''

CONSUMER = '''
import sys
from kombu import Connection, Queue
url, name, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
seen = 0
def on_message(body, message):
    global seen
    message.ack()
    seen += 1
with Connection(url) as conn:
    with conn.Consumer(Queue(name, durable=True, no_declare=True), callbacks=[on_message], prefetch_count=100,
                       accept=["json"]):
        print("ready", flush=True)
        while seen < expected:
            conn.drain_events(timeout=60)
print("done", flush=True)
'''

SINK = '''
import sys, threading
from shared.smtpsink import SmtpSink, parse_subject
count = 0
def on_message(message, recipients):
    global count
    count += 1
sink = SmtpSink("127.0.0.1", int(sys.argv[1]), on_message=on_message, parse=parse_subject).start()
print("ready", flush=True)
sys.stdin.read()
sink.stop()
print(count, flush=True)
'''

EVENT = {"type": "ReservationAccepted", "id": str(uuid.uuid4()), "version": 1, "occurred_at": "2026-11-26T23:00:00+00:00",
         "correlation_id": uuid.uuid4().hex, "data": {
             "reservation_id": str(uuid.uuid4()), "offer_id": str(uuid.uuid4()), "name": "Pat Purchaser",
             "email": "pat.purchaser@example.com", "lang": "en", "status": "active",
             "cancel_token": "0123456789abcdef" * 4, "offer_title": "Electric bike, 20 inch", "unit_price": 98000,
             "currency": "eur", "minimum_reservations": 40, "closes_at": "2026-12-24T18:00:00+00:00"}}


def idle_rate(seconds: float = 3.0) -> float:
    """The machine's busy CPU-seconds per second with nothing of ours running."""
    busy, at = machine_busy()
    time.sleep(seconds)
    busy2, at2 = machine_busy()
    return (busy2 - busy) / (at2 - at)


def measured(run, idle: float) -> tuple[float, int]:
    """(machine ms per operation, operations): run() returns how many operations it did."""
    busy, at = machine_busy()
    done = run()
    busy2, at2 = machine_busy()
    return ((busy2 - busy) - idle * (at2 - at)) * 1000 / done, done


def request_rows(args, idle: float) -> dict:
    from sqlalchemy import create_engine, make_url, text

    admin = create_engine(PG.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    name = f"cobuy_floor_{uuid.uuid4().hex[:8]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG).set(database=name).render_as_string(hide_password=False)
    port, proxy_port = free_port(), free_port()
    bare = start_bare_app(url, args.web_workers, port)
    proxy = subprocess.Popen([sys.executable, "-c", PROXY, str(proxy_port), f"http://127.0.0.1:{port}"], cwd=ROOT)
    rows = {}
    try:
        wait_port(port)
        wait_port(proxy_port)
        for label, target in (("request", port), ("request+hop", proxy_port)):
            base = f"http://127.0.0.1:{target}"
            wrk(base, 16, 2, "reserve.lua", "/reserve/warm", f"warm{label}")
            result = {}

            def drive():
                result.update(wrk(base, 64, args.seconds, "reserve.lua", f"/reserve/{label}", label.replace("+", "")))
                return result["requests"]

            own = {process: Bench.tree_cpu(process.pid) for process in (bare, proxy)}
            ms, done = measured(drive, idle)
            own = {process: (Bench.tree_cpu(process.pid) - cpu) * 1000 / done for process, cpu in own.items()}
            rows[label] = {"ms": round(ms, 3), "done": done, "rps": round(result["rps"]), "errors": result["errors"],
                           "p99_ms": round(result["p99_ms"], 1), "app_ms": round(own[bare], 3)}
            if label == "request+hop":
                rows[label]["proxy_ms"] = round(own[proxy], 3)
    finally:
        for process in (proxy, bare):
            process.terminate()
            process.wait(timeout=20)
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    rows["hop"] = {"ms": round(rows["request+hop"]["ms"] - rows["request"]["ms"], 3)}
    return rows


def message_row(args, idle: float) -> dict:
    from kombu import Connection, Exchange, Queue

    count = args.messages
    name = f"cobuy-floor-{uuid.uuid4().hex[:8]}"
    body = json.dumps(EVENT)
    with Connection(AMQP, transport_options={"confirm_publish": False}) as conn:
        channel = conn.channel()
        queue = Queue(name, Exchange(name, "direct", durable=True), routing_key="r", durable=True)
        queue(channel).declare()
        consumer = subprocess.Popen([sys.executable, "-c", CONSUMER, AMQP, name, str(count)], cwd=ROOT,
                                    stdout=subprocess.PIPE, text=True)
        assert consumer.stdout.readline().strip() == "ready"
        channel.confirm_select()
        acked = {"last": 0}
        channel.events["basic_ack"].add(lambda tag, multiple: acked.__setitem__("last", max(acked["last"], tag)))
        producer = conn.Producer(channel, exchange=queue.exchange, routing_key="r", serializer="json")

        def run():
            sent = 0
            while sent < count:
                for _ in range(50):
                    producer.publish(body, content_type="application/json", content_encoding="utf-8",
                                     delivery_mode=2, mandatory=True, message_id=uuid.uuid4().hex)
                    sent += 1
                while acked["last"] < sent:
                    conn.drain_events(timeout=30)
            assert consumer.stdout.readline().strip() == "done" and consumer.wait(timeout=30) == 0
            return sent

        ms, done = measured(run, idle)
        queue(channel).delete()
        queue.exchange(channel).delete()
    return {"ms": round(ms, 3), "done": done}


def mail_row(args, idle: float) -> dict:
    import smtplib


    port = free_port()
    sink = subprocess.Popen([sys.executable, "-c", SINK, str(port)], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert sink.stdout.readline().strip() == "ready"
    text_part = ("Dear Pat Purchaser,\n\nYour reservation of Electric bike, 20 inch at EUR 980.00 is recorded.\n"
                 * 12)
    message = (f"From: cobuy <no-reply@cobuy.example>\r\nTo: pat.purchaser@example.com\r\n"
               f"Subject: Reservation recorded: Electric bike, 20 inch (EUR 980.00)\r\nMIME-Version: 1.0\r\n"
               f"Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n--b\r\n"
               f"Content-Type: text/plain; charset=\"utf-8\"\r\n\r\n{text_part}\r\n--b\r\n"
               f"Content-Type: text/html; charset=\"utf-8\"\r\n\r\n<html><body><p>{text_part}</p></body></html>"
               f"\r\n--b--\r\n").replace("\n", "\r\n").replace("\r\r", "\r").encode()
    try:
        with smtplib.SMTP("127.0.0.1", port) as client:
            def run():
                for i in range(args.mails):
                    client.sendmail("no-reply@cobuy.example", [f"p{i}@example.com"], message)
                return args.mails

            ms, done = measured(run, idle)
    finally:
        sink.stdin.close()
        received = int(sink.stdout.readline())
        sink.wait(timeout=20)
    assert received == args.mails, (received, args.mails)
    return {"ms": round(ms, 3), "done": done, "bytes": len(message)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=15, help="each wrk drive")
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--mails", type=int, default=5000)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    idle = idle_rate()
    rows = {"idle_cpu_per_s": round(idle, 3), **request_rows(args, idle)}
    rows["message"] = message_row(args, idle)
    rows["mail"] = mail_row(args, idle)
    rows["sum_ms"] = round(rows["request+hop"]["ms"] + rows["message"]["ms"] + rows["mail"]["ms"], 3)
    for label in ("request", "hop", "message", "mail"):
        extra = {k: v for k, v in rows[label].items() if k != "ms"}
        print(f"{label:<8} {rows[label]['ms']:6.3f} ms of machine CPU each  {extra or ''}")
    print(f"{'sum':<8} {rows['sum_ms']:6.3f} ms: the floor of one accepted, announced and confirmed reservation "
          f"(idle machine {idle:.3f} CPU-s/s subtracted)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
