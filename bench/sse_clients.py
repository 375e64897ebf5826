"""B8's crowd: N server-sent-event clients on one offer's stream, on loopback, for a bounded time.

Plain asyncio sockets speaking HTTP/1.0 (so the stream is not chunked): each client records when it
saw each reservation count. Prints one JSON object: {clients_connected, events, seen: [[count, t]…]}
with `seen` holding, per client, its events (time.time()). Run by bench/run.py."""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import time

COUNT = re.compile(rb'"reservation_count":(\d+)')


async def client(host: str, port: int, path: str, until: float, seen: list, connected: list) -> None:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return
    writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
    mine: list = []
    seen.append(mine)
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            return
        connected.append(1)
        while True:
            left = until - time.time()
            if left <= 0:
                return
            line = await asyncio.wait_for(reader.readline(), left)
            if not line:
                return
            if line.startswith(b"data: "):
                found = COUNT.search(line)
                if found:
                    mine.append((int(found.group(1)), time.time()))
    except (asyncio.TimeoutError, OSError, asyncio.IncompleteReadError):
        return
    finally:
        writer.close()


async def crowd(args) -> dict:
    until = time.time() + args.seconds
    seen: list = []
    connected: list = []
    tasks = []
    for i in range(args.clients):  # in waves, so the listen backlog is never overrun
        tasks.append(asyncio.create_task(client(args.host, args.port, args.path, until, seen, connected)))
        if i % 250 == 249:
            await asyncio.sleep(0.05)
    await asyncio.gather(*tasks)
    return {"clients_connected": len(connected), "events": sum(len(s) for s in seen), "seen": seen}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("loopback only")
    print(json.dumps(asyncio.run(crowd(args))))


if __name__ == "__main__":
    main()
