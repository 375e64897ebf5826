"""The seller's dashboard (SPEC §9): its offers with live counts, their purchasers (and a CSV),
publishing an offer, counter-offering, rotating the API key.

Pages and API share the rules: publishing runs the API's schema and use case here (catalog owns
offers); purchasers and counter-offers are asked of reservation's and auction's own API with the
seller's identity signed as the gateway signs it (shared/identity.py), so their rules and codes
are the API's. A page only puts the answers in words.
"""
from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

import requests
from flask import Blueprint, Response, abort, current_app, render_template, request
from flask_babel import gettext as _, lazy_gettext as _l, ngettext
from marshmallow import ValidationError
from markupsafe import Markup

from shared import clock, identity, logs, lookup
from shared.money import format_money
from shared.problems import Problem
from shared.spreadsheet import safe_csv

from . import languages, offers as use_cases, sellers
from .pages import _load as offer_or_404, progress
from .schemas import OfferCreateSchema
from .seller_forms import (COUNTER_FIELD_WORDS, OFFER_FIELD_WORDS, counter_offer_body, field_words, major_units,
                           offer_body)
from .seller_pages import sessions, signed_in, web_seller

dashboard_bp = Blueprint("dashboard", __name__, template_folder="templates")
_http = requests.Session()
TRY_AGAIN = _l("We could not reach the auction just now. Please try again.")


def _config():
    return current_app.config["COBUY"]


def _as_seller() -> dict:
    """The headers another service's API needs to know this seller: the gateway's, signed."""
    seller = web_seller()
    return {identity.HEADER: identity.sign(_config().internal_secret,
                                           {k: seller[k] for k in ("id", "name", "email")}),
            "X-Correlation-Id": logs.correlation_id() or ""}


# ---- the dashboard -------------------------------------------------------------------------------

def sort_offers(seller_id: str, mine: list[dict]) -> dict[str, list[dict]]:
    """Held now, intercepted (open, held by another), closed: the dashboard's three lists."""
    held = [o for o in mine if o["status"] == "open" and o["condition"]["seller_id"] == seller_id]
    intercepted = [o for o in mine if o["status"] == "open" and o["condition"]["seller_id"] != seller_id]
    return {"held": held, "intercepted": intercepted, "closed": [o for o in mine if o["status"] == "closed"]}


@dashboard_bp.get("/dashboard")
@signed_in
def dashboard():
    seller = web_seller()
    since = int(clock.now().timestamp() * 1e6)  # the live stream resumes from this render
    with sessions()() as session:
        mine = use_cases.offers_of_seller(session, seller["id"])
        others, _ = use_cases.list_offers(session, "open", 1, 50, with_history=False)
    return render_template("sellers/dashboard.html", seller=seller, since=since, progress=progress,
                           others=[o for o in others if o["condition"]["seller_id"] != seller["id"]],
                           **sort_offers(seller["id"], mine))


# ---- purchasers ------------------------------------------------------------------------------------

NOT_YOURS = _l("Only the seller holding this offer sees its purchasers.")


def _purchasers(offer_id: str) -> list[dict]:
    """reservation's answer to the holder (403 for anyone else, as the API)."""
    try:
        reply = _http.get(f"{_config().service_url('reservation')}/api/v1/offers/{quote(offer_id, safe='')}"
                          "/reservations", headers=_as_seller(), timeout=10)
    except requests.RequestException:
        abort(503)
    if reply.status_code in (403, 404):
        abort(reply.status_code)
    if reply.status_code != 200:
        abort(503)
    return reply.json()["items"]


@dashboard_bp.get("/dashboard/offers/<offer_id>")
@signed_in
def purchasers(offer_id):
    offer = offer_or_404(offer_id)
    shown = [{**p, "at": datetime.fromisoformat(p["at"])} for p in _purchasers(offer_id)]
    return render_template("sellers/purchasers.html", offer=offer, purchasers=shown)


def purchasers_csv(rows: list[dict]) -> str:
    return safe_csv(["name", "email", "reserved_at"], ((p["name"], p["email"], p["at"]) for p in rows))


@dashboard_bp.get("/dashboard/offers/<offer_id>/purchasers.csv")
@signed_in
def purchasers_download(offer_id):
    offer_or_404(offer_id)
    return Response(purchasers_csv(_purchasers(offer_id)), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="purchasers-{offer_id[:8]}.csv"'})


@dashboard_bp.errorhandler(403)
def forbidden(_exc):
    return render_template("error.html", title=_("Not your offer"), message=NOT_YOURS), 403


@dashboard_bp.errorhandler(404)
def not_found(_exc):
    return render_template("error.html", title=_("Not found"), message=_("There is no such offer.")), 404


@dashboard_bp.errorhandler(503)
def unavailable(_exc):
    return render_template("error.html", title=_("Try again in a moment"),
                           message=_("A part of cobuy did not answer just now. Please reload the page.")), 503


# ---- publish ------------------------------------------------------------------------------------

@dashboard_bp.get("/dashboard/offers/new")
@signed_in
def new_offer():
    return render_template("sellers/new_offer.html", form={"currency": "usd"}, errors={}, preview=None)


@dashboard_bp.post("/dashboard/offers/new")
@signed_in
def publish():
    """`preview` shows the card as the home page will; `publish` runs POST /api/v1/offers's schema
    and use case (one rule, one place), and names each refused field in plain words."""
    form = {k: request.form.get(k, "") for k in ("title", "description", "currency", "unit_price",
                                                 "minimum_reservations", "closes_at", "invite_at", "min_decrement")}
    body, faulty = offer_body(form)
    try:
        data = OfferCreateSchema().load(body)
    except ValidationError as exc:
        faulty |= set(exc.messages)
    if faulty:
        return render_template("sellers/new_offer.html", form=form, preview=None,
                               errors=field_words(faulty, OFFER_FIELD_WORDS)), 422
    try:
        if request.form.get("action") == "preview":  # the term's rule too, without publishing
            use_cases.check_term(clock.now(), data.get("invite_at") and clock.to_utc(data["invite_at"]),
                                 clock.to_utc(data["closes_at"]))
            return render_template("sellers/new_offer.html", form=form, errors={},
                                   preview=_preview(web_seller(), data))
        with sessions().begin() as session:
            offer = use_cases.publish_offer(session, web_seller(), data)
    except Problem as problem:
        return render_template("sellers/new_offer.html", form=form, preview=None,
                               errors=field_words(problem.extra.get("errors") or {}, OFFER_FIELD_WORDS)), problem.status
    return render_template("sellers/published.html", offer=offer), 201


def _preview(seller: dict, data: dict) -> dict:
    """The offer as the home page's card will draw it, before it exists."""
    return {"title": data["title"], "currency": data["currency"].lower(), "closes_at": clock.to_utc(data["closes_at"]),
            "reservation_count": 0, "condition": {"seller_name": seller["name"], "unit_price": data["unit_price"],
                                                  "minimum_reservations": data["minimum_reservations"]}}


# ---- counter-offer --------------------------------------------------------------------------------

def _holding(offer: dict) -> dict:
    """auction's holding condition now and what would beat it (its rules.what_would_win); catalog's
    read model, with no figure of its own, when auction cannot say."""
    try:
        found = lookup.published(_config(), "auction", "/internal/conditions", offer["id"])
    except requests.RequestException:
        found = None
    return found or {"condition": offer["condition"], "price_to_beat": None, "minimum_to_beat": None,
                     "min_decrement": offer["min_decrement"]}


def refusal_words(code: str, answer: dict, currency: str) -> str | Markup:
    """Why auction refused the counter-offer (its 409 code), in words for a seller."""
    holding = answer.get("condition") or {}
    minimum = holding.get("minimum_reservations")
    if code == "already_holder":
        return _("You already hold this offer: there is nothing to beat.")
    if code == "offer_closed":
        return _("This offer has closed: it takes no more counter-offers.")
    if code == "raises_minimum":
        return _("A counter-offer may not ask for more reservations than the holding minimum of %(minimum)s.",
                 minimum=minimum)
    if code == "not_better":
        price = format_money(holding.get("unit_price"), currency, languages.current())
        words = ngettext("This does not beat %(price)s for %(num)s reservation.",
                         "This does not beat %(price)s for %(num)s reservations.", minimum or 0, price=price)
        if answer.get("price_to_beat"):
            words += " " + _("Offer %(price)s or less to win.",
                             price=format_money(answer["price_to_beat"], currency, languages.current()))
        return words
    return _("The counter-offer was refused. Please check it and try again.")


def _counter_page(offer: dict, form: dict, errors: dict, status: int = 200, won: dict | None = None):
    holding = None if won else _holding(offer)
    return render_template("sellers/counter_offer.html", offer=offer, holding=holding, form=form, errors=errors,
                           won=won, major_units=major_units), status


@dashboard_bp.get("/dashboard/offers/<offer_id>/counter-offer")
@signed_in
def counter_offer_form(offer_id):
    """Prefilled from the mail's link (`unit_price` in minor units and `minimum_reservations`, as the API)."""
    offer = offer_or_404(offer_id)
    price = request.args.get("unit_price", type=int)
    minimum = request.args.get("minimum_reservations", type=int)
    form = {"unit_price": major_units(price, offer["currency"]) if price and 0 < price < 2**31 else "",
            "minimum_reservations": str(minimum) if minimum and 0 < minimum <= 1_000_000 else ""}
    return _counter_page(offer, form, {})


@dashboard_bp.post("/dashboard/offers/<offer_id>/counter-offer")
@signed_in
def counter_offer(offer_id):
    offer = offer_or_404(offer_id)
    form = {k: request.form.get(k, "") for k in ("unit_price", "minimum_reservations")}
    body, faulty = counter_offer_body(form, offer["currency"])
    if faulty:
        return _counter_page(offer, form, field_words(faulty, COUNTER_FIELD_WORDS), 422)
    try:
        reply = _http.post(f"{_config().service_url('auction')}/api/v1/offers/{quote(offer_id, safe='')}"
                           "/counter-offers", json=body, headers=_as_seller(), timeout=10)
    except requests.RequestException:
        return _counter_page(offer, form, {"form": [TRY_AGAIN]}, 503)
    answer = reply.json() if reply.headers.get("content-type", "").endswith("json") else {}
    if reply.status_code == 201:
        return _counter_page(offer_or_404(offer_id), {}, {}, 201, won=answer["condition"])
    if reply.status_code == 409:
        return _counter_page(offer, form, {"form": [refusal_words(answer.get("code"), answer, offer["currency"])]}, 409)
    if reply.status_code == 422:
        return _counter_page(offer, form, field_words(answer.get("errors") or {}, COUNTER_FIELD_WORDS), 422)
    return _counter_page(offer, form, {"form": [TRY_AGAIN]}, 503)


# ---- the API key ----------------------------------------------------------------------------------

@dashboard_bp.post("/dashboard/key")
@signed_in
def rotate_key():
    with sessions().begin() as session:
        api_key = sellers.rotate_own_key(session, web_seller()["id"])
    return render_template("sellers/key.html", api_key=api_key, seller=web_seller())

