"""The forms' CSRF protection (SPEC §4: forms carry CSRF protection), shared by catalog, which
checks it, and the gateway, which may put a visitor's token into a page it keeps (gateway/cache.py).

A double-submit cookie whose token is an HMAC: the browser holds a random secret in the
`cobuy_csrf` cookie (HttpOnly, SameSite=Lax), and a form carries `HMAC(key, secret)`, the key
derived from the installation's internal secret. A POST is taken only when its token is the HMAC
of its own cookie's secret: another site can neither read the cookie nor compute the token
without the key. Nothing is signed into a server-side or client-side session, so a page costs one
HMAC per visitor and the same page body serves every visitor, each token going into its slot.
Signing in or out gives the browser a new secret (services/catalog/csrf.py), so a token known
before a sign-in is worthless after it.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets

COOKIE = "cobuy_csrf"
# A signed-in seller's session cookie (catalog's seller pages set it): a seller's token is bound to
# its value, and the gateway never shares a page asked for with it.
SELLER_SESSION_COOKIE = "cobuy_seller"
FIELD = "csrf_token"
HEADERS = ("X-CSRFToken", "X-CSRF-Token")
# Where a page's token goes when the gateway fills it in: no template output contains it (a user's
# text with a NUL is refused at the API, and the slot only ever receives the visitor's own token).
SLOT = "\x00csrf\x00"
# Request header: the gateway fills the slots of this answer (it sets it, and strips a client's).
EDGE_FILLS = "X-Cobuy-Csrf-Edge"
# Response header: this answer's body has slots to fill, per visitor (never sent to a client).
HAS_SLOTS = "X-Cobuy-Csrf-Slots"
_SECRET = re.compile(r"[0-9a-f]{32}")


def form_key(internal_secret: str) -> bytes:
    return hashlib.sha256(f"csrf-form|{internal_secret}".encode()).digest()


def new_secret() -> str:
    return secrets.token_hex(16)


def well_formed(secret: str | None) -> bool:
    return bool(secret) and _SECRET.fullmatch(secret) is not None


def token_for(key: bytes, secret: str, session: str = "") -> str:
    """The token of a secret; for a signed-in seller, bound to the seller's session cookie too
    (`session`), so a secret planted in the browser (cookie tossing from a sibling host) and the
    token its planter read elsewhere never pass a seller's form. Anonymous visitors' tokens (the
    ones the gateway fills) are bound to no session."""
    message = f"{secret}|{session}" if session else secret
    return hmac.digest(key, message.encode(), "sha256").hex()  # one-shot, in C: HMAC-SHA256


def valid(key: bytes, secret: str | None, token: str | None, session: str = "") -> bool:
    """The token is the HMAC of this browser's cookie secret (and seller session, if any)."""
    if not token or not well_formed(secret):
        return False
    return hmac.compare_digest(token_for(key, secret, session).encode(), token.encode("utf-8", "replace"))


def cookie_header(secret: str, secure: bool) -> str:
    """The Set-Cookie value: for the browser's session, the whole site, never read by a script."""
    return f"{COOKIE}={secret}; Path=/; HttpOnly; SameSite=Lax" + ("; Secure" if secure else "")
