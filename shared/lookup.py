"""Read-your-writes across services: ask catalog for an offer we have not heard of yet.

Offers are announced by the OfferPublished event; a request that arrives before the event
(right after the 201) falls back to this synchronous look-up, then proceeds as if the event
had come. The event, arriving later, finds the offer known and changes nothing.
"""
from __future__ import annotations

from typing import Callable
from urllib.parse import quote

import requests

from shared import config as config_module
from shared.config import Config

_http = requests.Session()


def published_offer(config: Config, offer_id: str) -> dict | None:
    if not offer_id or len(offer_id) > 64:
        return None
    # quoted: an id may hold a literal escape (a client's %2500 is the id "%00"), never to be decoded again
    reply = _http.get(f"{config.service_url('catalog')}/internal/offers/{quote(offer_id, safe='')}", timeout=5)
    if reply.status_code == 404:
        return None
    reply.raise_for_status()
    return reply.json()


def learn_if_unknown(session, offer_id: str, find: Callable, remember: Callable) -> bool:
    """For an event about an offer this service has not heard of yet (it overtook OfferPublished:
    another producer, another queue): learn the offer as published, in the caller's transaction.
    False when catalog has no such offer either."""
    if find(session, offer_id) is not None:
        return True
    published = published_offer(config_module.get(), offer_id)
    if published is None:
        return False
    remember(session, published)
    return True
