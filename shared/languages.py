"""The languages pages and mails speak (SPEC §12), and how a request picks one.

Infrastructure shared by the catalog's pages, the gateway's page cache (which must key on the
language it will be answered in) and the APIs' optional `lang` field. The words themselves live
in each service's own `translations/` catalogs.
"""
from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from babel.dates import format_datetime
from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header

LANGUAGES = ("en", "ja")
DEFAULT = "en"
COOKIE = "cobuy_lang"  # set by `?lang=` on any page, a year long
QUERY = "lang"
NAMES = {"en": "English", "ja": "日本語"}  # each in its own language, as a switcher shows them
MAX_ACCEPT_LANGUAGE = 500  # a longer header is not parsed: it says nothing a browser would


def supported(value: object) -> str | None:
    """`value` when it names a language we speak (`ja`, `JA`, `ja-JP` → `ja`), else None."""
    if not isinstance(value, str) or not 2 <= len(value) <= 35:
        return None
    primary = value.strip().lower().replace("_", "-").split("-")[0]
    return primary if primary in LANGUAGES else None


def negotiate(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    """`?lang=` first (the switcher), then the cookie it left, then the browser's Accept-Language."""
    chosen = supported(query) or supported(cookie)
    if chosen:
        return chosen
    header = (accept_language or "")[:MAX_ACCEPT_LANGUAGE]
    return _from_header(header)


@lru_cache(maxsize=1024)  # browsers send a handful of distinct headers; the gateway asks on every page
def _from_header(header: str) -> str:
    best = parse_accept_header(header, LanguageAccept).best_match(LANGUAGES, default=DEFAULT)
    return supported(best) or DEFAULT


@lru_cache(maxsize=65536)  # babel takes ~0.3 ms; a batch of mails and a page write the same instants again and again
def format_instant(value: datetime, lang: str) -> str:
    """An instant in UTC, written the language's way with the zone named:
    `November 26, 2026, 2:01:08 PM UTC`, `2026年11月26日 14:01:08 UTC`."""
    return format_datetime(value, "long", tzinfo=value.tzinfo, locale=lang)
