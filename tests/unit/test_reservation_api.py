"""POST /offers/{id}/reservations parses and answers without flask-smorest's per-request wrappers
(services/reservation/api.py): every answer, refusals included, and its OpenAPI are exactly what the
decorated view gives. Reservation's own app on SQLite, beside a reference app with the decorated view."""
from __future__ import annotations

import json

import pytest
from flask.views import MethodView
from flask_smorest import Blueprint

from services.reservation import api
from services.reservation.app import create_app
from services.reservation.schemas import IdempotencyHeaderSchema, ReservationCreateSchema, ReservationSchema
from shared import config as config_module
from shared.runtime import Runtime
from shared.web import create_service_app


def answer(offer_id: str, body: dict, key: str | None):
    """A stand-in for the use case that shows what reached it."""
    status = 200 if body["email"].startswith("again") else 201
    return {"id": "r1", "offer_id": offer_id, "status": "active",
            "cancel_token": json.dumps([body["name"], body["email"], body["lang"], key]), "extra": "dropped"}, status


def reference_blueprint() -> Blueprint:
    reference = Blueprint("reservations", __name__, url_prefix="/api/v1", description="Purchase reservations")

    @reference.route("/offers/<offer_id>/reservations")
    class OfferReservations(MethodView):
        @reference.arguments(IdempotencyHeaderSchema, location="headers", as_kwargs=True)
        @reference.arguments(ReservationCreateSchema)
        @reference.response(201, ReservationSchema)
        @reference.alt_response(200, schema=ReservationSchema, description="A repeat: the existing reservation")
        def post(self, body, offer_id, idempotency_key=None):
            """Reserve one unit; a repeat for the same e-mail returns the existing reservation."""
            return answer(offer_id, body, idempotency_key)

    return reference


@pytest.fixture
def apps(tmp_path, monkeypatch):
    for name in ("COBUY_DATABASE_URL", "COBUY_AMQP_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COBUY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COBUY_RATE_LIMIT", "off")
    runtime = Runtime.create("reservation", config_module.load())
    monkeypatch.setattr(api, "_learning", lambda run: run())
    monkeypatch.setattr(api.use_cases, "reserve",
                        lambda _session, offer_id, name, email, key, _secret, lang:
                        answer(offer_id, {"name": name, "email": email, "lang": lang}, key))
    yield create_app(runtime), create_service_app(runtime, "cobuy reservation", [reference_blueprint()])
    runtime.engine.dispose()


JSON = {"Content-Type": "application/json"}
REQUESTS = [
    ({"json": {"name": "Ann", "email": "ann@example.org"}}),
    ({"json": {"name": "Ann", "email": "again@example.org", "lang": "ja"}}),
    ({"json": {"name": "Ann", "email": "ann@example.org"}, "headers": {"Idempotency-Key": "k-1"}}),
    ({"json": {"name": "Ann", "email": "ann@example.org"}, "headers": {"Idempotency-Key": ""}}),
    ({"json": {"name": "Ann", "email": "bad"}, "headers": {"Idempotency-Key": "x" * 256}}),
    ({"json": {"name": "Ann", "email": "ann@example.org"}, "headers": {"idempotency-key": "k\x01"}}),
    ({"json": {"name": "Ann"}}),
    ({"json": {"name": "Ann", "email": "ann@example.org", "extra": 1}}),
    ({"json": {"name": 1, "email": [], "lang": "xx"}}),
    ({"json": {"name": "A" * 101, "email": "ann@example.org"}}),
    ({"json": {"name": "Ann\x07", "email": "ann\n@example.org"}}),
    ({"json": []}),
    ({"json": None}),
    ({"json": "ann"}),
    ({"data": "{", "headers": JSON}),
    ({"data": b"\xff\xfe", "headers": JSON}),
    ({"data": "", "headers": JSON}),
    ({"data": "name=Ann", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}),
    ({}),
    ({"data": "[" * 5000 + "]" * 5000, "headers": JSON}),
]


@pytest.mark.parametrize("kwargs", REQUESTS, ids=range(len(REQUESTS)))
def test_every_answer_is_the_decorated_views(apps, kwargs):
    lean, reference = (app.test_client() for app in apps)
    got = lean.post("/api/v1/offers/o1/reservations", **kwargs)
    expected = reference.post("/api/v1/offers/o1/reservations", **kwargs)
    assert (got.status_code, got.headers["Content-Type"], got.get_json()) == \
        (expected.status_code, expected.headers["Content-Type"], expected.get_json())
    assert got.data == expected.data


def test_the_openapi_documents_it_as_the_decorated_view(apps):
    lean, reference = (app.test_client().get("/openapi.json").get_json() for app in apps)
    path = "/api/v1/offers/{offer_id}/reservations"
    assert lean["paths"][path]["post"] == reference["paths"][path]["post"]
    assert {"201", "200", "422"} <= set(lean["paths"][path]["post"]["responses"])
    for schema in ("ReservationCreate", "Reservation"):
        assert lean["components"]["schemas"][schema] == reference["components"]["schemas"][schema]
