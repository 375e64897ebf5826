"""catalog's HTTP API: /api/v1/sellers, /api/v1/offers; /internal/* for the gateway and services."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from flask import current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint

from shared import clock
from shared.problems import Problem
from shared.web import client_address, require_seller

from . import offers as use_cases, sellers
from .schemas import (
    OfferCreateSchema,
    OfferListQuerySchema,
    OfferListSchema,
    OfferSchema,
    RegisteredSellerSchema,
    SellerRegistrationSchema,
    SellerSchema,
)

sellers_bp = Blueprint("sellers", __name__, url_prefix="/api/v1/sellers", description="Registered sellers")
offers_bp = Blueprint("offers", __name__, url_prefix="/api/v1/offers", description="Joint-purchase offers")
internal_bp = Blueprint("internal", __name__, url_prefix="/internal")


def sessions():
    return current_app.extensions["cobuy.runtime"].sessions


@sellers_bp.route("")
class Sellers(MethodView):
    @sellers_bp.arguments(SellerRegistrationSchema)
    @sellers_bp.response(201, RegisteredSellerSchema)
    def post(self, body):
        """Register a seller; the API key is shown once."""
        current_app.extensions["cobuy.limiter"].hit("registrations", f"ip:{client_address()}")
        with sessions().begin() as session:
            seller = sellers.register_seller(session, body["name"], body["email"], body["lang"])
        return seller, 201, {"Location": "/api/v1/sellers/me"}


@sellers_bp.route("/me")
class Me(MethodView):
    @sellers_bp.response(200, SellerSchema)
    def get(self):
        """The authenticated seller."""
        seller = require_seller()
        with sessions()() as session:
            found = sellers.seller_by_id(session, seller["id"])
        if found is None:
            raise Problem(401, "authentication_required", "Unknown seller.")
        return found


@offers_bp.route("")
class Offers(MethodView):
    @offers_bp.arguments(OfferListQuerySchema, location="query")
    @offers_bp.response(200, OfferListSchema)
    def get(self, query):
        """Offers, newest first (recently closed first with status=closed), paginated."""
        with sessions()() as session:
            items, total = use_cases.list_offers(session, query["status"], query["page"], query["per_page"])
        return {"items": items, "page": query["page"], "per_page": query["per_page"], "total": total}

    @offers_bp.arguments(OfferCreateSchema)
    @offers_bp.response(201, OfferSchema)
    def post(self, body):
        """Publish an offer; the caller holds it."""
        seller = require_seller()
        with sessions().begin() as session:
            offer = use_cases.publish_offer(session, seller, body)
        return offer, 201, {"Location": f"/api/v1/offers/{offer['id']}"}


@offers_bp.route("/<offer_id>")
class OfferResource(MethodView):
    @offers_bp.response(200, OfferSchema)
    def get(self, offer_id):
        """One offer with its holding condition, count and history."""
        with sessions()() as session:
            offer = use_cases.get_offer(session, offer_id)
        if offer is None:
            raise Problem(404, "offer_not_found", "No such offer.")
        return offer


@internal_bp.route("/auth", methods=["POST"])
def authenticate():
    """The gateway's key check: the seller for a key, or 404."""
    api_key = (request.get_json(silent=True) or {}).get("api_key")
    if not isinstance(api_key, str) or not api_key:
        raise Problem(400, "bad_request", "api_key required")
    with sessions()() as session:
        seller = sellers.seller_by_key(session, api_key)
    if seller is None:
        raise Problem(404, "unknown_api_key")
    return {**seller, "registered_at": seller["registered_at"].isoformat()}


@internal_bp.route("/offers/<offer_id>")
def published_offer(offer_id):
    """For services that have not yet heard of a brand-new offer (read-your-writes)."""
    with sessions()() as session:
        data = use_cases.published_data_for(session, offer_id)
    if data is None:
        raise Problem(404, "offer_not_found")
    return data


# A change is stamped before its transaction commits: one that commits late must still be found by
# the poll that follows its commit, so each poll looks this far behind the previous answer's `now`.
LATE_COMMIT_SLACK = timedelta(seconds=2)
MAX_IDS = 200
CHANGES_LIMIT = 500


@internal_bp.route("/offer-changes")
def offer_changes():
    """For the gateway's live streams (docs/adr/0009-live-streams-poll-the-read-model.md).
    `since` (µs, the `now` of the previous answer): offers changed since then, of `ids` if given;
    no `since`: the current state of `ids`. Each as {version, offer (the API's JSON)}."""
    ids = [i for i in request.args.get("ids", "").split(",") if i] or None
    if ids is not None and (len(ids) > MAX_IDS or any(len(i) > 36 for i in ids)):
        raise Problem(400, "bad_request", f"At most {MAX_IDS} offer ids.")
    since = request.args.get("since", type=int)
    now = clock.now()
    with sessions()() as session:
        if since is not None:
            start = datetime.fromtimestamp(since / 1e6, timezone.utc) - LATE_COMMIT_SLACK
            found = use_cases.changed_offers(session, start, ids, CHANGES_LIMIT)
            if len(found) == CHANGES_LIMIT:  # more to come: the next poll goes on from the last one
                now = found[-1]["changed_at"] + LATE_COMMIT_SLACK
        elif ids is not None:
            found = use_cases.offers_by_id(session, ids)
        else:
            raise Problem(400, "bad_request", "Give since or ids.")
    schema = OfferSchema()
    return {"now": int(now.timestamp() * 1e6),
            "offers": [{"version": f["version"], "offer": schema.dump(f["offer"])} for f in found]}
