"""reservation's HTTP API."""
from __future__ import annotations

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy.exc import DBAPIError

from shared import lookup
from shared.db import is_disconnect
from shared.problems import Problem
from shared.web import client_address, require_seller

from . import reservations as use_cases
from .schemas import (
    CancelHeaderSchema,
    HolderReservationListSchema,
    IdempotencyHeaderSchema,
    ReservationCreateSchema,
    ReservationSchema,
)

bp = Blueprint("reservations", __name__, url_prefix="/api/v1", description="Purchase reservations")


def _runtime():
    return current_app.extensions["cobuy.runtime"]


def _learn_offer(offer_id: str) -> None:
    """Read-your-writes: an offer whose OfferPublished has not arrived yet is asked of catalog."""
    runtime = _runtime()
    data = lookup.published_offer(runtime.config, offer_id)
    if data is None:
        raise Problem(404, "offer_not_found", "No such offer.")
    with runtime.sessions.begin() as session:
        use_cases.remember_offer(session, data)


def _ensure_offer_known(offer_id: str) -> None:
    with _runtime().sessions() as session:
        if use_cases.find_offer(session, offer_id) is not None:
            return
    _learn_offer(offer_id)


@bp.route("/offers/<offer_id>/reservations")
class OfferReservations(MethodView):
    @bp.arguments(IdempotencyHeaderSchema, location="headers", as_kwargs=True)
    @bp.arguments(ReservationCreateSchema)
    @bp.response(201, ReservationSchema)
    @bp.alt_response(200, schema=ReservationSchema, description="A repeat: the existing reservation")
    def post(self, body, offer_id, idempotency_key=None):
        """Reserve one unit; a repeat for the same e-mail returns the existing reservation."""
        runtime = _runtime()
        current_app.extensions["cobuy.limiter"].hit("reservations", f"ip:{client_address()}",
                                                     f"email:{body['email'].lower()}")
        for attempt in range(3):
            try:
                with runtime.sessions.begin() as session:
                    return use_cases.reserve(session, offer_id, body["name"], body["email"], idempotency_key,
                                             runtime.config.internal_secret)
            except use_cases.OfferUnknown:
                if attempt:
                    raise Problem(404, "offer_not_found", "No such offer.") from None
                _learn_offer(offer_id)
            except DBAPIError as exc:
                # A connection the database dropped: reserving is idempotent per e-mail, so a
                # repeat is safe even if the lost COMMIT had gone through.
                if not is_disconnect(exc) or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    @bp.response(200, HolderReservationListSchema)
    def get(self, offer_id):
        """The active reservations, for the seller holding the offer."""
        seller = require_seller()
        _ensure_offer_known(offer_id)
        with _runtime().sessions() as session:
            items = use_cases.list_for_holder(session, offer_id, seller)
        return {"items": items, "count": len(items)}


@bp.route("/reservations/<reservation_id>")
class Reservation(MethodView):
    @bp.arguments(CancelHeaderSchema, location="headers", as_kwargs=True)
    @bp.response(204)
    def delete(self, reservation_id, cancel_token=None):
        """Cancel with the token given at creation, until the offer closes."""
        runtime = _runtime()
        with runtime.sessions.begin() as session:
            use_cases.cancel(session, reservation_id, cancel_token, runtime.config.internal_secret)
