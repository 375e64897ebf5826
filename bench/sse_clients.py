"""B8's crowd: N server-sent-event clients on one offer's stream, on loopback, for a bounded time.

The crowd must cost less than what it measures: each client is an `asyncio.Protocol` (no stream
reader, no task, no `wait_for` per line) on uvloop when it is installed, and the crowd is split over
`--procs` processes so one saturated event loop does not pass its own lag off as the gateway's.
Each process reports the CPU it used and how late its event loop woke (a ticker every 50 ms): when
that lag is small, the delays measured are the server's, not the client's.

HTTP/1.0, so the stream is not chunked. Prints two JSON lines: {open, opening_s} once the crowd is
open (the caller starts its load then), and at the end {clients_connected, events, seen: [[[count,
t]…] per client], procs: [{clients, cpu_s, loop_lag_p99_s, …}]}, CPU and lag over the reading window
only, times from time.time(). Run by bench/run.py."""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import re
import resource
import time

COUNT = re.compile(rb'"reservation_count":(\d+)')
TICK = 0.05


class Client(asyncio.Protocol):
    def __init__(self, request: bytes, done: asyncio.Future):
        self.request = request
        self.done = done
        self.buffer = b""
        self.open = False  # the 200 head was read
        self.refused: str | None = None  # another status line
        self.seen: list = []
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buffer = self.buffer + data
        if not self.open:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = buffer
                return
            status = buffer[:buffer.find(b"\r\n")]
            if b" 200 " not in status:
                self.refused = status.decode(errors="replace")
                self.transport.close()
                return
            self.open = True
            buffer = buffer[end + 4:]
        last = buffer.rfind(b"\n\n")
        if last >= 0:  # only whole events are read; the rest waits for the next packet
            for found in COUNT.finditer(buffer, 0, last):
                self.seen.append((int(found.group(1)), now))
            buffer = buffer[last + 2:]
        self.buffer = buffer

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def ticker(until: float, lags: list) -> None:
    """How late the loop wakes for a 50 ms sleep: the client's own lag."""
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        expected = loop.time() + TICK
        await asyncio.sleep(TICK)
        lags.append(max(0.0, loop.time() - expected))


async def crowd(host: str, port: int, path: str, clients: int, seconds: float, out) -> dict:
    """Opens the clients, says how many are open (once all are, or after a minute), then reads for
    `seconds` more: the measured window starts with the whole crowd in place."""
    loop = asyncio.get_running_loop()
    request = f"GET {path} HTTP/1.0\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode()
    protocols: list[Client] = []
    unreachable: dict[str, int] = {}
    started = time.time()
    for i in range(clients):  # in waves, so the listen backlog is never overrun
        done = loop.create_future()
        try:
            _transport, protocol = await loop.create_connection(lambda: Client(request, done), host, port)
        except OSError as exc:
            unreachable[repr(exc)[:80]] = unreachable.get(repr(exc)[:80], 0) + 1
            continue
        protocols.append(protocol)
        if i % 250 == 249:
            await asyncio.sleep(0.05)
    while time.time() < started + 60 and not all(p.open or p.done.done() for p in protocols):
        await asyncio.sleep(0.1)
    out.send({"open": sum(1 for p in protocols if p.open), "opening_s": round(time.time() - started, 1)})
    await loop.run_in_executor(None, out.recv)  # every process starts its window at the same instant
    lags: list = []
    tick = loop.create_task(ticker(loop.time() + seconds, lags))
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.sleep(seconds)
    closed_early = sum(1 for p in protocols if p.done.done())  # by the server, or refused
    usage = resource.getrusage(resource.RUSAGE_SELF)
    for protocol in protocols:
        protocol.transport.close()
    await tick
    lags.sort()
    return {
        "clients_connected": sum(1 for p in protocols if p.open),
        "seen": [p.seen for p in protocols],
        "connect_errors": unreachable,
        "refused": sorted({p.refused for p in protocols if p.refused}),
        "closed_early": closed_early,
        "cpu_s": round(usage.ru_utime + usage.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime, 2),
        "loop_lag_p99_s": round(lags[int(0.99 * (len(lags) - 1))], 3) if lags else None,
        "loop_lag_max_s": round(lags[-1], 3) if lags else None,
    }


def one_process(host: str, port: int, path: str, clients: int, seconds: float, out) -> None:
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(crowd(host, port, path, clients, seconds, out))
    result["clients"] = clients
    out.send(result)
    out.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--procs", type=int, default=4, help="processes sharing the crowd")
    parser.add_argument("--seconds", type=float, default=30, help="how long to read once the crowd is open")
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("loopback only")
    shares = [args.clients // args.procs + (1 if i < args.clients % args.procs else 0) for i in range(args.procs)]
    workers = []
    for share in shares:
        receive, send = multiprocessing.Pipe()
        process = multiprocessing.Process(target=one_process,
                                          args=(args.host, args.port, args.path, share, args.seconds, send))
        process.start()
        workers.append((process, receive))
    ready = [receive.recv() for _process, receive in workers]
    for _process, receive in workers:
        receive.send("go")
    print(json.dumps({"open": sum(r["open"] for r in ready), "opening_s": max(r["opening_s"] for r in ready)}),
          flush=True)  # the measured window starts now
    results = [receive.recv() for _process, receive in workers]
    for process, _receive in workers:
        process.join()
    print(json.dumps({
        "clients_connected": sum(r["clients_connected"] for r in results),
        "events": sum(len(s) for r in results for s in r["seen"]),
        "seen": [s for r in results for s in r["seen"]],
        "procs": [{k: v for k, v in r.items() if k != "seen"} for r in results],
    }))


if __name__ == "__main__":
    main()
