"""A micro-cache at the edge, for public pages only (what nginx's proxy_cache does in front of
a site, kept here because the gateway is the one door).

An upstream response is kept when, and only as long as, it says so: status 200 to a GET or HEAD
without credentials (an API key, a seller's session cookie), `Cache-Control: public` with `s-maxage`
(or `max-age`), no `Set-Cookie`, no `Vary` beyond `Accept-Encoding` and the language
(`Accept-Language`, `Cookie`); never longer than `MAX_SECONDS`. A page varies by language (SPEC
§12), so the key holds the language the request will be answered in (`language_of`, the catalog's
own choice): a public page depends on no other cookie. Concurrent misses for one key wait for a
single upstream fetch, so a burst on a cold page costs one render.

A page with a form is the same for every visitor but for its CSRF token (shared/csrf.py): the
gateway asks catalog for it with the token's slots unfilled (`EDGE_FILLS`), may keep that body
like any other, and puts each visitor's own token into it as it answers (`fill_form_tokens`),
setting the visitor's CSRF cookie when it has none. Such an answer goes out `private`.
"""
from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Mapping

from multidict import CIMultiDict
from werkzeug.http import parse_cookie

from shared import csrf, languages

MAX_SECONDS = 0.5
MAX_ENTRIES = 2000
MAX_BODY = 512 * 1024
KEYED_VARY = {"accept-encoding", "accept-language", "cookie"}  # what the key (or the body's bytes) covers


def language_of(query: str | None, cookies, accept_language: str | None) -> str:
    """The language a page request is answered in, as catalog chooses it: part of the cache key."""
    return languages.negotiate(query, cookies.get(languages.COOKIE), accept_language)


# Headers catalog reads joined when repeated (gunicorn joins them with a comma) and the gateway reads
# the first of: a request repeating one is never answered from, nor into, the shared cache.
_ONCE = ("Cookie", "Accept-Language")


def page_cookies(headers) -> Mapping[str, str] | None:
    """The request's cookies as catalog will read them, or None when the gateway cannot be sure of
    catalog's reading (a repeated `Cookie` or `Accept-Language` header, a page cookie named twice):
    such a request goes to catalog as a private one, catalog choosing its language and filling its
    token itself. Otherwise a hostile client could have a page rendered in one language kept under
    another's key, or be given the token of a cookie catalog does not check."""
    if any(len(headers.getall(name, ())) > 1 for name in _ONCE):
        return None
    header = headers.get("Cookie")
    if not header:
        return {}
    try:  # the header's bytes, as catalog's WSGI server hands them to werkzeug (latin-1 text)
        cookies = parse_cookie(header.encode("utf-8", "surrogateescape").decode("latin-1"))
    except ValueError:  # a value werkzeug cannot decode: catalog answers it alone
        return None
    if any(len(cookies.getlist(name)) > 1 for name in PAGE_COOKIES):
        return None
    return cookies


# catalog's seller session: a request carrying it is one seller's, as one with an API key is, and
# never shares the cache either way.
SELLER_COOKIE = csrf.SELLER_SESSION_COOKIE
# Cookies whose value shapes a page (its language, its form token, whose it is): the gateway reads
# them as catalog (werkzeug: the first of a repeated name) does, or does not share the page at all.
PAGE_COOKIES = (languages.COOKIE, csrf.COOKIE, SELLER_COOKIE)


@dataclass
class Stored:
    expires: float
    status: int
    headers: Mapping[str, str]  # a CIMultiDict from the gateway: repeated names kept
    body: bytes
    # the body cut at its form-token slots, once for all the visitors a kept answer serves
    pieces: list[bytes] | None = field(default=None, repr=False)


def lifetime(status: int, headers) -> float:
    """Seconds a shared cache may keep this response (0: not at all)."""
    if status != 200 or "Set-Cookie" in headers:
        return 0.0
    vary = {v.strip().lower() for v in headers.get("Vary", "").split(",") if v.strip()}
    if vary - KEYED_VARY:
        return 0.0
    control = headers.get("Cache-Control", "").lower()
    if "public" not in control or "no-store" in control or "private" in control:
        return 0.0
    found = re.search(r"s-maxage=(\d+)", control) or re.search(r"max-age=(\d+)", control)
    return min(float(found.group(1)), MAX_SECONDS) if found else 0.0


class MicroCache:
    def __init__(self) -> None:
        self._entries: dict[tuple, Stored] = {}
        self._inflight: dict[tuple, asyncio.Future] = {}

    def get(self, key: tuple) -> Stored | None:
        entry = self._entries.get(key)
        if entry is not None and entry.expires > time.monotonic():
            return entry
        return None

    async def fetch(self, key: tuple, load: Callable[[], Awaitable[Stored]]) -> tuple[Stored, bool]:
        """(response, hit). `load` fetches from upstream and sets `expires` (≤ now: do not keep).
        Waiters share the fetched response only when it may be kept: anything else (a cookie, an
        error) is one visitor's, and each waiter fetches its own."""
        entry = self.get(key)
        if entry is not None:
            return entry, True
        pending = self._inflight.get(key)
        if pending is not None:
            shared = await asyncio.shield(pending)
            if shared is not None:
                return shared, True
            return await load(), False
        future = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        entry = None
        try:
            entry = await load()
        finally:
            del self._inflight[key]
            keep = entry is not None and entry.expires > time.monotonic() and len(entry.body) <= MAX_BODY
            future.set_result(entry if keep else None)
        if keep:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = entry
        return entry, False


def fill_form_tokens(headers: CIMultiDict, stored: Stored, cookie_secret: str | None, key: bytes,
                     secure: bool) -> bytes:
    """The body with this visitor's CSRF token in each slot (`headers`, a copy for this answer, is
    changed in place): a new secret, and its cookie, for a visitor without a well-formed one. A body
    kept for everyone is never sent as it is; an answer that was public becomes private."""
    headers.popall(csrf.HAS_SLOTS, None)
    if not csrf.well_formed(cookie_secret):
        cookie_secret = csrf.new_secret()
        headers.add("Set-Cookie", csrf.cookie_header(cookie_secret, secure))
    if "public" in headers.get("Cache-Control", "").lower():
        headers["Cache-Control"] = "private, no-cache"
    if stored.pieces is None:  # searching 8 KB for the slot costs ~10 µs; joining the pieces, < 1
        stored.pieces = stored.body.split(_SLOT)
    return csrf.token_for(key, cookie_secret).encode().join(stored.pieces)


_SLOT = csrf.SLOT.encode()
