"""One OpenAPI document for the whole API: the services' documents merged."""
from __future__ import annotations

import copy

API_SERVICES = ("catalog", "reservation", "auction", "mailer")
PROTECTED = {
    ("/api/v1/sellers/me", "get"),
    ("/api/v1/offers", "post"),
    ("/api/v1/offers/{offer_id}/counter-offers", "post"),
    ("/api/v1/offers/{offer_id}/reservations", "get"),
    ("/api/v1/webhooks", "get"),
    ("/api/v1/webhooks", "post"),
    ("/api/v1/webhooks/{endpoint_id}", "get"),
    ("/api/v1/webhooks/{endpoint_id}", "delete"),
    ("/api/v1/webhooks/{endpoint_id}/deliveries", "get"),
}


# Every operation takes it (SPEC §7); documenting it lets schemathesis fuzz it with the others.
CORRELATION_PARAMETER = {
    "name": "X-Correlation-Id", "in": "header", "required": False,
    "description": "Kept when it is 1-64 characters of [A-Za-z0-9._:-]; anything else is replaced by a fresh "
                   "id. The answer always carries the id used.",
    "schema": {"type": "string"},
}
METHODS = {"get", "put", "post", "delete", "patch"}


def merge(documents: list[dict]) -> dict:
    merged: dict = {
        "openapi": "3.0.3",
        "info": {"title": "cobuy API", "version": "v1",
                 "description": "Joint-purchase counter auction. Errors are RFC 9457 problems with a `code`."},
        "paths": {},
        "components": {"schemas": {}, "securitySchemes": {
            "sellerKey": {"type": "http", "scheme": "bearer", "description": "The API key given at registration"}}},
    }
    for document in documents:
        for path, item in document.get("paths", {}).items():
            if path.startswith("/api/v1/"):
                merged["paths"].setdefault(path, {}).update(copy.deepcopy(item))
        for kind, entries in document.get("components", {}).items():
            merged["components"].setdefault(kind, {}).update(entries)
    for item in merged["paths"].values():
        for method, operation in item.items():
            if method in METHODS:
                operation.setdefault("parameters", []).append(dict(CORRELATION_PARAMETER))
    for path, method in PROTECTED:
        operation = merged["paths"].get(path, {}).get(method)
        if operation is not None:
            operation["security"] = [{"sellerKey": []}]
    return merged
