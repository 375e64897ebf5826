"""Live offers as server-sent events (SPEC §8): `/api/v1/offers/{id}/stream` and `/api/v1/offers/stream`.

Each gateway worker runs one `OfferFeed`: while anyone watches, it asks catalog every quarter of a
second what changed (one request for all the worker's streams, however many clients hold them) and
hands each change to the streams that watch that offer. Why a poll of the read model and not a
queue per worker: docs/adr/0009-live-streams-poll-the-read-model.md.

Per-offer streams carry the offer's version as event id; the all-offers stream carries catalog's
instant of the poll (µs), which a resume hands back as `since`. A slow client never holds others up:
it has one pending message per offer, replaced by newer ones (coalescing), and the poll period
bounds each offer to four events a second.
"""
from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from typing import Awaitable, Callable

from aiohttp import web

log = logging.getLogger("gateway.streams")

POLL_SECONDS = 0.25
KEEPALIVE_SECONDS = 15.0
ALL = "*"
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


class Subscriber:
    """One stream: what it has been sent (per offer) and what waits to be written."""

    def __init__(self, key: str):
        self.key = key  # an offer id, or ALL
        self.sent: dict[str, int] = {}
        self.pending: dict[str, tuple[int, bytes]] = {}
        self.last_id = 0
        self.wake = asyncio.Event()

    def offer(self, offer_id: str, version: int, data: bytes, cursor: int) -> None:
        if version <= self.sent.get(offer_id, 0):
            return
        self.sent[offer_id] = version
        # ids only grow, on the all-offers stream too (a resume's answer can be older than a poll's)
        self.last_id = version if self.key != ALL else max(self.last_id, cursor)
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

    def deliver(self, answer: dict, only: set[Subscriber] | None = None) -> None:
        """Hands each offer of a catalog answer to the streams that watch it (or to `only`)."""
        everyone = self.watchers.get(ALL, set())
        for found in answer["offers"]:
            offer = found["offer"]
            watching = only if only is not None else self.watchers.get(offer["id"], set()) | everyone
            if watching:
                data = json.dumps(offer, separators=(",", ":")).encode()
                for subscriber in watching:
                    subscriber.offer(offer["id"], found["version"], data, answer["now"])

    async def _run(self) -> None:
        failures = 0
        while self.watchers and not self.closing.is_set():
            started = time.monotonic()
            try:
                await self.poll()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # catalog restarting: the streams stay open and catch up later
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    log.warning("live offers: catalog did not answer the poll (%r), %d in a row", exc, failures)
            await asyncio.sleep(max(0.0, self.poll_seconds - (time.monotonic() - started)))
        self.cursor = None

    async def poll(self) -> None:
        if self.cursor is None:
            self.cursor = int(time.time() * 1e6)  # catalog shares this host's clock; it looks back 2 s
        params: dict = {"since": self.cursor}
        watched = [key for key in self.watchers if key != ALL]
        if ALL not in self.watchers and len(watched) <= MAX_IDS:
            params["ids"] = ",".join(watched)
        answer = await self.fetch(params)
        self.cursor = answer["now"]
        self.deliver(answer)


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
                self.feed.deliver(await self.feed.since(resumed), only={subscriber})
            return await self._pump(request, subscriber)
        finally:
            self.feed.unsubscribe(subscriber)

    async def _pump(self, request: web.Request, subscriber: Subscriber) -> web.StreamResponse:
        response = web.StreamResponse(headers={**HEADERS, self.correlation_header: request[self.correlation_header]})
        await response.prepare(request)
        try:
            await response.write(b"retry: 1000\n\n")
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
        return response
