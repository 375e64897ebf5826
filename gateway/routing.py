"""Which service answers which path. Pure: unit-tested by table."""
from __future__ import annotations

import re

_API = [
    (re.compile(r"^/api/v1/sellers(/.*)?$"), "catalog"),
    (re.compile(r"^/api/v1/offers/[^/]+/counter-offers/?$"), "auction"),
    (re.compile(r"^/api/v1/offers/[^/]+/reservations/?$"), "reservation"),
    (re.compile(r"^/api/v1/reservations(/.*)?$"), "reservation"),
    (re.compile(r"^/api/v1/offers(/[^/]+)?/?$"), "catalog"),
    (re.compile(r"^/api/v1/webhooks(/.*)?$"), "mailer"),
]
PAGES_SERVICE = "catalog"
OWN_PATHS = {"/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"}
STREAMS = re.compile(r"^/api/v1/offers(/[A-Za-z0-9-]{1,36})?/stream$")  # the gateway's own (gateway/streams.py)


def service_for(path: str) -> str | None:
    """The service for a normalised client path (gateway/edge.normalise_path); None when nothing
    answers it (404 at the gateway). No case of /internal/… is ever forwarded."""
    if path.split("/")[1].lower() == "internal" or path.lower() in OWN_PATHS:
        return None
    if path.startswith("/api/"):
        for pattern, service in _API:
            if pattern.match(path):
                return service
        return None
    return PAGES_SERVICE


UNROUTED = object()  # route_label: the caller has not asked service_for


def route_label(path: str | None, service: str | None | object = UNROUTED) -> str:
    """A bounded metrics label for a normalised path (None: it did not normalise): the service, or
    the gateway's own path. `service`: service_for(path), when the caller has it already."""
    if path in OWN_PATHS:
        return path
    if path and STREAMS.match(path):
        return "gateway:stream"
    if service is UNROUTED:
        service = service_for(path) if path else None
    if service is None:
        return "unrouted"
    return f"{service}:{'api' if path.startswith('/api/') else 'page'}"
