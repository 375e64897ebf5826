"""The live offer streams (SPEC §8), served by the gateway in-process from a fake catalog that answers
`/internal/offer-changes` as catalog does (no cobuy running)."""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from gateway import streams
from gateway.app import create_app
from shared.config import SERVICES, Config

SLACK_US = 2_000_000


class FakeCatalog:
    """The read model as catalog keeps it: each offer with its version and the instant it changed."""

    def __init__(self):
        self.offers: dict[str, dict] = {}
        self.questions = 0

    def change(self, offer_id: str, **fields) -> None:
        found = self.offers.setdefault(offer_id, {"version": 0, "offer": {"id": offer_id, "reservation_count": 0,
                                                                          "status": "open"}})
        found["version"] += 1
        found["changed_at"] = int(time.time() * 1e6)
        found["offer"] = {**found["offer"], **fields}

    async def changes(self, request: web.Request) -> web.Response:
        self.questions += 1
        ids = [i for i in request.query.get("ids", "").split(",") if i] or None
        since = request.query.get("since")
        chosen = [f for oid, f in self.offers.items() if ids is None or oid in ids]
        if since is not None:
            chosen = [f for f in chosen if f["changed_at"] >= int(since) - SLACK_US]
        return web.json_response({"now": int(time.time() * 1e6),
                                  "offers": [{"version": f["version"], "offer": f["offer"]} for f in chosen]})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/internal/offer-changes", self.changes)
        return app


def with_gateway(scenario):
    async def run():
        catalog = FakeCatalog()
        upstream = TestServer(catalog.app())
        await upstream.start_server()
        url = str(upstream.make_url("")).rstrip("/")
        config = Config(http_port=0, data_dir=Path("."), amqp_url=None, database_url=None, smtp_url=None,
                        mail_from="x", public_url="http://public.example", rate_limit="off", internal_secret="s",
                        service_urls={name: url for name in SERVICES}, trusted_proxies=())
        client = TestClient(TestServer(await create_app(config)))
        await client.start_server()
        try:
            return await asyncio.wait_for(scenario(client, catalog), 20)
        finally:
            await client.close()
            await upstream.close()

    return asyncio.run(run())


async def next_event(response) -> dict:
    """The next `event: offer` of a stream, as {id, event, data}; comments are skipped."""
    event: dict = {}
    while True:
        line = (await response.content.readline()).decode().rstrip("\n")
        if line == "" and "data" in event:
            return event
        if line.startswith(":") or not line:
            continue
        name, _, value = line.partition(": ")
        event[name] = json.loads(value) if name == "data" else value


def test_an_offer_stream_sends_the_offer_at_once_then_each_change_with_a_growing_id():
    async def scenario(client, catalog):
        catalog.change("o1", reservation_count=0)
        async with client.get("/api/v1/offers/o1/stream") as response:
            assert response.status == 200 and response.headers["Content-Type"] == "text/event-stream"
            first = await next_event(response)
            assert first["event"] == "offer" and first["data"]["id"] == "o1" and first["id"] == "1"
            catalog.change("o1", reservation_count=1)
            second = await next_event(response)
            assert second["data"]["reservation_count"] == 1 and int(second["id"]) > int(first["id"])
            catalog.change("o1", status="closed")
            assert (await next_event(response))["data"]["status"] == "closed"

    with_gateway(scenario)


def test_a_resumed_stream_sends_only_what_is_newer_than_its_last_event_id():
    async def scenario(client, catalog):
        catalog.change("o1")
        catalog.change("o1", reservation_count=5)  # version 2
        async with client.get("/api/v1/offers/o1/stream", headers={"Last-Event-ID": "2"}) as response:
            catalog.change("o1", reservation_count=6)
            event = await next_event(response)
            assert event["id"] == "3" and event["data"]["reservation_count"] == 6
        async with client.get("/api/v1/offers/o1/stream", headers={"Last-Event-ID": "1"}) as response:
            ids = [(await next_event(response))["id"]]  # behind: sent at once (a read up to one poll old)
            while ids[-1] != "3":
                ids.append((await next_event(response))["id"])
            assert "1" not in ids

    with_gateway(scenario)


def test_the_all_offers_stream_brings_new_offers_and_resumes_from_its_last_event_id():
    async def scenario(client, catalog):
        async with client.get("/api/v1/offers/stream") as response:
            catalog.change("new")
            event = await next_event(response)
            assert event["data"]["id"] == "new"
            last_id = event["id"]
        catalog.change("later", title="missed while away")
        async with client.get("/api/v1/offers/stream", headers={"Last-Event-ID": last_id}) as response:
            seen = {}
            while "later" not in seen:
                event = await next_event(response)
                seen[event["data"]["id"]] = event
                assert int(event["id"]) >= int(last_id)
            assert seen["later"]["data"]["title"] == "missed while away"

    with_gateway(scenario)


def test_one_poll_of_catalog_serves_every_stream_of_a_worker():
    async def scenario(client, catalog):
        catalog.change("hot")
        responses = [await client.get("/api/v1/offers/hot/stream") for _ in range(30)]
        try:
            for response in responses:
                await next_event(response)
            asked = catalog.questions
            await asyncio.sleep(1.0)
            polls = catalog.questions - asked
            assert polls <= 1.0 / streams.POLL_SECONDS + 1  # not one per stream
        finally:
            for response in responses:
                response.close()

    with_gateway(scenario)


def test_changes_between_two_polls_reach_a_subscriber_as_one_event_of_the_latest_state():
    subscriber = streams.Subscriber("o1")
    feed = streams.OfferFeed(fetch=None)
    feed.watchers["o1"] = {subscriber}
    for count in range(1, 11):  # ten changes before the client could read one
        asyncio.run(feed.deliver({"now": 1, "offers": [{"version": count, "offer": {"id": "o1", "reservation_count": count}}]}))
    written = subscriber.take().decode()
    assert written.count("event: offer") == 1 and '"reservation_count":10' in written and "id: 10\n" in written


def test_an_unknown_offer_has_no_stream_and_streams_are_never_kept_by_the_edge_cache():
    async def scenario(client, catalog):
        async with client.get("/api/v1/offers/nosuch/stream") as response:
            assert response.status == 404
        catalog.change("o1")
        async with client.get("/api/v1/offers/o1/stream") as response:
            await next_event(response)
            assert "no-store" in response.headers["Cache-Control"] and "X-Cache" not in response.headers

    with_gateway(scenario)


def test_an_idle_stream_gets_a_comment_line_to_keep_proxies_open(monkeypatch):
    monkeypatch.setattr(streams, "KEEPALIVE_SECONDS", 0.2)

    async def scenario(client, catalog):
        catalog.change("o1")
        async with client.get("/api/v1/offers/o1/stream") as response:
            await next_event(response)
            while True:
                line = await response.content.readline()
                if line.startswith(b":"):
                    return line

    assert with_gateway(scenario).startswith(b": keep-alive")


class FakeTransport:
    def __init__(self, queued: int = 0):
        self.queued = queued
        self.written: list[bytes] = []

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return self.queued

    def write(self, data: bytes) -> None:
        self.written.append(data)


def _direct(transport: FakeTransport, chunked: bool) -> streams.Direct:
    direct = streams.Direct.__new__(streams.Direct)
    direct.transport, direct.chunked = transport, chunked
    return direct


def test_a_stream_that_keeps_up_is_written_by_the_poll_itself_once_framed_for_its_connection():
    fast, plain = streams.Subscriber("o1"), streams.Subscriber("o1")
    fast.direct = _direct(FakeTransport(), chunked=True)  # HTTP/1.1: chunks
    plain.direct = _direct(FakeTransport(), chunked=False)  # HTTP/1.0: read to the close
    feed = streams.OfferFeed(fetch=None)
    feed.watchers["o1"] = {fast, plain}
    asyncio.run(feed.deliver({"now": 1, "offers": [{"version": 3, "offer": {"id": "o1", "reservation_count": 3}}]}))
    event = b'event: offer\nid: 3\ndata: {"id":"o1","reservation_count":3}\n\n'
    assert plain.direct.transport.written == [event]
    assert fast.direct.transport.written == [b"%x\r\n%s\r\n" % (len(event), event)]
    assert not fast.pending and not plain.pending and not fast.wake.is_set()


def test_a_slow_stream_is_left_to_its_own_task_and_gets_only_the_latest_state_in_order():
    slow = streams.Subscriber("o1")
    slow.direct = _direct(FakeTransport(queued=streams.Direct.SLOW_BYTES + 1), chunked=False)
    feed = streams.OfferFeed(fetch=None)
    feed.watchers["o1"] = {slow}
    asyncio.run(feed.deliver({"now": 1, "offers": [{"version": 1, "offer": {"id": "o1", "reservation_count": 1}}]}))
    slow.direct.transport.queued = 0  # it caught up, but an older event still waits: no overtaking
    asyncio.run(feed.deliver({"now": 2, "offers": [{"version": 2, "offer": {"id": "o1", "reservation_count": 2}}]}))
    assert slow.direct.transport.written == [] and slow.wake.is_set()
    assert slow.take() == b'event: offer\nid: 2\ndata: {"id":"o1","reservation_count":2}\n\n'


def test_the_poll_slows_down_when_writing_to_a_crowd_would_take_over_a_quarter_of_the_worker():
    feed = streams.OfferFeed(fetch=None)
    assert feed.period() == streams.POLL_SECONDS
    feed.last_fan_out = 0.15
    assert feed.period() == 0.6
    feed.last_fan_out = 5.0
    assert feed.period() == streams.MAX_POLL_SECONDS  # catalog looks back 2 s: never longer than that


def test_every_worker_polls_on_the_same_wall_clock_instants_so_a_crowd_gets_one_count_at_once():
    """Two workers (or two gateways) started apart poll at the same instants: the grid is the period
    rounded up to a multiple of POLL_SECONDS, on the wall clock, so a crowd split over them is sent the
    same count together rather than one half a stretched period after the other."""
    feed = streams.OfferFeed(fetch=None)
    assert feed.wait_after(started=100.01, now=100.02) == pytest.approx(0.23)  # the next quarter second
    assert feed.wait_after(started=100.24, now=100.26) == pytest.approx(0.24)  # never twice in a step: 100.5
    feed.last_fan_out = 0.2  # a crowd stretches the period to 0.8 s: the grid is whole seconds
    assert feed.wait_after(started=100.30, now=100.35) == pytest.approx(0.65)  # 101.0, not 101.10
    other = streams.OfferFeed(fetch=None)
    other.last_fan_out = 0.22  # 0.88 s: the same grid, the same instant
    assert other.wait_after(started=100.45, now=100.60) == pytest.approx(0.4)
    assert feed.wait_after(started=100.30, now=101.4) == 0  # late already: at once
    assert feed.wait_after(started=100.30, now=100.35 - 3600) == pytest.approx(0.7)  # the clock stepped back


def test_a_wall_clock_stepped_back_during_a_poll_does_not_stall_the_feed():
    """NTP steps the clock back (an hour, a few seconds) while a poll is under way: the next poll is
    still at most one and a half steps after the last one began, never the size of the step later."""
    feed = streams.OfferFeed(fetch=None)
    assert feed.wait_after(started=100.01, now=100.01 - 3600) <= 1.5 * streams.POLL_SECONDS
    assert feed.wait_after(started=100.01, now=97.0) <= 1.5 * streams.POLL_SECONDS
    feed.last_fan_out = 0.2  # a stretched period: a whole-second grid
    assert feed.wait_after(started=100.30, now=95.0) <= 1.5 * streams.MAX_POLL_SECONDS


def test_a_wall_clock_stepped_forward_polls_once_at_once_and_then_keeps_its_pace():
    feed = streams.OfferFeed(fetch=None)
    assert feed.wait_after(started=100.01, now=200.0) == 0  # late already: at once
    assert feed.wait_after(started=200.0, now=200.01) >= streams.POLL_SECONDS / 2 - 0.01  # not again at once


def test_an_http_1_0_client_reads_the_stream_to_the_close_without_chunks():
    async def scenario(client, catalog):
        catalog.change("o1", reservation_count=0)
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(b"GET /api/v1/offers/o1/stream HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        assert b" 200 " in head.split(b"\r\n")[0] and b"chunked" not in head.lower()
        assert await reader.readuntil(b"\n\n") == b"retry: 1000\n\n"
        assert b'"reservation_count":0' in await reader.readuntil(b"\n\n")
        catalog.change("o1", reservation_count=1)
        later = await reader.readuntil(b"\n\n")
        writer.close()
        return later

    assert with_gateway(scenario) == b'event: offer\nid: 2\ndata: {"id":"o1","reservation_count":1,"status":"open"}\n\n'
