"""Which service answers which path. Pure: unit-tested by table."""
from __future__ import annotations

import re

_API = [
    (re.compile(r"^/api/v1/sellers(/.*)?$"), "catalog"),
    (re.compile(r"^/api/v1/offers/[^/]+/counter-offers/?$"), "auction"),
    (re.compile(r"^/api/v1/offers/[^/]+/reservations/?$"), "reservation"),
    (re.compile(r"^/api/v1/reservations(/.*)?$"), "reservation"),
    (re.compile(r"^/api/v1/offers(/[^/]+)?/?$"), "catalog"),
]
PAGES_SERVICE = "catalog"
OWN_PATHS = {"/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"}


def service_for(path: str) -> str | None:
    """The service for a client path; None when nothing answers it (404 at the gateway)."""
    if path.startswith("/internal") or path in OWN_PATHS:
        return None
    if path.startswith("/api/"):
        for pattern, service in _API:
            if pattern.match(path):
                return service
        return None
    return PAGES_SERVICE


def route_label(path: str) -> str:
    """A bounded metrics label: the service, or the gateway's own path."""
    if path in OWN_PATHS:
        return path
    service = service_for(path)
    if service is None:
        return "unrouted"
    return f"{service}:{'api' if path.startswith('/api/') else 'page'}"
