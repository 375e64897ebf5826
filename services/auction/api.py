"""auction's HTTP API: counter-offers."""
from __future__ import annotations

from flask import Blueprint as FlaskBlueprint, current_app
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import RAISE, Schema, fields, validate

from shared import lookup
from shared.events import as_data
from shared.problems import Problem
from shared.money import MAX_MINOR_UNITS
from shared.validation import StrictInteger
from shared.web import require_seller

from . import counter_offers, offers
from .rules import Condition, what_would_win

bp = Blueprint("counter_offers", __name__, url_prefix="/api/v1", description="Counter-offers")
internal_bp = FlaskBlueprint("internal", __name__, url_prefix="/internal")


class CounterOfferSchema(Schema):
    class Meta:
        unknown = RAISE

    unit_price = StrictInteger(required=True, validate=validate.Range(min=1, max=MAX_MINOR_UNITS))
    minimum_reservations = StrictInteger(required=True, validate=validate.Range(min=1, max=1_000_000))


class HoldingConditionSchema(Schema):
    seller_id = fields.String()
    seller_name = fields.String()
    unit_price = fields.Integer()
    minimum_reservations = fields.Integer()
    since = fields.String()


class InterceptionSchema(Schema):
    offer_id = fields.String()
    condition = fields.Nested(HoldingConditionSchema)
    intercepted_seller_id = fields.String()


def _runtime():
    return current_app.extensions["cobuy.runtime"]


@bp.route("/offers/<offer_id>/counter-offers")
class CounterOffers(MethodView):
    @bp.arguments(CounterOfferSchema)
    @bp.response(201, InterceptionSchema)
    def post(self, body, offer_id):
        """Counter-offer; 201 when it beats the holding condition and takes the offer over."""
        seller = require_seller()
        runtime = _runtime()

        def counter_offer():
            with runtime.sessions.begin() as session:
                return counter_offers.counter_offer(session, offer_id, seller, body["unit_price"],
                                                    body["minimum_reservations"])

        # Read-your-writes: an offer whose OfferPublished has not arrived yet is asked of catalog.
        return lookup.learning(counter_offer, offers.published_offer(runtime.config),
                               lookup.committed(runtime.sessions, offers.remember_offer))


@internal_bp.get("/conditions/<offer_id>")
def holding_condition(offer_id):
    """The holding condition now, with its version: auction is where it changes, so a service whose
    copy may lag a just-won counter-offer asks here before it refuses a seller (read-your-writes).
    With what would win against it (rules.what_would_win): catalog's counter-offer form names it."""
    with _runtime().sessions() as session:
        offer = offers.find_offer(session, offer_id)
    if offer is None:
        raise Problem(404, "offer_not_found", "No such offer.")
    holding = Condition(offer.holder_id, offer.unit_price, offer.minimum_reservations)
    return {"offer_id": offer_id, "version": offer.version, "condition": as_data(offers.holding_condition(offer)),
            "open": offer.status == "open", "min_decrement": offer.min_decrement,
            **what_would_win(holding, offer.min_decrement)}
