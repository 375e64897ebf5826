"""The public pages (SPEC §4): server-rendered, usable without JavaScript, every user string escaped."""
from __future__ import annotations

import re
import time
from datetime import datetime
from urllib.parse import quote

import requests
from flask import Blueprint, abort, current_app, render_template, request
from flask_babel import gettext as _, lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from markupsafe import Markup

from shared import clock, csrf as forms_csrf, languages as language_rules, logs
from shared.money import format_money
from shared.web import client_address

from . import csrf, languages, offers as use_cases

pages_bp = Blueprint("pages", __name__, template_folder="templates", static_folder="static",
                     static_url_path="/static")
HOME_PAGE_SIZE = 50
# Drawn no wider than 360 px (base.html), so its 13-unit labels never show under 12 px, on a phone too.
CHART_W, CHART_H, CHART_LEFT = 300, 140, 60


def _sessions():
    return current_app.extensions["cobuy.runtime"].sessions


def _reservation_api() -> str:
    return current_app.config["COBUY"].service_url("reservation")


_http = requests.Session()
_TOKEN = re.compile(r"[0-9a-f]{1,100}")


@pages_bp.app_template_filter("money")
def money_filter(minor_units: int, currency: str) -> str:
    return format_money(minor_units, currency, languages.current())


@pages_bp.app_template_filter("when")
def when_filter(value: datetime) -> Markup:
    """In UTC, named, the language's way; the script shows it in the viewer's own zone, named too (live.js)."""
    utc = clock.to_utc(value)
    return Markup('<time datetime="{}">{}</time>').format(
        utc.isoformat(), language_rules.format_instant(utc, languages.current()))


@pages_bp.app_template_filter("time_left")
def time_left_filter(value: datetime) -> Markup:
    """Ticks each second in the browser (live.js counts down to `data-closes`)."""
    return Markup('<span class="left" data-closes="{}">{}</span>').format(
        clock.to_utc(value).isoformat(), time_left_words(value))


def time_left_words(value: datetime) -> str:
    seconds = int((value - clock.now()).total_seconds())
    if seconds <= 0:
        return _("closing now")
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return _("%(d)s d %(h)s h left", d=days, h=hours)
    if hours:
        return _("%(h)s h %(m)s min left", h=hours, m=minutes)
    if minutes:
        return _("%(m)s min %(s)s s left", m=minutes, s=secs)
    return _("%(s)s s left", s=secs)


def progress(offer: dict) -> int:
    minimum = offer["condition"]["minimum_reservations"]
    return min(100, round(100 * offer["reservation_count"] / minimum)) if minimum else 100


def price_chart(offer: dict) -> dict:
    """An inline SVG step chart of the holding unit price over the term."""
    entries = offer["history"]
    start, end = offer["opens_at"], offer["closes_at"]
    span = max((end - start).total_seconds(), 1)
    prices = [e["unit_price"] for e in entries]
    top, bottom = max(prices), min(prices)
    pad = max((top - bottom) * 0.15, top * 0.05, 1)
    hi, lo = top + pad, max(bottom - pad, 0)

    def x(at):
        return round(CHART_LEFT + (CHART_W - CHART_LEFT - 10) * min(max((at - start).total_seconds() / span, 0), 1), 1)

    def y(price):
        return round(10 + (CHART_H - 30) * (hi - price) / (hi - lo), 1)

    points = []
    for i, e in enumerate(entries):
        if i:
            points.append((x(e["at"]), y(entries[i - 1]["unit_price"])))
        points.append((x(e["at"]), y(e["unit_price"])))
    now_x = x(min(max(clock.now(), start), end))
    points.append((now_x, y(entries[-1]["unit_price"])))
    return {
        "width": CHART_W, "left": CHART_LEFT,
        "height": CHART_H,
        "polyline": " ".join(f"{px},{py}" for px, py in points),
        "dots": [{"x": x(e["at"]), "y": y(e["unit_price"]), "e": e} for e in entries],
        "hi": round(hi), "lo": round(lo), "y_hi": y(hi), "y_lo": y(lo),
        "invite_x": x(offer["invite_at"]),
    }


MAX_PAGE = 100_000


@pages_bp.get("/")
def home():
    """The same for every visitor (no form, no token): the gateway may keep it half a second
    (gateway/cache.py). Its stream (gateway/streams.py) resumes from the instant it was rendered,
    so the script misses nothing of what changed since."""
    # clamped as the API bounds it (OfferListQuerySchema): an absurd page is an empty page, not an overflow
    page = min(max(request.args.get("page", 1, type=int) or 1, 1), MAX_PAGE)
    return _render_home(page), {"Cache-Control": "public, max-age=0, s-maxage=1"}


def _render_home(page: int) -> str:
    since = int(clock.now().timestamp() * 1e6)  # the live stream resumes from this render (gateway/streams.py)
    with _sessions()() as session:
        open_offers, total_open = use_cases.list_offers(session, "open", page, HOME_PAGE_SIZE, with_history=False)
        closed, _ = use_cases.list_offers(session, "closed", 1, 10, with_history=False)
    return render_template(
        "home.html", open_offers=open_offers, closed=closed, page=page,
        pages=max(1, -(-total_open // HOME_PAGE_SIZE)), total_open=total_open, progress=progress, since=since,
    )


def _load(offer_id: str) -> dict:
    with _sessions()() as session:
        offer = use_cases.get_offer(session, offer_id)
    if offer is None:
        abort(404)
    return offer


OFFER_PAGE_SECONDS = 0.5
_offer_pages: dict[tuple[str, str], tuple[float, str]] = {}


@pages_bp.get("/offers/<offer_id>")
def offer_page(offer_id):
    """The same body for every visitor but for the form's token, which goes into its slot.
    Behind the gateway the gateway fills the slot and keeps the body half a second
    (gateway/cache.py), so catalog renders it fresh each time the gateway asks. Asked directly
    (or by a signed-in seller), catalog keeps the body half a second itself and fills the slot.
    Either way the page then follows the offer's stream, as the home page does."""
    if csrf.edge_fills():
        return _render_offer(_load(offer_id)), {"Cache-Control": "public, s-maxage=1"}
    key = (offer_id, languages.current())
    cached = _offer_pages.get(key)
    if cached is None or time.monotonic() - cached[0] >= OFFER_PAGE_SECONDS:
        cached = (time.monotonic(), _render_offer(_load(offer_id), csrf_token=lambda: Markup(forms_csrf.SLOT)))
        if len(_offer_pages) > 1000:
            _offer_pages.clear()
        _offer_pages[key] = cached
    return cached[1].replace(forms_csrf.SLOT, csrf.csrf_token()), {"Cache-Control": "private, no-cache"}


def _render_offer(offer: dict, **context) -> str:
    return render_template("offer.html", offer=offer, chart=price_chart(offer), progress=progress(offer),
                           form={}, errors={}, **context)


@pages_bp.post("/offers/<offer_id>/reserve")
def reserve(offer_id):
    offer = _load(offer_id)
    form = {"name": request.form.get("name", ""), "email": request.form.get("email", "")}
    try:
        reply = _http.post(  # the purchaser's mails speak the language of the page they reserved from
            f"{_reservation_api()}/api/v1/offers/{offer_id}/reservations",
            json={**form, "lang": languages.current()}, timeout=10,
            headers={"X-Correlation-Id": logs.correlation_id() or "", "X-Forwarded-For": client_address()},
        )
    except requests.RequestException:
        return _offer_with_errors(
            offer, form, {"form": [_("We could not take your reservation just now. Please try again.")]}, 503)
    body = reply.json() if reply.headers.get("content-type", "").endswith("json") else {}
    if reply.status_code in (200, 201):
        return render_template("reserved.html", offer=offer, reservation=body, repeat=reply.status_code == 200,
                               cancel_url=f"/reservations/{body['id']}/cancel?token={body['cancel_token']}")
    return _offer_with_errors(offer, form, refusal_in_words(reply.status_code, body, offer), reply.status_code)


FIELD_WORDS = {
    "name": _l("Please give your name: 1 to 100 characters, on one line."),
    "email": _l("Please give a valid e-mail address, such as name@example.com."),
}


def refusal_in_words(status: int, body: dict, offer: dict) -> dict[str, list]:
    """Why the reservation service refused the form, in words for a purchaser, by field
    (`form` for the form as a whole): never a validator's own phrasing."""
    if body.get("code") == "offer_closed":
        return {"form": [Markup(_("This offer closed on %(when)s: it takes no more reservations.",
                                  when=when_filter(offer["closes_at"])))]}
    if status == 429:
        return {"form": [_("Too many reservations from your address just now. Please wait a minute and try again.")]}
    fields = {name: [str(words)] for name, words in FIELD_WORDS.items() if name in (body.get("errors") or {})}
    return fields or {"form": [_("Your reservation could not be taken. Please check the form and try again.")]}


def _offer_with_errors(offer, form, errors, status):
    return render_template("offer.html", offer=offer, chart=price_chart(offer), progress=progress(offer),
                           form=form, errors=errors), status


BAD_LINK = _l("This cancel link is not valid: use the link from your confirmation e-mail.")
TRY_AGAIN = _l("We could not reach your reservation just now. Please try again.")
CLOSED_TO_CANCELS = _l("This offer has closed: the reservation can no longer be cancelled.")


def _purchasers_reservation(reservation_id: str, token: str) -> tuple[dict | None, str | None, int]:
    """(reservation state, words for why not, status): asked of reservation with the cancel token."""
    if not _TOKEN.fullmatch(token):  # a cancel token is hex; anything else cannot travel as a header
        return None, BAD_LINK, 403
    try:
        reply = _http.get(f"{_reservation_api()}/api/v1/reservations/{quote(reservation_id, safe='')}",
                          headers={"X-Cancel-Token": token}, timeout=10)
    except requests.RequestException:
        return None, TRY_AGAIN, 503
    if reply.status_code in (403, 404):
        return None, BAD_LINK, reply.status_code
    if reply.status_code != 200:
        return None, TRY_AGAIN, 503
    return reply.json(), None, 200


def _cancel_page(reservation_id: str, token: str, state: dict | None, error: str | None, done: bool = False,
                 status: int = 200):
    offer = None
    if state is not None:
        with _sessions()() as session:
            offer = use_cases.get_offer(session, state["offer_id"])
    if error is None and not done and state is not None:
        if state["status"] == "cancelled":
            error = _("This reservation is already cancelled: there is nothing more to do.")
        elif offer is not None and offer["status"] == "closed":
            error = CLOSED_TO_CANCELS
    return render_template("cancel.html", reservation_id=reservation_id, token=token, done=done, error=error,
                           offer=offer), status


@pages_bp.get("/reservations/<reservation_id>/cancel")
def cancel_form(reservation_id):
    token = request.args.get("token", "")
    state, error, status = _purchasers_reservation(reservation_id, token)
    return _cancel_page(reservation_id, token, state, error, status=status)


@pages_bp.post("/reservations/<reservation_id>/cancel")
def cancel(reservation_id):
    token = request.form.get("token", "")
    state, error, status = _purchasers_reservation(reservation_id, token)
    if state is None:
        return _cancel_page(reservation_id, token, None, error, status=status)
    try:
        reply = _http.delete(f"{_reservation_api()}/api/v1/reservations/{quote(reservation_id, safe='')}",
                             headers={"X-Cancel-Token": token}, timeout=10)
    except requests.RequestException:
        return _cancel_page(reservation_id, token, state, TRY_AGAIN, status=503)
    if reply.status_code == 204:
        return _cancel_page(reservation_id, token, state, None, done=True)
    if reply.status_code == 409:
        return _cancel_page(reservation_id, token, state, CLOSED_TO_CANCELS, status=409)
    return _cancel_page(reservation_id, token, state, BAD_LINK if reply.status_code in (403, 404) else TRY_AGAIN,
                        status=reply.status_code)


VERIFY_WORDS = {
    "already_verified": _l("This reservation is confirmed already: it counts. There is nothing more to do."),
    "not_pending": _l("This reservation was cancelled or lapsed at the deadline: there is nothing to confirm."),
    "offer_closed": _l("This offer has closed: the reservation lapsed unconfirmed and does not count."),
}
BAD_VERIFY_LINK = _l("This confirmation link is not valid: use the newest link from your confirmation e-mail.")


def _verify_page(reservation_id: str, token: str, error: str | None = None, done: bool = False,
                 offer: dict | None = None, status: int = 200):
    return render_template("verify.html", reservation_id=reservation_id, token=token, done=done, error=error,
                           offer=offer), status


@pages_bp.get("/reservations/<reservation_id>/verify")
def verify_form(reservation_id):
    """The link in the confirmation mail. A GET changes nothing (mail scanners open links): the page
    asks the purchaser to press the button, a form that works without JavaScript."""
    token = request.args.get("token", "")
    if not _TOKEN.fullmatch(token):
        return _verify_page(reservation_id, token, BAD_VERIFY_LINK, status=403)
    return _verify_page(reservation_id, token)


@pages_bp.post("/reservations/<reservation_id>/verify")
def verify(reservation_id):
    token = request.form.get("token", "")
    if not _TOKEN.fullmatch(token):
        return _verify_page(reservation_id, token, BAD_VERIFY_LINK, status=403)
    try:
        reply = _http.post(f"{_reservation_api()}/api/v1/reservations/{quote(reservation_id, safe='')}/verify",
                           json={"token": token}, timeout=10,
                           headers={"X-Correlation-Id": logs.correlation_id() or ""})
    except requests.RequestException:
        return _verify_page(reservation_id, token, TRY_AGAIN, status=503)
    body = reply.json() if reply.headers.get("content-type", "").endswith("json") else {}
    offer = None
    if reply.status_code == 200:
        with _sessions()() as session:
            offer = use_cases.get_offer(session, body.get("offer_id", ""))
        return _verify_page(reservation_id, token, None, done=True, offer=offer)
    if reply.status_code in (403, 404):
        return _verify_page(reservation_id, token, BAD_VERIFY_LINK, status=reply.status_code)
    words = VERIFY_WORDS.get(body.get("code")) if reply.status_code == 409 else None
    return _verify_page(reservation_id, token, words or TRY_AGAIN, status=reply.status_code if words else 503)


@pages_bp.app_errorhandler(CSRFError)
def csrf_failed(exc):
    return render_template("error.html", title=_("This form has expired"),
                           message=_("Please go back, reload the page and send the form again.")), 400


@pages_bp.errorhandler(404)
def page_not_found(_exc):
    return render_template("error.html", title=_("Not found"), message=_("There is no such offer or page.")), 404
