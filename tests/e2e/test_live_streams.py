"""The live offer streams (SPEC §8) through the gateway of a running cobuy."""
from __future__ import annotations

import json
import queue
import threading

import requests

from tests.support import instant


def follow(url: str, headers: dict | None = None) -> tuple[queue.Queue, requests.Response]:
    """Reads a stream on a thread; its events arrive on the queue as {id, data}."""
    response = requests.get(url, stream=True, headers=headers or {}, timeout=30)
    events: queue.Queue = queue.Queue()

    def read():
        event: dict = {}
        try:
            for line in response.iter_lines(decode_unicode=True):
                if not line:
                    if "data" in event:
                        events.put(event)
                    event = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    event[name] = json.loads(value) if name == "data" else value
        except (requests.RequestException, AttributeError):  # closed by the test
            pass

    threading.Thread(target=read, daemon=True).start()
    return events, response


def until(events: queue.Queue, predicate, timeout: float = 10.0) -> dict:
    while True:
        event = events.get(timeout=timeout)
        if predicate(event["data"]):
            return event


def test_an_offer_stream_follows_a_reservation_a_counter_offer_and_the_close(cobuy):
    holder, rival = cobuy.register_seller(), cobuy.register_seller(name="Stream Rival")
    offer = cobuy.create_offer(holder, unit_price=5000, minimum_reservations=1, closes_at=instant(6))
    events, response = follow(cobuy.base_url + f"/api/v1/offers/{offer['id']}/stream")
    try:
        assert response.headers["Content-Type"] == "text/event-stream"
        first = until(events, lambda o: o["id"] == offer["id"])
        cobuy.reserve(offer["id"])
        counted = until(events, lambda o: o["reservation_count"] == 1)
        assert cobuy.counter(rival, offer["id"], 4000, 1).status_code == 201
        taken = until(events, lambda o: o["condition"]["seller_name"] == "Stream Rival")
        assert [h["unit_price"] for h in taken["data"]["history"]] == [5000, 4000]
        closed = until(events, lambda o: o["status"] == "closed", timeout=20)
        assert closed["data"]["outcome"] == "concluded"
        ids = [int(e["id"]) for e in (first, counted, taken, closed)]
        assert ids == sorted(ids) and len(set(ids)) == 4
    finally:
        response.close()
    resumed, response = follow(cobuy.base_url + f"/api/v1/offers/{offer['id']}/stream",
                               headers={"Last-Event-ID": str(ids[0])})
    try:
        assert until(resumed, lambda o: True)["data"]["status"] == "closed"  # the current state at once
    finally:
        response.close()


def test_the_all_offers_stream_announces_a_new_offer(cobuy):
    events, response = follow(cobuy.base_url + "/api/v1/offers/stream")
    try:
        offer = cobuy.create_offer(cobuy.register_seller())
        until(events, lambda o: o["id"] == offer["id"])
    finally:
        response.close()
