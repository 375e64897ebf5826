"""Live offers as server-sent events (SPEC §8): `/api/v1/offers/{id}/stream` and `/api/v1/offers/stream`.

Each gateway worker runs one `OfferFeed`: while anyone watches, it asks catalog every quarter of a
second what changed (one request for all the worker's streams, however many clients hold them) and
hands each change to the streams that watch that offer. Why a poll of the read model and not a
queue per worker: docs/adr/0009-live-streams-poll-the-read-model.md.

Per-offer streams carry the offer's version as event id; the all-offers stream carries catalog's
instant of the poll (µs), which a resume hands back as `since`. Each change is serialised once per
worker and written by the poll itself to every stream that keeps up (`Direct`). A slow client never
holds others up: it has one pending message per offer, replaced by newer ones (coalescing), written
by its own task; the poll period bounds each offer to four events a second (fewer when a crowd's writes
would take more than a quarter of the worker).
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from typing import Awaitable, Callable

from aiohttp import web

log = logging.getLogger("gateway.streams")

POLL_SECONDS = 0.25
MAX_POLL_SECONDS = 1.0
FAN_OUT_SHARE = 0.25  # of a worker's time, at most, spent writing events to streams
KEEPALIVE_SECONDS = 15.0
ALL = "*"
FAN_OUT_SLICE = 200  # streams written between two turns of the event loop
MAX_IDS = 200  # catalog's limit per question; more watched offers: ask for all and filter here
OFFER_ID = re.compile(r"[A-Za-z0-9-]{1,36}")
HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache, no-store",  # never kept by the micro-cache nor by a proxy
    "X-Accel-Buffering": "no",  # nginx and its kind: pass each event on at once
}

Fetch = Callable[[dict], Awaitable[dict]]


def message(event_id: int, data: bytes) -> bytes:
    """One SSE event; the JSON has no raw newline, so it fits on one `data:` line."""
    return b"event: offer\nid: %d\ndata: %s\n\n" % (event_id, data)


def resume_point(request: web.Request) -> int | None:
    """`Last-Event-ID` (sent by a reconnecting EventSource), else `?last_event_id=` (a page's first
    connection, from the instant it was rendered)."""
    raw = request.headers.get("Last-Event-ID") or request.query.get("last_event_id", "")
    return int(raw) if raw.isdigit() and len(raw) <= 20 else None


class Direct:
    """Writes a stream's events straight to its socket, from the poll that found them.

    A change watched by 5,000 streams is then one loop over them, each one `transport.write`, and
    not 5,000 tasks woken to write the same bytes (what it cost: docs/performance.md, B8). Only a
    stream whose socket keeps up takes this path; one with bytes still queued (a slow reader) gets
    its events coalesced by its own task, so it never holds the others up."""

    SLOW_BYTES = 16 * 1024

    def __init__(self, request: web.Request, response: web.StreamResponse):
        self.transport = request.transport
        # aiohttp frames an HTTP/1.1 stream of unknown length in chunks; HTTP/1.0 reads to the close
        self.chunked = response.headers.get("Transfer-Encoding", "").lower() == "chunked"

    def ready(self) -> bool:
        transport = self.transport
        return transport is not None and not transport.is_closing() \
            and transport.get_write_buffer_size() <= self.SLOW_BYTES

    def frame(self, data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data) if self.chunked else data

    def write(self, framed: bytes) -> None:
        self.transport.write(framed)


class Subscriber:
    """One stream: what it has been sent (per offer) and what waits to be written by its task."""

    def __init__(self, key: str):
        self.key = key  # an offer id, or ALL
        self.sent: dict[str, int] = {}
        self.pending: dict[str, tuple[int, bytes]] = {}
        self.last_id = 0
        self.wake = asyncio.Event()
        self.direct: Direct | None = None  # set once the stream's head and backlog are written

    def offer(self, offer_id: str, version: int, data: bytes, cursor: int, framed: dict | None = None) -> None:
        """Takes an offer's state if newer than what this stream has had: written at once when the
        stream keeps up, else left for its task. `framed` caches the bytes per event id and framing
        for the other streams of the same delivery."""
        if version <= self.sent.get(offer_id, 0):
            return
        self.sent[offer_id] = version
        # ids only grow, on the all-offers stream too (a resume's answer can be older than a poll's)
        self.last_id = version if self.key != ALL else max(self.last_id, cursor)
        direct = self.direct
        if direct is not None and not self.pending and direct.ready():
            key = (self.last_id, offer_id, direct.chunked)
            chunk = framed.get(key) if framed is not None else None
            if chunk is None:
                chunk = direct.frame(message(self.last_id, data))
                if framed is not None:
                    framed[key] = chunk
            direct.write(chunk)
            return
        self.pending[offer_id] = (self.last_id, data)
        self.wake.set()

    def take(self) -> bytes:
        self.wake.clear()
        out = b"".join(message(event_id, data) for event_id, data in self.pending.values())
        self.pending.clear()
        return out


class OfferFeed:
    """One poll of catalog per worker for all its streams."""

    def __init__(self, fetch: Fetch, poll_seconds: float = POLL_SECONDS):
        self.fetch = fetch  # query parameters -> catalog's /internal/offer-changes answer
        self.poll_seconds = poll_seconds
        self.watchers: dict[str, set[Subscriber]] = {}
        self.cursor: int | None = None
        self.closing = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._inflight: dict[str, asyncio.Future] = {}
        self._recent: dict[str, tuple[float, dict | None]] = {}
        self.last_fan_out = 0.0  # seconds the last poll's delivery took

    # -- subscribers -----------------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> None:
        self.watchers.setdefault(subscriber.key, set()).add(subscriber)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def unsubscribe(self, subscriber: Subscriber) -> None:
        watching = self.watchers.get(subscriber.key)
        if watching is not None:
            watching.discard(subscriber)
            if not watching:
                del self.watchers[subscriber.key]

    async def close(self) -> None:
        """On shutdown: every stream ends (EventSource reconnects to another worker)."""
        self.closing.set()
        for watching in self.watchers.values():
            for subscriber in watching:
                subscriber.wake.set()
        if self._task is not None:
            self._task.cancel()

    # -- what catalog says -----------------------------------------------------------------------

    async def current(self, offer_id: str) -> dict | None:
        """The offer's current {version, offer}. A crowd arriving at once costs one request per poll
        period: an answer that old is safe, since every poll looks back further than that."""
        recent = self._recent.get(offer_id)
        if recent is not None and time.monotonic() - recent[0] < self.poll_seconds:
            return recent[1]
        pending = self._inflight.get(offer_id)
        if pending is None:
            pending = asyncio.ensure_future(self.fetch({"ids": offer_id}))
            self._inflight[offer_id] = pending
            pending.add_done_callback(lambda _f: self._inflight.pop(offer_id, None))
        answer = await asyncio.shield(pending)
        found = answer["offers"][0] if answer["offers"] else None
        if found is not None:  # an offer unknown now may be published the next instant
            if len(self._recent) > 1000:
                self._recent.clear()
            self._recent[offer_id] = (time.monotonic(), found)
        return found

    async def since(self, cursor: int) -> dict:
        return await self.fetch({"since": cursor})

    async def deliver(self, answer: dict, only: set[Subscriber] | None = None) -> float:
        """Hands each offer of a catalog answer to the streams that watch it (or to `only`); returns
        the seconds spent doing it. The loop is let go every `FAN_OUT_SLICE` streams, so a crowd's
        fan-out does not stall the requests this worker proxies meanwhile (their time is not counted)."""
        everyone = self.watchers.get(ALL, set())
        handed = 0
        busy = 0.0
        started = time.monotonic()
        for found in answer["offers"]:
            offer = found["offer"]
            watching = only if only is not None else self.watchers.get(offer["id"], set()) | everyone
            if watching:
                data = json.dumps(offer, separators=(",", ":")).encode()  # once, for all its streams
                framed: dict = {}
                for subscriber in list(watching):
                    subscriber.offer(offer["id"], found["version"], data, answer["now"], framed)
                    handed += 1
                    if handed % FAN_OUT_SLICE == 0:
                        busy += time.monotonic() - started
                        await asyncio.sleep(0)
                        started = time.monotonic()
        return busy + time.monotonic() - started

    async def _run(self) -> None:
        failures = 0
        while self.watchers and not self.closing.is_set():
            started = time.time()
            try:
                await self.poll()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # catalog restarting: the streams stay open and catch up later
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    log.warning("live offers: catalog did not answer the poll (%r), %d in a row", exc, failures)
            await asyncio.sleep(self.wait_after(started, time.time()))
        self.cursor = None

    def period(self) -> float:
        """The time between two polls: POLL_SECONDS, stretched (up to MAX_POLL_SECONDS, well within
        catalog's 2 s look-back) so that writing to the streams takes at most FAN_OUT_SHARE of the
        worker. A crowd on a busy machine then gets fewer, fresher events, and the requests this
        worker proxies keep their share."""
        return min(MAX_POLL_SECONDS, max(self.poll_seconds, self.last_fan_out / FAN_OUT_SHARE))

    def wait_after(self, started: float, now: float) -> float:
        """Seconds from `now` to the next poll of one that began at `started` (wall clock): the next
        instant, half a step or more after `started`, on a grid of the period rounded up to a multiple
        of POLL_SECONDS. Every worker of every gateway (their clocks kept by NTP) thus polls at the same
        instants and sends a crowd split over them the same count together, instead of one half a
        stretched period after the other (what that cost: docs/performance.md, B8)."""
        step = math.ceil(round(self.period() / self.poll_seconds, 6)) * self.poll_seconds
        due = math.ceil(round((started + step / 2) / step, 6)) * step
        # The clock stepped back during the poll (NTP): `now` before `started` would make the wait
        # the size of the step (an hour back, an hour without polls). Measured from `started`
        # instead, it is at most one and a half steps; a step forward just polls once at once.
        return max(0.0, due - max(now, started))

    async def poll(self) -> None:
        if self.cursor is None:
            self.cursor = int(time.time() * 1e6)  # catalog shares this host's clock; it looks back 2 s
        params: dict = {"since": self.cursor}
        watched = [key for key in self.watchers if key != ALL]
        if ALL not in self.watchers and len(watched) <= MAX_IDS:
            params["ids"] = ",".join(watched)
        answer = await self.fetch(params)
        self.cursor = answer["now"]
        self.last_fan_out = await self.deliver(answer)


class EventStream(web.StreamResponse):
    _send_headers_immediately = False  # aiohttp: the head leaves with the first event, in one write


class Streams:
    """The two routes, over one feed."""

    def __init__(self, feed: OfferFeed, correlation_header: str):
        self.feed = feed
        self.correlation_header = correlation_header

    async def one_offer(self, request: web.Request) -> web.StreamResponse:
        offer_id = request.match_info["offer_id"]
        if not OFFER_ID.fullmatch(offer_id):
            raise web.HTTPNotFound()
        subscriber = Subscriber(offer_id)
        subscriber.sent[offer_id] = resume_point(request) or 0
        self.feed.subscribe(subscriber)  # before the first read: no change falls in between
        try:
            found = await self.feed.current(offer_id)
            if found is None:
                raise web.HTTPNotFound()
            data = json.dumps(found["offer"], separators=(",", ":")).encode()
            subscriber.offer(offer_id, found["version"], data, 0)  # only when newer than the resume point
            return await self._pump(request, subscriber)
        finally:
            self.feed.unsubscribe(subscriber)

    async def all_offers(self, request: web.Request) -> web.StreamResponse:
        subscriber = Subscriber(ALL)
        self.feed.subscribe(subscriber)
        try:
            resumed = resume_point(request)
            if resumed is not None:
                subscriber.last_id = resumed
                await self.feed.deliver(await self.feed.since(resumed), only={subscriber})
            return await self._pump(request, subscriber)
        finally:
            self.feed.unsubscribe(subscriber)

    async def _pump(self, request: web.Request, subscriber: Subscriber) -> web.StreamResponse:
        response = EventStream(headers={**HEADERS, self.correlation_header: request[self.correlation_header]})
        try:
            await response.prepare(request)
            await response.write(b"retry: 1000\n\n" + subscriber.take())  # one write: a socket write costs
            subscriber.direct = Direct(request, response)
            while not self.feed.closing.is_set():
                if not subscriber.pending:
                    try:
                        await asyncio.wait_for(subscriber.wake.wait(), KEEPALIVE_SECONDS)
                    except asyncio.TimeoutError:
                        await response.write(b": keep-alive\n\n")
                        continue
                if subscriber.pending:
                    await response.write(subscriber.take())
                else:
                    subscriber.wake.clear()
        except (ConnectionError, RuntimeError):  # the client left (aiohttp raises either, by version)
            pass
        finally:
            subscriber.direct = None
        return response
