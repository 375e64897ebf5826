"""The pages' language (SPEC §12): Flask-Babel over the catalogs in `translations/`.

A page speaks the language of `?lang=` (the switcher's links), else of the cookie the switcher
left, else of Accept-Language (shared/languages.negotiate). The gateway keys its page cache on
that same choice (gateway/cache.py), and every page says `Vary: Accept-Language, Cookie` for the
caches beyond it.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

from flask import Flask, Response, g, request
from flask_babel import Babel

from shared import languages

TRANSLATIONS = Path(__file__).parent / "translations"
YEAR = 365 * 24 * 3600


def current() -> str:
    """The language this request is answered in."""
    return g.get("lang") or languages.DEFAULT


def _choose() -> None:
    g.lang = languages.negotiate(request.args.get(languages.QUERY), request.cookies.get(languages.COOKIE),
                                 request.headers.get("Accept-Language"))


def _remember(response: Response) -> Response:
    """`?lang=` sticks: the next page, without it, speaks the same language."""
    if response.mimetype != "text/html":  # the API speaks JSON, in no language
        return response
    asked = languages.supported(request.args.get(languages.QUERY))
    if asked and request.cookies.get(languages.COOKIE) != asked:
        response.set_cookie(languages.COOKIE, asked, max_age=YEAR, samesite="Lax", httponly=True,
                            secure=request.headers.get("X-Forwarded-Proto") == "https")
    response.vary.update(("Accept-Language", "Cookie"))
    response.content_language = current()
    return response


def switcher() -> list[dict]:
    """Every language, each a link to this page with `lang=` set (its other arguments kept)."""
    args = {k: v for k, v in request.args.items() if k != languages.QUERY}
    return [{"lang": lang, "name": languages.NAMES[lang], "current": lang == current(),
             "href": f"{request.path}?{urlencode({**args, languages.QUERY: lang})}"}
            for lang in languages.LANGUAGES]


def install(app: Flask) -> None:
    for lang in languages.LANGUAGES:  # Flask-Babel would fall back to English without a word
        if lang != languages.DEFAULT and not (TRANSLATIONS / lang / "LC_MESSAGES" / "messages.mo").exists():
            raise RuntimeError(f"no compiled {lang} page catalog under {TRANSLATIONS}: run `make install`")
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(TRANSLATIONS)
    Babel(app, locale_selector=current)
    app.before_request(_choose)
    app.after_request(_remember)
    app.jinja_env.globals.update(lang=current, languages=switcher, language_names=languages.NAMES)

