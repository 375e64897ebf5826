"""Sellers on the web (SPEC §9): register, sign in by an e-mailed link, sign out.

The session is a cookie holding a random token whose hash is a `seller_sessions` row
(signin.py): HttpOnly, SameSite=Lax, Secure when COBUY_PUBLIC_URL is https, 12 hours, revoked
server-side on sign-out. Every form carries a CSRF token (csrf.py, as the offer page's).
"""
from __future__ import annotations

import functools
import logging
from urllib.parse import quote

from flask import Blueprint, current_app, g, make_response, redirect, render_template, request
from flask import session as browser_session
from flask_babel import lazy_gettext as _l
from marshmallow import ValidationError

from shared import csrf as forms_csrf
from shared.problems import Problem
from shared.validation import Email
from shared.web import client_address

from . import csrf, languages, sellers, signin
from .rules import safe_next
from .schemas import SellerRegistrationSchema

log = logging.getLogger(__name__)
seller_pages_bp = Blueprint("seller_pages", __name__, template_folder="templates")
COOKIE = forms_csrf.SELLER_SESSION_COOKIE
NO_STORE = {"Cache-Control": "private, no-store"}


def sessions():
    return current_app.extensions["cobuy.runtime"].sessions


def _limiter():
    return current_app.extensions["cobuy.limiter"]


def web_seller() -> dict | None:
    """The seller signed in on this browser (once per request), or None."""
    if "web_seller" not in g:
        with sessions()() as session:
            g.web_seller = signin.seller_for_session(session, request.cookies.get(COOKIE))
    return g.web_seller


@seller_pages_bp.app_context_processor
def _templates_know_the_seller():
    return {"web_seller": web_seller}


def signed_in(view):
    """A seller's page: without a live session, the sign-in page, which comes back here after."""
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        if web_seller() is None:
            here = request.full_path.rstrip("?") if request.method == "GET" else "/dashboard"
            return redirect(f"/sellers/sign-in?next={quote(here, safe='')}", 303)
        return view(*args, **kwargs)
    return wrapped


def secure_cookies() -> bool:
    return current_app.config["COBUY"].public_url.startswith("https:")


@seller_pages_bp.after_app_request
def _private(response):
    """A seller's page is one person's: never kept by a cache, never framed by another site."""
    if request.path.startswith(("/sellers", "/dashboard")):
        response.headers.update(NO_STORE)
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"  # the link page's token stays in this site
    return response


# ---- sign in ---------------------------------------------------------------------------------

_ADDRESS = Email(required=True)
NOT_AN_ADDRESS = _l("Give a valid e-mail address, such as shop@example.com.")
RATE_LIMITED = _l("Too many sign-in requests just now. Please wait a minute and try again.")
LINK_WORDS = {
    "used": (_l("This sign-in link has been used"), _l("A sign-in link works once. Ask for a new one below.")),
    "expired": (_l("This sign-in link has expired"),
                _l("A sign-in link works for 15 minutes. Ask for a new one below.")),
    "unknown": (_l("This sign-in link is not valid"),
                _l("Use the link from your latest sign-in e-mail, or ask for a new one below.")),
}


@seller_pages_bp.get("/sellers/sign-in")
def sign_in_form():
    if web_seller() is not None:
        return redirect(safe_next(request.args.get("next")), 303)
    return render_template("sellers/sign_in.html", next=safe_next(request.args.get("next")), email="", error=None)


@seller_pages_bp.post("/sellers/sign-in")
def sign_in_request():
    """The same page whether or not the address is registered (and no mail for one that is not)."""
    email, next_path = request.form.get("email", ""), safe_next(request.form.get("next"))
    try:
        email = _ADDRESS.deserialize(email)  # the API's own check of an address (no lookup, no DNS)
    except ValidationError:
        return render_template("sellers/sign_in.html", next=next_path, email=email[:254], error=NOT_AN_ADDRESS), 422
    try:
        _limiter().hit("sign_ins", f"ip:{client_address()}", f"email:{email.lower()}")
    except Problem:
        return render_template("sellers/sign_in.html", next=next_path, email=email, error=RATE_LIMITED), 429
    response = make_response(render_template("sellers/link_sent.html", email=email))
    # Looked up once the answer is sent: its timing cannot tell a registered address either.
    response.call_on_close(functools.partial(_link_if_registered, sessions(), email, next_path))
    return response


def _link_if_registered(session_factory, email: str, next_path: str) -> None:
    try:
        with session_factory.begin() as session:
            signin.request_link(session, email, next_path)
    except Exception:  # the page has answered; the seller asks again if no mail comes
        log.exception("could not record a sign-in link")


@seller_pages_bp.get("/sellers/sign-in/link")
def link_page():
    """The mailed link shows a button: a mail scanner that follows links must not use it up."""
    token = request.args.get("token", "")
    with sessions()() as session:
        state = signin.link_state(session, token)
    if state != "usable":
        return _refused_link(state)
    return render_template("sellers/link.html", token=token)


@seller_pages_bp.post("/sellers/sign-in/link")
def use_link():
    token = request.form.get("token", "")
    with sessions().begin() as session:
        opened = signin.redeem_link(session, token)
        state = None if opened else signin.link_state(session, token)
        if opened:  # a session this browser held before ends: one browser, one session
            signin.revoke_session(session, request.cookies.get(COOKIE))
    if opened is None:
        return _refused_link(state)
    session_token, next_path = opened
    renew_csrf_secret()
    response = redirect(safe_next(next_path), 303)
    response.set_cookie(COOKIE, session_token, max_age=int(signin.SESSION_LIFETIME.total_seconds()),
                        httponly=True, samesite="Lax", secure=secure_cookies(), path="/")
    return response


def renew_csrf_secret() -> None:
    """A new secret for the forms' CSRF tokens (the `cobuy_csrf` cookie, csrf.py) when who is signed
    in changes: a token read or planted before the sign-in is worthless after it. A token from
    before the cookie (Flask-WTF's, in Flask's own session) goes too."""
    csrf.renew_secret()
    if browser_session.get("csrf_token"):
        browser_session.pop("csrf_token", None)


def _refused_link(state: str):
    title, message = LINK_WORDS.get(state, LINK_WORDS["unknown"])
    return render_template("sellers/sign_in.html", next="/dashboard", email="", error=None,
                           refused={"title": title, "message": message}), 410 if state in ("used", "expired") else 404


@seller_pages_bp.post("/sellers/sign-out")
def sign_out():
    with sessions().begin() as session:
        signin.revoke_session(session, request.cookies.get(COOKIE))
    renew_csrf_secret()
    response = redirect("/sellers/sign-in?signed_out=1", 303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="Lax", secure=secure_cookies())
    return response


# ---- register ----------------------------------------------------------------------------------

REGISTRATION_WORDS = {
    "name": _l("Give your name or your shop's: 1 to 100 characters, on one line."),
    "email": NOT_AN_ADDRESS,
}
REGISTRATION_REFUSALS = {
    "email_taken": _l("A seller with this e-mail is already registered: sign in instead."),
    "rate_limited": _l("Too many registrations from your address just now. Please wait a minute."),
}


@seller_pages_bp.get("/sellers/register")
def register_form():
    return render_template("sellers/register.html", form={}, errors={})


@seller_pages_bp.post("/sellers/register")
def register():
    """As POST /api/v1/sellers (the same schema, use case and limit), then a sign-in link by mail."""
    form = {"name": request.form.get("name", ""), "email": request.form.get("email", "")}
    try:
        body = SellerRegistrationSchema().load(form)
    except ValidationError as exc:
        errors = {f: [REGISTRATION_WORDS[f]] for f in exc.messages if f in REGISTRATION_WORDS}
        return render_template("sellers/register.html", form=form, errors=errors), 422
    try:
        _limiter().hit("registrations", f"ip:{client_address()}")
        with sessions().begin() as session:
            # the seller's mails speak the language of the page they registered from (SPEC §12)
            seller = sellers.register_seller(session, body["name"], body["email"], languages.current())
            signin.issue_link(session, seller)
    except Problem as problem:
        return render_template("sellers/register.html", form=form, errors={
            "email" if problem.code == "email_taken" else "form": [
                REGISTRATION_REFUSALS.get(problem.code, problem.detail)]}), \
            problem.status
    return render_template("sellers/registered.html", seller=seller)
