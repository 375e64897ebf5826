"""The forms' CSRF protection in catalog (shared/csrf.py: a double-submit cookie, the token an HMAC
of its secret). Every POST, PUT, PATCH or DELETE outside the API blueprints must carry the token
of its own browser's `cobuy_csrf` cookie, in the form's `csrf_token` or an `X-CSRFToken` header;
anything else is refused with Flask-WTF's CSRFError (pages.csrf_failed words it).

A page asks for its token with `{{ csrf_token() }}`. Behind the gateway, on a public GET, the
gateway fills the token in itself (gateway/cache.py keeps the body for every visitor): the page
then carries the slot and says so, and catalog neither reads nor sets the cookie.

Tokens of the previous release (Flask-WTF's, their secret in Flask's session cookie) are not taken:
a page left open over the upgrade is told its form has expired once and is shown again with a new
token. Taking them would let a planted session cookie skip the seller binding (red team, 2026-11-26).
"""
from __future__ import annotations

from flask import Flask, Response, current_app, g, request
from flask_wtf.csrf import CSRFError
from markupsafe import Markup

from shared import csrf as forms_csrf

METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
EXTENSION = "cobuy.csrf"


class Protection:
    def __init__(self, app: Flask, exempt_blueprints: tuple[str, ...]) -> None:
        config = app.config["COBUY"]
        self.key = forms_csrf.form_key(config.internal_secret)
        self.secure = config.public_url.startswith("https:")
        self.exempt = frozenset(exempt_blueprints)
        app.extensions[EXTENSION] = self
        app.jinja_env.globals["csrf_token"] = csrf_token
        app.before_request(self.protect)
        app.after_request(self.finish)

    # -- checking --------------------------------------------------------------------------------

    def protect(self) -> None:
        if request.method not in METHODS or not request.endpoint or request.blueprint in self.exempt:
            return
        token = request.form.get(forms_csrf.FIELD) or next(
            (request.headers[h] for h in forms_csrf.HEADERS if request.headers.get(h)), None)
        if forms_csrf.valid(self.key, request.cookies.get(forms_csrf.COOKIE), token, _session()):
            return
        raise CSRFError("The CSRF token is missing or does not match the browser's cookie.")

    # -- giving ----------------------------------------------------------------------------------

    def token(self) -> str:
        if "csrf_secret" not in g:
            secret = request.cookies.get(forms_csrf.COOKIE)
            if not forms_csrf.well_formed(secret):
                secret, g.csrf_new = forms_csrf.new_secret(), True
            g.csrf_secret = secret
        return forms_csrf.token_for(self.key, g.csrf_secret, _session())

    def renew(self) -> None:
        """A new secret for this browser (sign-in, sign-out): tokens it had before are worthless."""
        g.csrf_secret, g.csrf_new = forms_csrf.new_secret(), True

    def finish(self, response: Response) -> Response:
        if g.get("csrf_new"):
            response.headers.add("Set-Cookie", forms_csrf.cookie_header(g.csrf_secret, self.secure))
        if g.get("csrf_slots"):
            response.headers[forms_csrf.HAS_SLOTS] = "1"
        return response


def _session() -> str:
    """The seller session cookie a token is bound to ("" for an anonymous visitor). Signing in and
    out renew the secret in the same answer, so the next page carries a token for the new pair."""
    return request.cookies.get(forms_csrf.SELLER_SESSION_COOKIE) or ""


def edge_fills() -> bool:
    """The gateway asked to fill this public GET's tokens in itself."""
    return request.method in ("GET", "HEAD") and request.headers.get(forms_csrf.EDGE_FILLS) == "1"


def csrf_token() -> str:
    """The template global: this visitor's token, or the slot the gateway fills."""
    if edge_fills():
        g.csrf_slots = True
        return Markup(forms_csrf.SLOT)
    return current_app.extensions[EXTENSION].token()


def renew_secret() -> None:
    current_app.extensions[EXTENSION].renew()
