"""reservation's HTTP API."""
from __future__ import annotations

from typing import Callable, TypeVar

from flask import current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy.exc import DBAPIError

from shared import lookup
from shared.db import is_disconnect
from shared.web import client_address, require_seller

from . import reservations as use_cases
from .schemas import (
    CancelHeaderSchema,
    HolderReservationListSchema,
    IdempotencyHeaderSchema,
    ReservationCreateSchema,
    ReservationSchema,
    ReservationStateSchema,
    VerifySchema,
)

T = TypeVar("T")
bp = Blueprint("reservations", __name__, url_prefix="/api/v1", description="Purchase reservations")


def _runtime():
    return current_app.extensions["cobuy.runtime"]


def _learning(run: Callable[[], T]) -> T:
    """Read-your-writes: an offer whose OfferPublished has not arrived yet is asked of catalog,
    remembered in its own transaction, and the use case runs once more."""
    runtime = _runtime()
    return lookup.learning(run, use_cases.published_offer(runtime.config),
                           lookup.committed(runtime.sessions, use_cases.remember_offer))


def _reconnecting(run: Callable[[], T], attempts: int = 3) -> T:
    """A connection the database dropped: reserving is idempotent per e-mail, so a repeat is safe
    even if the lost COMMIT had gone through."""
    for _ in range(attempts - 1):
        try:
            return run()
        except DBAPIError as exc:
            if not is_disconnect(exc):
                raise
    return run()


def documented_by(*decorators):
    """The view documented as flask-smorest's decorators document it (the OpenAPI is theirs), but
    served without their per-request wrappers: for the hot route, whose view parses and answers
    with `reservation_request` and `reservation_answer` exactly as they would."""
    def document(view):
        documented = view
        for decorator in reversed(decorators):
            documented = decorator(documented)
        view._apidoc = documented._apidoc
        return view

    return document


# Built once: webargs makes a schema per request from a schema class (a deep copy of its fields).
CREATE_SCHEMA = ReservationCreateSchema()
KEY_SCHEMA = IdempotencyHeaderSchema()
RESERVATION_SCHEMA = ReservationSchema()


def reservation_request() -> tuple[dict, str | None]:
    """(the body, the Idempotency-Key) as `@bp.arguments` would give them, the same refusals
    included (the header first, then the body; 400 for JSON that does not parse, 422 naming the
    fields). A request without the header does not pay for its parsing."""
    parser = bp.ARGUMENTS_PARSER
    key = parser.parse(KEY_SCHEMA, location="headers")["idempotency_key"] \
        if KEY_SCHEMA.fields["idempotency_key"].data_key in request.headers else None
    return parser.parse(CREATE_SCHEMA, location="json"), key


def reservation_answer(reservation: dict, status: int):
    """As `@bp.response(201, ReservationSchema)` answers: the schema's dump, as JSON."""
    return current_app.json.response(RESERVATION_SCHEMA.dump(reservation)), status


@bp.route("/offers/<offer_id>/reservations")
class OfferReservations(MethodView):
    @documented_by(bp.arguments(IdempotencyHeaderSchema, location="headers", as_kwargs=True),
                   bp.arguments(ReservationCreateSchema),
                   bp.response(201, ReservationSchema),
                   bp.alt_response(200, schema=ReservationSchema, description="A repeat: the existing reservation"))
    def post(self, offer_id):
        """Reserve one unit; a repeat for the same e-mail returns the existing reservation."""
        body, idempotency_key = reservation_request()
        runtime = _runtime()
        # per client address only: a limit per e-mail would let a stranger lock a purchaser out
        current_app.extensions["cobuy.limiter"].hit("reservations", f"ip:{client_address()}")

        def reserve():
            with runtime.engine.begin() as connection:  # a Session only if the general path needs one
                return use_cases.reserve(connection, offer_id, body["name"], body["email"], idempotency_key,
                                         runtime.config.internal_secret, body["lang"])

        return reservation_answer(*_learning(lambda: _reconnecting(reserve)))

    @bp.response(200, HolderReservationListSchema)
    def get(self, offer_id):
        """The active reservations, for the seller holding the offer."""
        seller = require_seller()
        runtime = _runtime()

        def list_for_holder():
            with runtime.sessions() as session:
                return use_cases.list_for_holder(session, offer_id, seller)

        _learning(lambda: use_cases.catch_up_on_holder(runtime.sessions, runtime.config, offer_id))
        items = _learning(list_for_holder)
        return {"items": items, "count": len(items)}


@bp.route("/reservations/<reservation_id>")
class Reservation(MethodView):
    @bp.arguments(CancelHeaderSchema, location="headers", as_kwargs=True)
    @bp.response(200, ReservationStateSchema)
    def get(self, reservation_id, cancel_token=None):
        """The reservation's state, for the purchaser who shows its cancel token (the cancel page asks)."""
        runtime = _runtime()
        with runtime.sessions() as session:
            row = use_cases.purchasers_reservation(session, reservation_id, cancel_token, runtime.config.internal_secret)
        return {"id": row.id, "offer_id": row.offer_id, "status": row.status}

    @bp.arguments(CancelHeaderSchema, location="headers", as_kwargs=True)
    @bp.response(204)
    def delete(self, reservation_id, cancel_token=None):
        """Cancel with the token given at creation, until the offer closes."""
        runtime = _runtime()
        with runtime.sessions.begin() as session:
            use_cases.cancel(session, reservation_id, cancel_token, runtime.config.internal_secret)


@bp.route("/reservations/<reservation_id>/verify")
class Verification(MethodView):
    @bp.arguments(VerifySchema)
    @bp.response(200, ReservationStateSchema)
    def post(self, body, reservation_id):
        """Confirm a pending reservation with the token of the link in its confirmation e-mail (SPEC §10).
        Once: a second use is 409 already_verified; another reservation's token is 403."""
        runtime = _runtime()
        with runtime.sessions.begin() as session:
            return use_cases.verify(session, reservation_id, body["token"], runtime.config.internal_secret)
